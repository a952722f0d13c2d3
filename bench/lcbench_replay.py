"""Search strategies replayed on LCBench's public learning curves (bench/lcbench.py), through the
product's own searcher and early-stopping rules and the peers' schedulers, in simulated time.

    python bench/lcbench_replay.py run [--seeds 100] [--tasks ...] [--arms ...] [--workers 2]
    python bench/lcbench_replay.py table        # the tables again, from bench/lcbench_results.json

Per task and seed, a sweep of the LCBench MLP's 7 hyperparameters, 4 trials at a time, 52
epochs each, maximising val_accuracy (in %, as LCBench gives it). A trial's epoch lasts what
the surrogate's `time` column says it lasts (the difference of consecutive epochs), so a
configuration's cost differs as on the real benchmark. The calls Tune's controller makes
(suggest, on_trial_add, on_trial_result, on_trial_complete) go to the real objects, in the
order the simulated clock gives them.

The budget, per task: the median (over seeds) simulated time FIFO + random needs for 64
trials. Every arm then runs until that time (an arm that stops trials early starts more).
The target, per task: FIFO + random's median final best. Reported per arm, with 95% percentile
bootstrap intervals over seeds: the fraction of the budget at which the median best-so-far
first reaches the target (inf: never), and the median final best.

Arms: FIFO + random, FIFO + TPE, ASHA + TPE (rungs 1/3/9/27), adaptive + TPE (the shipped
default: sweep.runtime.stopping.adaptive with the space file's defaults), through the product's
`SweepSearch` (a trial stopped early is PRUNED in the study) and early-stopping builder; the
peers' schedulers on the same searcher: Ray Tune's AsyncHyperBandScheduler (Ray's synchronous
HyperBandScheduler pauses and resumes trials through Tune's controller, which this simulator
does not have) and MedianStoppingRule; Optuna's HyperbandPruner and WilcoxonPruner, through
Optuna alone (a study with that pruner, ask / report / should_prune / tell: a pruner needs its
own study, which Tune's searcher does not give it), epochs as their steps. Every TPE arm uses
the product's sampler settings (TPESampler, 4 start-up trials).

Tasks: the rule is tuned on the 17 lowest task ids (numerically sorted) only; the other 17
are held out and marked so.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lcbench import EPOCHS, PARAMS, LCBench  # noqa: E402
from search_replay import _Controller, _Trial, hit_fraction  # noqa: E402

RESULTS = Path(__file__).with_name("lcbench_results.json")
METRIC = "val_accuracy"
CONCURRENT, TRIALS = 4, 64  # FIFO + random's sweep: 64 trials, 4 at a time
GRID = 200  # anytime curves are kept at this many points of the budget
# at most 8x FIFO + random's trials per sweep: TPE's ask grows with the trials told (0.1 s at
# ~1,500), and an arm that stops most trials at epoch 1 starts that many on cheap tasks;
# a sweep that reaches the cap ends there (counted: `capped` in the tables)
MAX_TRIALS = 8 * TRIALS
BUDGET_SEEDS = 10  # FIFO + random's 64-trial makespans whose median is a task's budget
STARTUP = 4  # TPE's random start-up trials, as the product's sampler (SweepSpec.sampler)

ARMS = {  # name: (sampler, early stopping)
    "FIFO + random": ("random", "fifo"),
    "FIFO + TPE": ("tpe", "fifo"),
    "ASHA + TPE (rungs 1/3/9/27)": ("tpe", "asha"),
    "adaptive + TPE (default)": ("tpe", "adaptive"),
    "adaptive, looks again + TPE": ("tpe", "adaptive-again"),
    "Ray AsyncHyperBand + TPE": ("tpe", "hyperband"),
    "Ray MedianStoppingRule + TPE": ("tpe", "median"),
    "Optuna HyperbandPruner + TPE (Optuna alone)": ("tpe", "optuna-hyperband"),
    "Optuna WilcoxonPruner + TPE (Optuna alone)": ("tpe", "optuna-wilcoxon"),
}
DEFAULT_ARM = "adaptive + TPE (default)"
# Wilcoxon (a pruner for steps that are instances, not epochs) prunes most trials at once here,
# so its sweeps hold ~500 trials and TPE's asks make one take ~30 s: it runs only when named.
RUN_BY_DEFAULT = [a for a in ARMS if "Wilcoxon" not in a and "looks again" not in a]
ADAPTIVE: dict = {}  # overrides of the adaptive rule's defaults (run --min-trials / --min-rho)


def tuned_and_held_out(tasks: list[int]) -> tuple[list[int], list[int]]:
    ordered = sorted(tasks)
    return ordered[: len(ordered) // 2], ordered[len(ordered) // 2 :]


def define_by_run(space: dict):
    """Optuna define-by-run over LCBench's configuration space (config_space.json)."""

    def suggest(trial) -> None:
        for name in PARAMS:
            h = space[name]
            if h["type"] == "uniform_int":
                trial.suggest_int(name, int(h["lower"]), int(h["upper"]), log=h["log"])
            else:
                trial.suggest_float(name, float(h["lower"]), float(h["upper"]), log=h["log"])

    return suggest


