"""Search strategies compared on recorded learning curves (a tabular benchmark of our task).

    python bench/search_replay.py record   # train N demo-space configs for E epochs, all epochs kept
    python bench/search_replay.py run      # every arm x R seeds through Ray Tune, replaying curves
    python bench/search_replay.py pareto   # two objectives: the dominance arms (bench/pareto_replay.py)

`record` trains a seeded random sample of the demo space with `nrfer.train.fit` (no early
stopping) and writes every epoch's val_acc, val_loss and wall time to
bench/search_replay_curves.json. `run` starts Ray once and runs each arm (searcher x
scheduler) as a real Tune sweep whose trainable reports, epoch by epoch, the recorded curve
of the recorded config nearest to the one the searcher proposed; every sweep gets the same
epoch budget (what FIFO + random spends on its trials). It prints the anytime table (best val
found vs epochs spent: median and IQR over seeds), the epochs each arm needs to reach FIFO +
random's final median best, writes bench/search_replay.png and a `search_replay` section in
bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CURVES = Path(__file__).with_name("search_replay_curves.json")
PLOT = Path(__file__).with_name("search_replay.png")


# -- record ----------------------------------------------------------------------------------


def _train_one(job):
    import torch

    from nrfer.train import fit

    torch.set_num_threads(1)
    params, raw = job
    from nrfer.config import make_config

    rows = []
    t0 = time.perf_counter()
    fit(
        make_config(raw, "record"),
        callback=lambda m, _p: rows.append(
            {k: float(m[k]) for k in ("val_acc", "val_loss", "epoch_time_s", "train_loss")}
        ),
        out_dir=None,
        evaluate_test=False,
    )
    return {"params": params, "curve": rows, "seconds": time.perf_counter() - t0}


def record(
    n: int, epochs: int, workers: int, seed: int, out: Path = CURVES, space: str = "demo.yaml"
) -> None:
    import multiprocessing as mp

    import optuna

    from sweep.spec.space import load_space

    spec = load_space(space)
    spec.early_stopping.max_epochs = epochs
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    jobs = []
    for _ in range(n):
        trial = study.ask()
        spec.define_by_run(trial)
        raw = spec.trial_config(trial.params).to_dict()
        raw["train"]["num_threads"] = 1
        jobs.append((dict(trial.params), raw))
    t0 = time.perf_counter()

    def save(configs: list) -> None:  # after every config: an interrupted recording keeps them
        out.write_text(
            json.dumps(
                {
                    "space": "search_spaces/demo.yaml" if space == "demo.yaml" else space,
                    "epochs": epochs,
                    "seed": seed,
                    "command": f"python bench/search_replay.py record --n {n} --epochs {epochs} "
                    f"--workers {workers} --seed {seed} --out bench/{out.name} --space {space}",
                    "wall_s": time.perf_counter() - t0,
                    "configs": configs,
                },
                indent=1,
            )
        )

    configs = []
    with mp.get_context("spawn").Pool(workers) as pool:
        for i, res in enumerate(pool.imap_unordered(_train_one, jobs), start=1):
            configs.append(res)
            save(configs)
            best = max(r["val_acc"] for r in res["curve"])
            print(f"[{i}/{n}] best val_acc {best:.3f} in {res['seconds']:.0f}s  {res['params']}")
    print(f"wrote {out} ({n} configs x {epochs} epochs, {time.perf_counter() - t0:.0f}s)")


# -- replay ----------------------------------------------------------------------------------


def distance(a: dict, b: dict, spec) -> float:
    """Between two parameter sets of the space: 1 per differing or missing choice, the
    normalised (log for loguniform) difference for numbers."""
    d = 0.0
    for p in spec.params:
        if (p.key in a) != (p.key in b):
            d += 1.0
        elif p.key not in a:
            continue
        elif p.kind == "choice":
            d += float(a[p.key] != b[p.key])
        else:
            lo, hi = float(p.args[0]), float(p.args[1])
            f = math.log if p.kind == "loguniform" else float
            d += abs(f(a[p.key]) - f(b[p.key])) / max(abs(f(hi) - f(lo)), 1e-12)
    return d


def make_trainable(curves: list[dict], spec):
    from ray import tune

    def replay(config: dict) -> None:
        params = dict(config)
        nearest = min(curves, key=lambda c: distance(params, c["params"], spec))
        for row in nearest["curve"]:
            tune.report({"val_acc": row["val_acc"], "val_loss": row["val_loss"]})

    return replay


TPE_OPTIONS: dict = {}  # extra TPESampler options of every TPE arm (run --multivariate ...)

ARMS = {  # name: (searcher, early stopping, prune-aware searcher)
    "FIFO + random": ("random", "fifo", False),
    "FIFO + TPE": ("tpe", "fifo", False),
    "ASHA + random": ("random", "asha", False),
    "ASHA + TPE (Ray: stopped = COMPLETE)": ("tpe", "asha", False),
    "ASHA + TPE (ours: stopped = PRUNED)": ("tpe", "asha", True),
    # Ray's HyperBandScheduler pauses and resumes trials through Tune's controller, which
    # the simulator does not have; its asynchronous form (ASHA over 3 brackets of different
    # grace periods, Li et al. 2020) is the HyperBand arm here
    "HyperBand (async, 3 brackets) + random": ("random", "hyperband", False),
    "HyperBand (async, 3 brackets) + TPE (PRUNED)": ("tpe", "hyperband", True),
    "median stopping + random": ("random", "median", False),
    "median stopping + TPE (PRUNED)": ("tpe", "median", True),
    # the first rung placed by the sweep's own completed curves, or none (sweep.runtime.stopping.adaptive)
    "adaptive + random": ("random", "adaptive", False),
    "adaptive + TPE (PRUNED)": ("tpe", "adaptive", True),
}
ADAPTIVE = {"min_trials": 8, "min_rank_correlation": 0.8}  # run --min-trials / --min-rho
SPACE = {"file": "demo.yaml"}  # the space of the recording being replayed (its "space" key)


def make_arm(arm, epochs, seed, grace, rf, startup, exp_dir):
    """The searcher (behind the sweep's ConcurrencyLimiter) and early stopping of an arm, built
    as the product builds them."""
    import optuna
    from ray import tune

    from sweep.runtime.ledger import ledger_dir
    from sweep.runtime.search import SweepSearch
    from sweep.runtime.stopping import rule_for
    from sweep.spec.sections import EarlyStopping
    from sweep.spec.space import load_space

    searcher_name, stopping, prune_aware = ARMS[arm]
    spec = load_space(SPACE["file"])
    spec.seed, spec.searcher = seed, searcher_name
    if stopping == "asha":
        spec.early_stopping = EarlyStopping(
            name="asha", max_epochs=epochs, grace_period=grace, reduction_factor=rf
        )
    elif stopping == "adaptive":
        spec.early_stopping = EarlyStopping(
            name="adaptive", max_epochs=epochs, reduction_factor=rf, **ADAPTIVE
        )
    else:
        spec.early_stopping = EarlyStopping(name="fifo", max_epochs=epochs)
    sampler = (
        optuna.samplers.RandomSampler(seed=seed)
        if searcher_name == "random"
        else optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, **TPE_OPTIONS)
    )
    cls = SweepSearch if prune_aware else tune.search.optuna.OptunaSearch
    kwargs = {"max_epochs": epochs} if prune_aware else {}
    searcher = cls(
        space=spec.define_by_run, metric="val_acc", mode="max", sampler=sampler, **kwargs
    )
    limited = tune.search.ConcurrencyLimiter(searcher, max_concurrent=2)
    if stopping == "hyperband":
        scheduler = tune.schedulers.AsyncHyperBandScheduler(
            time_attr="training_iteration",
            max_t=epochs,
            grace_period=grace,
            reduction_factor=rf,
            brackets=3,
        )
    elif stopping == "median":
        scheduler = tune.schedulers.MedianStoppingRule(
            time_attr="training_iteration", grace_period=grace, min_samples_required=3
        )
    else:
        scheduler = rule_for(spec).build(ledger_dir(exp_dir))
    scheduler.set_search_properties("val_acc", "max")
    return spec, limited, scheduler


class _Trial:
    """What ASHA and the median rule read of a Tune trial: its id (one object per trial:
    the median rule keys its records by the trial)."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


class _Controller:
    """What the median rule asks Tune's controller: the trials waiting (none here: a
    simulated trial that lacks comparisons goes on, as in Tune when nothing is pending)."""

    def get_live_trials(self) -> list:
        return []


def simulate_arm(curves, epochs, budget, arm, seed, grace, rf, startup) -> list[float]:
    """One sweep in simulated time: 2 trials at a time, each epoch lasting its recorded wall
    time; the real searcher and scheduler objects get the calls Tune's controller makes
    (suggest, on_trial_add, on_trial_result, on_trial_complete) in the order they would.
    Returns every reported val_acc in arrival order (its length = epochs spent)."""
    import heapq

    from ray.tune.schedulers import TrialScheduler

    with tempfile.TemporaryDirectory() as tmp:
        spec, searcher, scheduler = make_arm(arm, epochs, seed, grace, rf, startup, tmp)
        seen: list[float] = []
        running: list = []  # heap of (finish time of its next epoch, n, trial id)
        state: dict[str, dict] = {}
        now, n = 0.0, 0
        trials: dict[str, _Trial] = {}
        ctl = _Controller()

        def fill() -> None:
            nonlocal n
            while len(state) < 2:
                tid = f"t{n:04d}"
                params = searcher.suggest(tid)
                if not params:
                    return
                n += 1
                curve = min(curves, key=lambda c: distance(params, c["params"], spec))["curve"]
                trials[tid] = _Trial(tid)
                scheduler.on_trial_add(ctl, trials[tid])
                state[tid] = {"curve": curve, "epoch": 0}
                heapq.heappush(running, (now + curve[0]["epoch_time_s"], n, tid))

        fill()
        while running and len(seen) < budget:
            now, _, tid = heapq.heappop(running)
            st = state[tid]
            row = st["curve"][st["epoch"]]
            st["epoch"] += 1
            result = {
                "val_acc": row["val_acc"],
                "val_loss": row["val_loss"],
                "training_iteration": st["epoch"],
            }
            seen.append(row["val_acc"])
            searcher.on_trial_result(tid, result)
            action = scheduler.on_trial_result(ctl, trials[tid], result)
            if action == TrialScheduler.STOP or st["epoch"] >= epochs:
                scheduler.on_trial_complete(ctl, trials[tid], result)
                searcher.on_trial_complete(tid, result)
                del state[tid]
                fill()
            else:
                heapq.heappush(running, (now + st["curve"][st["epoch"]]["epoch_time_s"], n, tid))
        if hasattr(scheduler, "choice"):  # adaptive: where it put the first rung, if anywhere
            choice = scheduler.choice
            DECISIONS.setdefault(arm, []).append(
                "undecided" if choice is None else (choice.epoch or "none")
            )
        return seen[:budget]


DECISIONS: dict[str, list] = {}  # adaptive arms: each seed's first rung (none: no stopping)


def run_arm(curves, epochs, budget, arm, seed, grace, rf, startup) -> list[float]:
    """One sweep through Ray Tune itself (the replay trainable; slow: minutes per sweep here);
    returns every reported val_acc in arrival order (its length = epochs spent)."""
    from ray import tune
    from ray.tune import Callback, Stopper

    seen: list[float] = []

    class Record(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen.append(float(result["val_acc"]))

    class Budget(Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return len(seen) >= budget

    with tempfile.TemporaryDirectory() as tmp:
        spec, searcher, scheduler = make_arm(arm, epochs, seed, grace, rf, startup, tmp)
        tuner = tune.Tuner(
            tune.with_resources(make_trainable(curves, spec), {"cpu": 1}),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                metric="val_acc",
                mode="max",
                num_samples=budget,  # at most one epoch per trial: the budget stops it first
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="replay",
                storage_path=tmp,
                stop=Budget(),
                callbacks=[Record()],
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
        tuner.fit()
    return seen[:budget]


def anytime(values: list[float], budget: int) -> np.ndarray:
    best = np.maximum.accumulate(np.asarray(values, dtype=float))
    return (
        np.concatenate([best, np.full(budget - len(best), best[-1])])
        if len(best) < budget
        else best
    )


def run(
    reps: int,
    trials: int,
    grace: int,
    rf: int,
    startup: int,
    arms: list[str],
    curves_file: Path,
    engine: str = "simulate",
    seed_offset: int = 0,
    name: str = "search_replay",
    plot: Path = PLOT,
) -> None:
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1000")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import optuna
    import ray

    from bench.common import record as record_results
    from sweep.runtime.local_ray import init_ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recorded = json.loads(curves_file.read_text())
    curves, epochs = recorded["configs"], recorded["epochs"]
    SPACE["file"] = recorded.get("space", "demo.yaml")
    budget = trials * epochs  # what FIFO + random spends
    if engine == "tune":
        init_ray(verbose=0, num_cpus=2)
    sweep = run_arm if engine == "tune" else simulate_arm
    curves_by_arm: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    try:
        for arm in arms:
            t_arm = time.perf_counter()
            runs = [
                anytime(
                    sweep(curves, epochs, budget, arm, 1000 + seed_offset + r, grace, rf, startup),
                    budget,
                )
                for r in range(reps)
            ]
            curves_by_arm[arm] = np.stack(runs)
            print(f"{arm}: {reps} sweeps in {time.perf_counter() - t_arm:.0f}s", flush=True)
    finally:
        ray.shutdown()
    LAST_META.update(
        seed_offset=seed_offset, seeds=[1000 + seed_offset, 1000 + seed_offset + reps - 1]
    )
    summarize(curves_by_arm, budget, epochs, reps, trials, grace, rf, startup, recorded, t0, plot)
    record_results(name, LAST_ROWS, LAST_META)


LAST_ROWS: list[dict] = []
LAST_META: dict = {}


def hit_fraction(runs: np.ndarray, target: float, budget: int) -> float:
    """The fraction of the budget at which the median (over seeds) best-so-far first reaches
    `target`; inf when it never does."""
    ok = np.median(runs, axis=0) >= target - 1e-12
    return (int(np.argmax(ok)) + 1) / budget if ok.any() else math.inf


def bootstrap(runs: np.ndarray, target: float, budget: int, n: int = 1000) -> tuple:
    """A 95% percentile-bootstrap interval of `hit_fraction` over the seeds (resampled with
    replacement, as Syne Tune reports its anytime results); inf: not reached."""
    rng = np.random.default_rng(0)
    reps = runs.shape[0]
    boots = [hit_fraction(runs[rng.integers(0, reps, reps)], target, budget) for _ in range(n)]
    return (
        float(np.percentile(boots, 2.5, method="lower")),
        float(np.percentile(boots, 97.5, method="higher")),
    )


def spread(recorded: dict, target: float | None) -> str:
    """How many recorded configs learn: their best val_acc's quantiles, and how many reach
    `target` at all (a replay where 3 of 48 can is a lottery, not a search)."""
    best = np.array([max(r["val_acc"] for r in c["curve"]) for c in recorded["configs"]])
    q = np.percentile(best, [0, 25, 50, 75, 100])
    reach = (
        f"; {int((best >= target - 1e-12).sum())} of {len(best)} reach the target" if target else ""
    )
    return (
        "recorded configs' best val_acc: min {:.3f}, q1 {:.3f}, median {:.3f}, q3 {:.3f}, max {:.3f}".format(
            *q
        )
        + reach
    )


def summarize(
    by_arm, budget, epochs, reps, trials, grace, rf, startup, recorded, t0, plot=PLOT
) -> None:
    base = by_arm.get("FIFO + random")
    target = float(np.median(base[:, -1])) if base is not None else None
    oracle = max(max(r["val_acc"] for r in c["curve"]) for c in recorded["configs"])
    marks = [budget // 4, budget // 2, budget]
    print(
        f"\n{len(recorded['configs'])} recorded configs x {epochs} epochs (best possible val_acc "
        f"{oracle:.3f}); budget {budget} epochs = {trials} FIFO trials; {reps} seeds per arm; "
        f"ASHA grace {grace}, reduction {rf}; TPE startup {startup} {TPE_OPTIONS or ''}"
    )
    print(spread(recorded, target))
    head = " | ".join(f"at {m} epochs: median [IQR]" for m in marks)
    print(
        f"| arm | {head} | epochs to reach FIFO + random's final median | fraction of budget "
        "[95% bootstrap CI] | seeds reaching it |"
    )
    print("|---|" + "---|" * (len(marks) + 3))
    LAST_ROWS.clear()
    for arm, runs in by_arm.items():
        cells, row = [], {"arm": arm}
        for m in marks:
            col = runs[:, m - 1]
            q1, med, q3 = np.percentile(col, [25, 50, 75])
            cells.append(f"{med:.3f} [{q1:.3f}, {q3:.3f}]")
            row[f"median_at_{m}"], row[f"iqr_at_{m}"] = float(med), [float(q1), float(q3)]
        med_curve = np.median(runs, axis=0)
        hit = (
            int(np.argmax(med_curve >= target - 1e-12)) + 1
            if (med_curve >= target - 1e-12).any()
            else None
        )
        row["epochs_to_target"] = hit
        row["fraction_of_budget"] = hit / budget if hit else None
        lo, hi = bootstrap(runs, target, budget) if target is not None else (math.inf,) * 2
        row["fraction_ci95"] = [None if math.isinf(v) else v for v in (lo, hi)]
        seeds_hit = float((runs[:, -1] >= target - 1e-12).mean()) if target is not None else None
        row["seeds_reaching_target"] = seeds_hit
        reach = f"{hit} ({hit / budget:.2f} of {budget})" if hit else f"not within {budget}"
        ci = "[" + ", ".join("never" if math.isinf(v) else f"{v:.2f}" for v in (lo, hi)) + "]"
        frac = f"{hit / budget:.2f}" if hit else "never"
        print(f"| {arm} | " + " | ".join(cells) + f" | {reach} | {frac} {ci} | {seeds_hit:.0%} |")
        LAST_ROWS.append(row)
    for arm, picks in DECISIONS.items():
        counts = {str(k): picks.count(k) for k in dict.fromkeys(sorted(picks, key=str))}
        print(f"{arm}: first rung per seed (epoch: seeds) {counts}")
        LAST_META.setdefault("adaptive_first_rung", {})[arm] = counts
    LAST_META.update(
        budget_epochs=budget,
        epochs=epochs,
        reps=reps,
        trials=trials,
        grace_period=grace,
        reduction_factor=rf,
        tpe_startup=startup,
        tpe_options=dict(TPE_OPTIONS),
        target=target,
        oracle=oracle,
        recorded_configs=len(recorded["configs"]),
        wall_s=time.perf_counter() - t0,
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5))
        x = np.arange(1, budget + 1)
        for arm, runs in by_arm.items():
            q1, med, q3 = np.percentile(runs, [25, 50, 75], axis=0)
            ax.plot(x, med, label=arm)
            ax.fill_between(x, q1, q3, alpha=0.15)
        if target is not None:
            ax.axhline(target, color="grey", ls=":", label="FIFO + random final median")
        ax.set_xlabel("epochs spent")
        ax.set_ylabel("best val_acc found (median, IQR)")
        ax.set_title(
            f"search on recorded curves, {epochs} epochs ({reps} seeds per arm; {SPACE['file']})"
        )
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"plot: {plot}")
    except ImportError:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--n", type=int, default=32)
    rec.add_argument("--epochs", type=int, default=8)
    rec.add_argument("--workers", type=int, default=2)
    rec.add_argument("--seed", type=int, default=123)
    rec.add_argument("--out", type=Path, default=CURVES)
    rec.add_argument("--space", default="demo.yaml", help="the space to sample configs of")
    rp = sub.add_parser("run")
    rp.add_argument("--reps", type=int, default=20)
    rp.add_argument("--trials", type=int, default=16, help="FIFO + random's trials (the budget)")
    rp.add_argument("--grace", type=int, help="ASHA grace period (default: the demo space's)")
    rp.add_argument("--rf", type=int, help="ASHA reduction factor (default: the demo space's)")
    rp.add_argument("--startup", type=int, default=4, help="TPE's random startup trials")
    rp.add_argument("--multivariate", action="store_true", help="TPE: multivariate=True")
    rp.add_argument("--constant-liar", action="store_true", help="TPE: constant_liar=True")
    rp.add_argument("--arms", nargs="*", default=list(ARMS))
    rp.add_argument("--min-trials", type=int, default=8, help="adaptive: completed trials first")
    rp.add_argument("--min-rho", type=float, default=0.8, help="adaptive: the bound to reach")
    rp.add_argument(
        "--looks-again",
        action="store_true",
        help="adaptive: with no rung, decide again each time the completed trials double",
    )
    rp.add_argument("--curves", type=Path, default=CURVES)
    rp.add_argument("--seed-offset", type=int, default=0, help="seeds 1000+K .. 1000+K+reps-1")
    rp.add_argument("--name", default="search_replay", help="the bench/results.json section")
    rp.add_argument("--plot", type=Path, default=PLOT)
    rp.add_argument(
        "--engine",
        choices=("simulate", "tune"),
        default="simulate",
        help="simulate: the real searcher and scheduler driven in simulated time (seconds per "
        "sweep); tune: a real Tune sweep of the replay trainable (minutes per sweep)",
    )
    if len(sys.argv) > 1 and sys.argv[1] == "pareto":  # its own arms and options
        import pareto_replay

        sys.argv = [sys.argv[0], "run", *sys.argv[2:]]
        return pareto_replay.main()
    args = ap.parse_args()
    if args.cmd == "record":
        record(args.n, args.epochs, args.workers, args.seed, args.out, args.space)
    else:
        from sweep.spec.space import load_space

        demo = load_space("demo.yaml").early_stopping
        args.grace = args.grace or getattr(demo, "grace_period", None) or 2
        args.rf = args.rf or getattr(demo, "reduction_factor", None) or 2
        if args.multivariate:
            TPE_OPTIONS.update(multivariate=True, group=True)
        if args.constant_liar:
            TPE_OPTIONS["constant_liar"] = True
        ADAPTIVE.update(min_trials=args.min_trials, min_rank_correlation=args.min_rho)
        if args.looks_again:
            ADAPTIVE["looks_again"] = True
        run(
            args.reps,
            args.trials,
            args.grace,
            args.rf,
            args.startup,
            args.arms,
            args.curves,
            args.engine,
            args.seed_offset,
            args.name,
            args.plot,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