def sampler(kind: str, seed: int):
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP)


class TuneArm:
    """The product's searcher (SweepSearch) and an early-stopping rule: the product's builder
    (FIFO, ASHA, adaptive) or one of Ray Tune's schedulers."""

    def __init__(self, kind: str, stopping: str, seed: int, space: dict, exp_dir: str) -> None:
        from ray import tune

        from sweep.runtime.ledger import ledger_dir
        from sweep.runtime.search import SweepSearch
        from sweep.runtime.stopping import rule_for
        from sweep.spec.sections import EarlyStopping

        self.searcher = SweepSearch(
            max_epochs=EPOCHS,
            space=define_by_run(space),
            metric=METRIC,
            mode="max",
            sampler=sampler(kind, seed),
        )
        if stopping == "hyperband":
            self.scheduler = tune.schedulers.AsyncHyperBandScheduler(
                time_attr="training_iteration", max_t=EPOCHS, grace_period=1,
                reduction_factor=3, brackets=3,
            )  # fmt: skip
        elif stopping == "median":
            self.scheduler = tune.schedulers.MedianStoppingRule(
                time_attr="training_iteration", grace_period=1, min_samples_required=3
            )
        else:
            es = {
                "fifo": EarlyStopping(name="fifo", max_epochs=EPOCHS),
                "asha": EarlyStopping(
                    name="asha", max_epochs=EPOCHS, grace_period=1, reduction_factor=3
                ),
                "adaptive": EarlyStopping(name="adaptive", max_epochs=EPOCHS, **ADAPTIVE),
                "adaptive-again": EarlyStopping(
                    name="adaptive", max_epochs=EPOCHS, looks_again=True, **ADAPTIVE
                ),
            }[stopping]
            spec = SimpleNamespace(early_stopping=es, multi_objective=False, senses=None)
            self.scheduler = rule_for(spec).build(ledger_dir(exp_dir))
        self.scheduler.set_search_properties(METRIC, "max")
        self.trials: dict[str, _Trial] = {}
        self.ctl = _Controller()

    def suggest(self, tid: str) -> dict | None:
        params = self.searcher.suggest(tid)
        if params:
            self.trials[tid] = _Trial(tid)
            self.scheduler.on_trial_add(self.ctl, self.trials[tid])
        return params

    def result(self, tid: str, epoch: int, value: float, elapsed: float) -> bool:
        from ray.tune.schedulers import TrialScheduler

        result = {METRIC: value, "training_iteration": epoch, "time_total_s": elapsed}
        self.searcher.on_trial_result(tid, result)
        stop = self.scheduler.on_trial_result(self.ctl, self.trials[tid], result)
        if stop == TrialScheduler.STOP or epoch >= EPOCHS:
            self.scheduler.on_trial_complete(self.ctl, self.trials[tid], result)
            self.searcher.on_trial_complete(tid, result)
            return True
        return False

    def first_rung(self):
        if not hasattr(self.scheduler, "choice"):  # only the adaptive rule places one
            return None
        choice = self.scheduler.choice
        return "undecided" if choice is None else (choice.epoch or "none")


class OptunaArm:
    """Optuna alone: a study with TPE and a pruner; each epoch reported, then should_prune."""

    def __init__(self, kind: str, stopping: str, seed: int, space: dict) -> None:
        import warnings

        import optuna

        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # Wilcoxon
        pruner = (
            optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS, reduction_factor=3)
            if stopping == "optuna-hyperband"
            else optuna.pruners.WilcoxonPruner(p_threshold=0.1)
        )
        self.study = optuna.create_study(  # named: Hyperband's brackets hash the name
            study_name=f"lcbench-{seed}",
            direction="maximize",
            sampler=sampler(kind, seed),
            pruner=pruner,
        )
        self.suggest_params = define_by_run(space)
        self.trials: dict = {}

    def suggest(self, tid: str) -> dict:
        trial = self.study.ask()
        self.suggest_params(trial)
        self.trials[tid] = trial
        return dict(trial.params)

    def result(self, tid: str, epoch: int, value: float, elapsed: float) -> bool:
        from optuna.trial import TrialState

        trial = self.trials[tid]
        trial.report(value, epoch)
        if epoch >= EPOCHS:
            self.study.tell(trial, value)
            return True
        if trial.should_prune():
            self.study.tell(trial, state=TrialState.PRUNED)
            return True
        return False

    def first_rung(self):
        return None


def build_arm(arm: str, seed: int, space: dict, exp_dir: str):
    kind, stopping = ARMS[arm]
    if stopping.startswith("optuna-"):
        return OptunaArm(kind, stopping, seed, space)
    return TuneArm(kind, stopping, seed, space, exp_dir)


def simulate(bench: LCBench, task: int, arm: str, seed: int, budget: float, max_trials: int):
    """One sweep: the (time, val_accuracy) of every reported epoch in time order (`seen`),
    the trials started, the epochs each ended trial ran (`ended`, in order of ending) and the
    adaptive rule's first rung (None for other arms). It ends at `budget` simulated seconds
    or after `max_trials` trials, whichever comes first."""
    np.random.seed(seed)  # Ray's AsyncHyperBand draws each trial's bracket from numpy's global
    with tempfile.TemporaryDirectory() as tmp:
        runner = build_arm(arm, seed, bench.space, tmp)
        seen: list[tuple[float, float]] = []
        ended: list[int] = []
        heap: list = []  # (end of its next epoch, tie-break, trial id)
        state: dict[str, dict] = {}
        now, n = 0.0, 0

        def start() -> None:
            nonlocal n
            while len(state) < CONCURRENT and n < max_trials:
                tid = f"t{n:05d}"
                params = runner.suggest(tid)
                if not params:
                    return
                n += 1
                curve = bench.curves(task, [params])[0]
                cost = np.diff(np.concatenate([[0.0], curve[:, 0]]))
                state[tid] = {"acc": curve[:, 1], "cost": np.maximum(cost, 1e-3), "epoch": 0}
                heapq.heappush(heap, (now + state[tid]["cost"][0], n, tid))

        start()
        while heap:
            now, _, tid = heapq.heappop(heap)
            if now > budget:
                break
            st = state[tid]
            value = float(st["acc"][st["epoch"]])
            st["epoch"] += 1
            seen.append((now, value))
            if runner.result(tid, st["epoch"], value, now):
                ended.append(st["epoch"])
                del state[tid]
                start()
            else:
                heapq.heappush(heap, (now + st["cost"][st["epoch"]], n, tid))
        return SimpleNamespace(seen=seen, trials=n, ended=ended, first_rung=runner.first_rung())


def makespan(bench: LCBench, task: int, seed: int) -> float:
    return simulate(bench, task, "FIFO + random", seed, math.inf, TRIALS).seen[-1][0]


def anytime(seen: list[tuple[float, float]], budget: float) -> np.ndarray:
    """Best val_accuracy found by each of GRID points of the budget (0 before the first)."""
    grid = budget * np.arange(1, GRID + 1) / GRID
    times = np.array([t for t, _ in seen]) if seen else np.zeros(0)
    best = np.maximum.accumulate(np.array([v for _, v in seen])) if seen else np.zeros(0)
    idx = np.searchsorted(times, grid, side="right") - 1
    return np.where(idx >= 0, best[np.maximum(idx, 0)] if len(best) else 0.0, 0.0)


def _task_job(job: tuple) -> dict:
    """Every arm and seed of one task (one process per task: the surrogate and Optuna stay
    warm, and tasks run in parallel)."""
    task, arms, seeds, adaptive, budget = job
    import optuna

    ADAPTIVE.update(adaptive)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    bench = LCBench()
    t0 = time.perf_counter()
    if budget is None:  # over BUDGET_SEEDS seeds whatever `seeds` is (cheap: FIFO + random)
        budget = float(np.median([makespan(bench, task, 1000 + s) for s in range(BUDGET_SEEDS)]))
    out = {"task": task, "budget_s": budget, "arms": {}}
    for arm in arms:
        curves, trials, rungs = [], [], []
        for s in range(seeds):
            sweep = simulate(bench, task, arm, 1000 + s, budget, MAX_TRIALS)
            curves.append(anytime(sweep.seen, budget).round(4).tolist())
            trials.append(sweep.trials)
            rungs.append(sweep.first_rung)
        out["arms"][arm] = {"anytime": curves, "trials": trials, "first_rung": rungs}
    out["seconds"] = time.perf_counter() - t0
    return out


def run(tasks: list[int], arms: list[str], seeds: int, workers: int, out: Path) -> None:
    import multiprocessing as mp

    done = json.loads(out.read_text()) if out.exists() else {"tasks": {}}
    # the tables use the first `seeds` of the first run of a file; an arm added later with
    # fewer seeds (Wilcoxon: `run --arms ... --seeds 2`) is shown with its own count
    done.setdefault("seeds", seeds)
    done.update(concurrent=CONCURRENT, trials=TRIALS, grid=GRID, cap=MAX_TRIALS)
    jobs = []  # per task, the arms it lacks (a task already done keeps its budget)
    for t in tasks:
        have = done["tasks"].get(str(t), {})
        missing = [a for a in arms if a not in have.get("arms", {})]
        if missing:
            jobs.append((t, missing, seeds, dict(ADAPTIVE), have.get("budget_s")))
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        for res in pool.imap_unordered(_task_job, jobs):
            have = done["tasks"].setdefault(str(res["task"]), {**res, "arms": {}, "seconds": 0})
            have["arms"].update(res["arms"])
            have["seconds"] += res["seconds"]
            out.write_text(json.dumps(done))  # after every task: an interrupted run keeps them
            print(
                f"task {res['task']}: {res['seconds']:.0f}s "
                f"({len(done['tasks'])}/{len(tasks)} tasks, {time.perf_counter() - t0:.0f}s)",
                flush=True,
            )


PINNED = Path(__file__).with_name("lcbench_data") / "pinned.json"
PIN = {"task": 167149, "seed": 1000, "of_makespan": 0.4}  # a tuned task, 2/5 of a budget


def pin(bench: LCBench) -> dict:
    """One task's replay of one seed per arm, within 2/5 of FIFO + random's time for 64 trials
    of that seed: the trials each arm started, the epochs each ended trial ran (its
    scheduler's decisions), the best val_accuracy and the adaptive rule's first rung.
    tests/bench/test_lcbench.py compares it with bench/lcbench_data/pinned.json, so a change
    to a searcher or a scheduler shows up there (`python bench/lcbench_replay.py pin` remakes
    the file after a change meant to change them)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task, seed = PIN["task"], PIN["seed"]
    budget = round(PIN["of_makespan"] * makespan(bench, task, seed), 3)
    arms = {}
    for arm in ARMS:
        sweep = simulate(bench, task, arm, seed, budget, 10**6)
        arms[arm] = {
            "trials": sweep.trials,
            "ended": sweep.ended,
            "best": round(max(v for _, v in sweep.seen), 4),
            "first_rung": sweep.first_rung,
        }
    return {**PIN, "budget_s": budget, "arms": arms}


# -- the tables ------------------------------------------------------------------------------


def hit(runs: np.ndarray, target: float) -> float:
    """search_replay's hit_fraction with the budget as the anytime grid's length."""
    return hit_fraction(runs, target, runs.shape[1])


def interval(stat, runs: np.ndarray, n: int = 1000) -> tuple[float, float]:
    """95% percentile bootstrap over seeds of stat(runs)."""
    rng = np.random.default_rng(0)
    reps = runs.shape[0]
    boots = [stat(runs[rng.integers(0, reps, reps)]) for _ in range(n)]
    return (
        float(np.percentile(boots, 2.5, method="lower")),
        float(np.percentile(boots, 97.5, method="higher")),
    )


def task_rows(res: dict, seeds: int | None = None) -> list[dict]:
    """Per arm of a task: its fraction and final best with intervals, over its first
    `seeds` seeds (all by default)."""
    res = {
        **res,
        "arms": {arm: {k: v[:seeds] for k, v in rec.items()} for arm, rec in res["arms"].items()},
    }
    base = np.array(res["arms"]["FIFO + random"]["anytime"])
    target = float(np.median(base[:, -1]))
    rows = []
    for arm, rec in res["arms"].items():
        runs = np.array(rec["anytime"])
        frac = hit(runs, target)
        lo, hi = interval(lambda r: hit(r, target), runs)
        final = float(np.median(runs[:, -1]))
        flo, fhi = interval(lambda r: float(np.median(r[:, -1])), runs)
        rungs = [r for r in rec["first_rung"] if r is not None]
        rows.append(
            {
                "task": res["task"],
                "arm": arm,
                "target": round(target, 3),
                "fraction": frac,
                "fraction_ci": [lo, hi],
                "final": round(final, 3),
                "final_ci": [round(flo, 3), round(fhi, 3)],
                "trials": float(np.median(rec["trials"])),
                "seeds": len(rec["trials"]),
                "capped": sum(n >= MAX_TRIALS for n in rec["trials"]),
                "rungs": rungs,
            }
        )
    return rows


def fmt_frac(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.2f}"


def rung_text(rungs: list) -> str:
    if not rungs:
        return ""
    none = sum(r == "none" for r in rungs)
    placed = sorted(r for r in rungs if isinstance(r, int))
    med = f", median epoch {int(np.median(placed))}" if placed else ""
    return f"none in {none}/{len(rungs)}{med}"


TABLES = Path(__file__).with_name("lcbench_tables.md")


def apart(mine: dict, other: dict) -> dict[str, bool]:
    """Where `mine` is worse than `other` beyond both intervals: slower to the target, or a
    lower final best."""
    return {
        "slower": mine["fraction_ci"][0] > other["fraction_ci"][1],
        "lower_final": mine["final_ci"][1] < other["final_ci"][0],
    }


def summarize(rows: list[dict], arms: list[str], tasks: list[int], held: list[int]) -> dict:
    summary = {}
    base = {r["task"]: r for r in rows if r["arm"] == "FIFO + TPE"}
    for which, group in (("held out", held), ("tuned", [t for t in tasks if t not in held])):
        for arm in arms:
            mine = [r for r in rows if r["arm"] == arm and r["task"] in group]
            if not mine:
                continue
            fracs = np.array([r["fraction"] for r in mine])
            rng = np.random.default_rng(0)
            boots = [np.median(fracs[rng.integers(0, len(fracs), len(fracs))]) for _ in range(1000)]
            lo, hi = np.percentile(boots, [2.5, 97.5], method="nearest")
            worse = {r["task"]: apart(r, base[r["task"]]) for r in mine if r["task"] in base}
            rungs = [x for r in mine for x in r["rungs"]]
            counts = sorted({r["seeds"] for r in mine})
            summary[f"{arm} | {which}"] = {
                "arm": arm,
                "seeds": counts[0] if len(counts) == 1 else counts,
                "set": which,
                "tasks": len(mine),
                "within_third": int((fracs <= 1 / 3 + 1e-9).sum()),
                "never": int(np.isinf(fracs).sum()),
                "median_fraction": float(np.median(fracs)),
                "median_fraction_ci": [float(lo), float(hi)],
                "slower_than_fifo_tpe": [t for t, w in worse.items() if w["slower"]],
                "lower_final_than_fifo_tpe": [t for t, w in worse.items() if w["lower_final"]],
                "no_rung": sum(x == "none" for x in rungs) if rungs else None,
                "decisions": len(rungs),
                "first_rung_median": (
                    float(np.median([x for x in rungs if isinstance(x, int)]))
                    if any(isinstance(x, int) for x in rungs)
                    else None
                ),
                "capped_sweeps": sum(r["capped"] for r in mine),
            }
    return summary


def table(out: Path, tables: Path = TABLES) -> dict:
    """The summary (printed) and every task's rows (bench/lcbench_tables.md)."""
    done = json.loads(out.read_text())
    tasks = sorted(int(t) for t in done["tasks"])
    _, held = tuned_and_held_out(LCBench().tasks)
    rows = [r for t in tasks for r in task_rows(done["tasks"][str(t)], done["seeds"])]
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    head = (
        f"LCBench (YAHPO Gym surrogate): {len(tasks)} tasks, {done['seeds']} seeds per arm and "
        f"task, {done['concurrent']} trials at a time, 52 epochs; budget = FIFO + random's "
        f"median simulated time for {done['trials']} trials; target = FIFO + random's median "
        f"final best val_accuracy; at most {done.get('cap', MAX_TRIALS)} trials per sweep. "
        "Fractions: of the budget at which the median (over seeds) best-so-far reaches the "
        "target (never: not within the budget); 95% percentile bootstrap over seeds."
    )
    summary = summarize(rows, arms, tasks, held)
    lines = [
        "| arm | set | tasks within 1/3 of the budget | never | median fraction [95% CI over "
        "tasks] | slower than FIFO + TPE (CIs apart) | lower final best than FIFO + TPE (CIs "
        "apart) | adaptive: no rung / decisions, median first rung |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in summary.values():
        rung = (
            f"{x['no_rung']}/{x['decisions']}, epoch {x['first_rung_median']:g}"
            if x["decisions"] and x["first_rung_median"] is not None
            else (f"{x['no_rung']}/{x['decisions']}" if x["decisions"] else "")
        )
        lo, hi = x["median_fraction_ci"]
        own = "" if x["seeds"] == done["seeds"] else f" ({x['seeds']} seeds)"
        lines.append(
            f"| {x['arm']}{own} | {x['set']} | {x['within_third']}/{x['tasks']} | {x['never']} "
            f"| {fmt_frac(x['median_fraction'])} [{fmt_frac(lo)}, {fmt_frac(hi)}] "
            f"| {', '.join(map(str, x['slower_than_fifo_tpe'])) or '-'} "
            f"| {', '.join(map(str, x['lower_final_than_fifo_tpe'])) or '-'} | {rung} |"
        )
    print(head + "\n\n" + "\n".join(lines))
    matrix = [
        "| task | set | target | " + " | ".join(arms) + " |",
        "|---|---|---|" + "---|" * len(arms),
    ]
    for t in tasks:
        mine = {r["arm"]: r for r in rows if r["task"] == t}
        cells = []
        for arm in arms:
            if arm not in mine:  # an arm run on some tasks only (Wilcoxon)
                cells.append("-")
                continue
            r = mine[arm]
            lo, hi = r["fraction_ci"]
            capped = f" ({r['capped']} capped)" if r["capped"] else ""
            rung = f"; rung {rung_text(r['rungs'])}" if r["rungs"] else ""
            cells.append(
                f"{fmt_frac(r['fraction'])} [{fmt_frac(lo)}, {fmt_frac(hi)}]; final "
                f"{r['final']:.2f}{capped}{rung}"
            )
        which = "held out" if t in held else "tuned"
        target = mine["FIFO + random"]["target"]
        matrix.append(f"| {t} | {which} | {target:.2f} | " + " | ".join(cells) + " |")
    tables.write_text(
        "# LCBench replay: every task (written by `python bench/lcbench_replay.py table`)\n\n"
        + head
        + "\n\n## Over tasks\n\n"
        + "\n".join(lines)
        + "\n\n## Per task: fraction of the budget [95% CI]; median final best val_accuracy\n\n"
        + "\n".join(matrix)
        + "\n"
    )
    print(f"\nper task: {tables}")
    return {"rows": rows, "summary": summary}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("run", help="replay every arm on every task, then print the tables")
    rp.add_argument("--seeds", type=int, default=100)
    rp.add_argument("--tasks", type=int, nargs="*", help="default: all 34")
    rp.add_argument("--arms", nargs="*", default=RUN_BY_DEFAULT, choices=list(ARMS))
    rp.add_argument("--workers", type=int, default=2)
    rp.add_argument("--out", type=Path, default=RESULTS)
    rp.add_argument("--fresh", action="store_true", help="forget the tasks already in --out")
    rp.add_argument("--min-trials", type=int, help="the adaptive rule's min_trials")
    rp.add_argument("--min-rho", type=float, help="the adaptive rule's min_rank_correlation")
    sub.add_parser("pin", help=f"remake {PINNED.name}: one seed of one task per arm")
    tp = sub.add_parser("table", help="the tables of a finished (or partial) run")
    tp.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.cmd == "pin":
        PINNED.write_text(json.dumps(pin(LCBench()), indent=1) + "\n")
        print(f"wrote {PINNED}")
        return 0
    if args.cmd == "run":
        if args.min_trials:
            ADAPTIVE["min_trials"] = args.min_trials
        if args.min_rho is not None:
            ADAPTIVE["min_rank_correlation"] = args.min_rho
        if args.fresh and args.out.exists():
            args.out.unlink()
        run(args.tasks or LCBench().tasks, args.arms, args.seeds, args.workers, args.out)
    result = table(args.out)
    from bench.common import record

    record("lcbench_replay", result["rows"], {"summary": result["summary"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
