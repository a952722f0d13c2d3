"""`nrfer best` (reproduce-best): retrain the best config of a sweep with several seeds,
test each once, register the model.

    nrfer best                          # the most recent sweep in ./mlflow.db
    nrfer best --sweep demo --seeds 3 --tracking-uri sqlite:///mlflow.db
    make reproduce-best SWEEP=demo SEEDS=3

The best trial is chosen by its validation metric (never by test). Each seed trains the
trial's full resolved config from scratch on train, selects its epoch on val and evaluates
test once with those weights. Results go to an MLflow run tagged nrfer.role=reproduce,
nested under the sweep's parent run; the best seed (by val) is registered as a model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import yaml
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from nrfer.cli import check_out_dir, run_command
from nrfer.config import ConfigError, TrialConfig, dotted_value, make_config
from nrfer.data import FERData, load_data
from nrfer.files import save_image, write_atomic
from nrfer.train import FitResult, fit
from nrfer.val_metrics import VAL_METRICS
from nrfer.viz import confusion_image
from sweep.analysis.pareto import Pick, choose, parse_pick, trial_point
from sweep.analysis.significance import mean_std
from sweep.tracking import (
    INSTANCE,
    ROLE,
    SWEEP_ID,
    SweepNotFound,
    check_tracking_uri,
    find_sweep,
    log_metrics,
    tracking_uri,
)
from sweep.tracking.store import artifact_text, move_credentials_to_env
from sweep.tracking.sweep_run import OLD_PARETO_TAG, PARETO_TAG

CHAMPION = "champion"  # the registry alias on the version reproduce-best registers last


def best_trials(
    client: MlflowClient, parent, k: int = 1, pick: Pick | None = None
) -> tuple[list[tuple], dict]:
    """The `k` best finished trials by the sweep's metric (validation only), or the one
    `pick` chooses -> ([(trial run, its best val accuracy, its resolved config dict)], the
    sweep's spec)."""
    spec = yaml.safe_load(artifact_text(client, parent.info.run_id, "space/resolved_spec.yaml"))
    metric, mode = spec.get("metric", "val_acc"), spec.get("mode", "max")
    # the trials of this sweep instance (a name may have had several sweeps); parents
    # written before instances existed: by name
    tag, value = (
        (INSTANCE, parent.data.tags[INSTANCE])
        if INSTANCE in parent.data.tags
        else (SWEEP_ID, parent.data.tags[SWEEP_ID])
    )
    trials = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{tag}` = '{value}' and tags.`{ROLE}` = 'trial'",
        max_results=5000,
    )
    scored = []
    for t in trials:
        if t.info.status != "FINISHED":
            continue
        history = client.get_metric_history(t.info.run_id, metric)
        if history:
            values = [m.value for m in history]
            scored.append((max(values) if mode == "max" else min(values), t))
    if not scored:
        raise SweepNotFound(
            f"sweep {parent.data.tags[SWEEP_ID]!r} has no finished trial with {metric} history"
        )
    scored.sort(key=lambda x: x[0], reverse=mode == "max")
    if pick is not None:
        senses = {metric: mode, **(spec.get("objectives") or {})}
        scored = [picked(client, scored, pick, metric, mode, senses)]
    elif k > len(scored):
        print(f"--top {k}: the sweep has {len(scored)} finished trials; retraining all of them")
    out = []
    for value, run in scored[:k]:
        config = yaml.safe_load(artifact_text(client, run.info.run_id, "config.yaml"))
        val_history = [m.value for m in client.get_metric_history(run.info.run_id, "val_acc")]
        out.append((run, max(val_history) if val_history else value, config))
    return out, spec


def picked(
    client: MlflowClient,
    scored: list[tuple],
    pick: Pick,
    metric: str,
    mode: str,
    senses: dict[str, str] | None = None,
) -> tuple:
    """The (value, run) of `scored` that `pick` chooses among the finished trials: a
    validation metric at its best epoch, a cost (params, gflops, latency_ms ...) as measured."""
    names = list(dict.fromkeys([pick.objective, *(n for n, _, _ in pick.constraints)]))
    points = []
    for value, run in scored:
        measured: dict[str, float | None] = {
            k: v for k, v in run.data.metrics.items() if k not in VAL_METRICS
        }
        for name in set(names) & set(VAL_METRICS):
            history = [m.value for m in client.get_metric_history(run.info.run_id, name)]
            if history:
                measured[name] = max(history) if VAL_METRICS[name].sense == "max" else min(history)
        points.append(trial_point(metric, value, measured, list(measured)))
    i = choose(points, pick, senses)
    value, run = scored[i]
    front = run.data.tags.get(PARETO_TAG, run.data.tags.get(OLD_PARETO_TAG))
    where = {"1": "on the Pareto front", None: ""}.get(front, f"on front {front}")
    shown = ", ".join(
        f"{n} {points[i][n]:.4g}"
        for n in dict.fromkeys([pick.objective, *(n for n, _, _ in pick.constraints)])
    )
    print(
        f"--pick {pick.text!r}: trial {run.data.tags.get('nrfer.trial_id', '?')} "
        f"{run.data.tags.get('mlflow.runName', '')!r} ({shown}{'; ' + where if where else ''}), "
        f"of {len(points)} finished trials",
        flush=True,
    )
    return value, run


def train_seed(
    config: dict, seed: int, data: FERData, out_dir: str, show_epochs: bool = False, lines=None
) -> FitResult:
    """One seed trained from scratch and tested once. Its epoch lines are printed
    (`show_epochs`), or, in a Ray worker, put on the driver's queue (`lines`)."""
    raw = {**config, "train": {**config["train"], "seed": seed}}
    epochs = raw["train"].get("epochs", "?")

    def show(m: dict, _paths) -> None:
        line = (
            f"seed {seed}: epoch {m['epoch'] + 1}/{epochs} val_acc {m['val_acc']:.4f} "
            f"({m['epoch_time_s']:.0f} s)"
        )
        if lines is not None:
            lines.put_nowait(line)
        else:
            print(line, flush=True)

    cfg = make_config(raw, f"seed {seed}")
    shown = show_epochs or lines is not None
    return fit(
        cfg, data=data, out_dir=out_dir, evaluate_test=True, callback=show if shown else None
    )


def seed_done(seed: int, r: FitResult) -> None:
    print(
        f"seed {seed}: done, val {r.best_val_acc:.4f} (epoch {r.best_epoch + 1}), "
        f"test {r.scores.acc:.4f}",
        flush=True,
    )


def run_seeds(
    config: dict, seeds: list[int], data: FERData, out: Path, parallel: str
) -> list[FitResult]:
    """Seeds in parallel through Ray when the CPUs allow, else one after another."""
    cpus = max(1, int(config["train"].get("num_threads") or 1))
    use_ray = parallel == "yes" or (
        parallel == "auto" and len(seeds) > 1 and (os.cpu_count() or 1) >= 2 * cpus
    )
    epochs = config["train"].get("epochs", "?")
    if not use_ray:
        results = []
        for s in seeds:
            results.append(train_seed(config, s, data, str(out / f"seed-{s}"), show_epochs=True))
            seed_done(s, results[-1])
        return results
    import ray
    from ray.util.queue import Queue

    from sweep.runtime import init_ray

    started = init_ray(verbose=0)
    try:
        task = ray.remote(num_cpus=cpus)(train_seed)
        data_ref = ray.put(data)
        print(f"training seeds {seeds} in parallel through Ray, {epochs} epochs each ...")
        lines = Queue(actor_options={"num_cpus": 0})  # the seeds' epoch lines, to print here
        refs = {
            task.remote(config, s, data_ref, str(out / f"seed-{s}"), lines=lines): s for s in seeds
        }
        done: dict[int, FitResult] = {}
        waiting = list(refs)
        while waiting:  # each seed's epochs as they end, and a line per seed when it is done
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=1.0)
            for line in lines.get_nowait_batch(lines.qsize()):
                print(line, flush=True)
            for ref in ready:
                done[refs[ref]] = ray.get(ref)
                seed_done(refs[ref], done[refs[ref]])
        return [done[s] for s in seeds]
    finally:
        if started:
            ray.shutdown()


def log_seed_run(
    client, experiment_id, sweep_id, rep_id, rank, seed, r: FitResult, n_candidates
) -> str:
    """One seed's run under the reproduce run: its curves, test metrics and best checkpoint."""
    run = client.create_run(
        experiment_id,
        tags={
            ROLE: "seed",
            SWEEP_ID: sweep_id,
            "mlflow.parentRunId": rep_id,
            "nrfer.seed": str(seed),
            "nrfer.candidate": str(rank),
            "mlflow.runName": f"seed-{seed}" if n_candidates == 1 else f"c{rank}-seed-{seed}",
        },
    )
    metrics = [
        Metric(k, float(h[k]), 0, h["epoch"])
        for h in r.history
        for k in ("train_loss", "val_loss", "val_acc", "val_macro_f1")
    ]
    metrics += [
        Metric(k, float(r.to_dict()[k]), 0, 0)
        for k in ("test_acc", "test_macro_f1", "test_mean_class_acc", "best_val_acc", "best_epoch")
    ]
    log_metrics(client, run.info.run_id, metrics)
    client.log_artifact(run.info.run_id, r.paths["best"], "checkpoint")
    # the per-image test probabilities (nrfer.evaluate's), as a study's runs keep them
    client.log_artifact(run.info.run_id, r.scores.predictions, "predictions")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def candidate_rows(candidates: list[Candidate], winner: int) -> list[dict]:
    """One row per retrained candidate: its sweep trial and mean +- std of val and test."""
    rows = []
    for c in candidates:
        val_m, val_s = mean_std([r.best_val_acc for r in c.results])
        test_m, test_s = mean_std([r.scores.acc for r in c.results])
        rows.append(
            {
                "rank": c.rank,
                "trial_id": c.trial.data.tags.get("nrfer.trial_id"),
                "trial_run_id": c.trial.info.run_id,
                "trial_val_acc": c.trial_val,
                "val_acc_mean": val_m,
                "val_acc_std": val_s,
                "test_acc_mean": test_m,
                "test_acc_std": test_s,
                "winner": c.rank == winner,
            }
        )
    return rows


@dataclass
class Candidate:
    """One of the best trials of a sweep, retrained: its seeds' results."""

    rank: int  # 1 = the sweep's best trial by validation
    trial: Any  # its MLflow run
    trial_val: float  # its best val accuracy in the sweep
    cfg: TrialConfig
    results: list[FitResult]  # fit()'s result per seed, seeds 0..n-1

    @property
    def val_mean(self) -> float:
        return mean_std([r.best_val_acc for r in self.results])[0]


def reproduce(
    sweep: str | None,
    seeds: int,
    uri: str,
    out: Path,
    parallel: str = "auto",
    model_name: str | None = None,
    top: int = 1,
    pick: str | None = None,
    exclude: str | None = None,
) -> dict:
    """Retrain the `top` best trials of a sweep (or the one `pick` chooses: `max val_acc
    where latency_ms < 5`) with `seeds` seeds each, choose the one with the best mean val
    accuracy, report val and test of every candidate, register the winner's best seed (by
    val)."""
    chooser = parse_pick(pick) if pick else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # the model is registered in the sweep's store
    client = MlflowClient(uri)
    parent = find_sweep(client, sweep)
    sweep_id = parent.data.tags[SWEEP_ID]
    chosen, spec = best_trials(client, parent, top, chooser)
    out.mkdir(parents=True, exist_ok=True)
    what = "the picked trial" if chooser else f"the {len(chosen)} best trial(s) by validation"
    print(f"sweep {sweep_id}: retraining {what} with {seeds} seeds each", flush=True)
    candidates = train_candidates(chosen, seeds, out, parallel)
    # The winner: the best mean validation accuracy over seeds (test is only reported).
    winner = max(candidates, key=lambda c: c.val_mean)
    write_atomic(out / "best_config.yaml", yaml.safe_dump(winner.cfg.to_dict(), sort_keys=False))
    rep_id, seed_runs = log_runs(client, parent, sweep_id, candidates, winner, out)
    summary = report(client, rep_id, sweep_id, candidates, winner, seed_runs, out)
    if exclude:
        summary.update(unleaked(winner, exclude))
        for k in ("test_acc_unleaked_mean", "test_acc_unleaked_std", "test_leaked_dropped"):
            client.log_metric(rep_id, k, float(summary[k]))
    name = model_name or spec.get("registered_model") or f"nrfer-{sweep_id}"
    summary.update(register(client, rep_id, name, winner, seed_runs))
    if pick:
        summary["pick"] = pick
        client.set_tag(rep_id, "nrfer.pick", pick)
    write_atomic(out / "report.json", json.dumps(summary, indent=1))
    client.log_artifact(rep_id, str(out / "report.json"))
    client.set_terminated(rep_id, "FINISHED")
    return summary


def unleaked(winner: Candidate, exclude: str) -> dict:
    """The winner's test accuracy per seed without the test faces audit.csv `exclude` finds
    a twin of in train or val (checked against the data as read now), from each seed's own
    test predictions."""
    from nrfer.data import load_data
    from nrfer.data.audit import accuracy_without, leaked_in
    from nrfer.evaluate import load_predictions

    test = load_data(winner.cfg.data, sr=False).test
    leaked = leaked_in(exclude, "test", test.images)
    accs = []
    for r in winner.results:
        pred = load_predictions(r.scores.predictions)
        accs.append(accuracy_without(pred["probs"], pred["labels"], leaked))
    mean, std = mean_std(accs)
    return {
        "test_acc_unleaked": accs,
        "test_acc_unleaked_mean": mean,
        "test_acc_unleaked_std": std,
        "test_leaked_dropped": len(leaked),
        "exclude": str(exclude),
    }


def train_candidates(chosen: list[tuple], seeds: int, out: Path, parallel: str) -> list[Candidate]:
    """Each chosen trial's config trained from scratch with seeds 0..seeds-1 (each distinct
    data setting read once)."""
    candidates: list[Candidate] = []
    datasets: dict[str, Any] = {}
    for rank, (trial, trial_val, config) in enumerate(chosen, start=1):
        cfg: TrialConfig = make_config(config, f"trial {trial.info.run_id}")
        key = json.dumps(cfg.data.model_dump(), sort_keys=True)  # SR settings may differ
        if key not in datasets:
            t0 = time.perf_counter()
            datasets[key] = load_data(cfg.data)
            d = datasets[key]
            sizes = "/".join(str(len(d.split(s))) for s in ("train", "val", "test"))
            print(f"  data: {d.source} {sizes} faces ({time.perf_counter() - t0:.1f} s)")
        data = datasets[key]
        folder = out if len(chosen) == 1 else out / f"candidate-{rank}"
        print(
            f"  candidate {rank}: trial {trial.data.tags.get('nrfer.trial_id')} "
            f"(val_acc {trial_val:.4f})",
            flush=True,
        )
        results = run_seeds(cfg.to_dict(), list(range(seeds)), data, folder, parallel)
        candidates.append(Candidate(rank, trial, trial_val, cfg, results))
    return candidates


def log_runs(
    client: MlflowClient, parent, sweep_id: str, candidates: list[Candidate], winner, out: Path
) -> tuple[str, list[str]]:
    """The reproduce run under the sweep's parent and a child run per candidate and seed;
    returns the reproduce run's id and the winner's seed runs (by seed)."""
    rep_id = client.create_run(
        parent.info.experiment_id,
        tags={
            ROLE: "reproduce",
            SWEEP_ID: sweep_id,
            "mlflow.parentRunId": parent.info.run_id,
            "mlflow.runName": f"reproduce-{sweep_id}",
            "nrfer.source_trial_run_id": winner.trial.info.run_id,
        },
    ).info.run_id
    client.log_artifact(rep_id, str(out / "best_config.yaml"))
    seed_runs = {}
    for c in candidates:
        for seed, r in enumerate(c.results):
            seed_runs[(c.rank, seed)] = log_seed_run(
                client,
                parent.info.experiment_id,
                sweep_id,
                rep_id,
                c.rank,
                seed,
                r,
                len(candidates),
            )
    return rep_id, [seed_runs[(winner.rank, s)] for s in range(len(winner.results))]


def report(
    client: MlflowClient,
    rep_id: str,
    sweep_id: str,
    candidates: list[Candidate],
    winner: Candidate,
    seed_runs: list[str],
    out: Path,
) -> dict:
    """The winner's val and test mean +- std over seeds, every candidate's row, per-class
    recall and the mean test confusion matrix: written to `out` and logged on the run."""
    results, seeds = winner.results, len(winner.results)
    test_acc = [r.scores.acc for r in results]
    test_f1 = [r.scores.macro_f1 for r in results]
    val_acc = [r.best_val_acc for r in results]
    summary = {
        "sweep": sweep_id,
        "trial_run_id": winner.trial.info.run_id,
        "trial_val_acc": winner.trial_val,
        "seeds": seeds,
        "test_acc": test_acc,
        "test_acc_mean": mean_std(test_acc)[0],
        "test_acc_std": mean_std(test_acc)[1],
        "test_macro_f1_mean": mean_std(test_f1)[0],
        "test_macro_f1_std": mean_std(test_f1)[1],
        "val_acc": val_acc,
        "val_acc_mean": mean_std(val_acc)[0],
        "val_acc_std": mean_std(val_acc)[1],
        "seed_run_ids": seed_runs,
        "reproduce_run_id": rep_id,
    }
    summary["sampled"] = {
        k: dotted_value(winner.cfg.to_dict(), k)
        for k in (winner.trial.data.tags.get("nrfer.sampled") or "").split(",")
        if k
    }
    # large: the sweep trial was lucky
    summary["val_gap"] = winner.trial_val - summary["val_acc_mean"]
    summary["candidates"] = candidate_rows(candidates, winner.rank)
    summary["winner_rank"] = winner.rank
    table = out / "candidates.csv"
    keys = list(summary["candidates"][0])
    write_atomic(
        table,
        ",".join(keys)
        + "\n"
        + "".join(",".join(str(row[k]) for k in keys) + "\n" for row in summary["candidates"]),
    )
    client.log_artifact(rep_id, str(table))
    for row in summary["candidates"]:
        for k in ("val_acc_mean", "val_acc_std", "test_acc_mean", "test_acc_std"):
            client.log_metric(rep_id, f"candidate{row['rank']}_{k}", float(row[k]))
    client.set_tag(rep_id, "nrfer.winner_candidate", str(winner.rank))
    for k in (
        "test_acc_mean",
        "test_acc_std",
        "test_macro_f1_mean",
        "test_macro_f1_std",
        "val_acc_mean",
        "val_acc_std",
        "val_gap",
        "trial_val_acc",
    ):
        client.log_metric(rep_id, k, float(summary[k]))
    write_class_report(client, rep_id, results, out)
    return summary


def write_class_report(
    client: MlflowClient, rep_id: str, results: list[FitResult], out: Path
) -> None:
    """per_class_recall.csv (mean, std, each seed) and the seeds' mean test confusion matrix."""
    names, seeds = results[0].class_names, len(results)
    recall = np.array([r.scores.per_class_recall for r in results])
    table = out / "per_class_recall.csv"
    write_atomic(
        table,
        "class,mean,std,"
        + ",".join(f"seed{s}" for s in range(seeds))
        + "\n"
        + "".join(
            f"{n},{recall[:, i].mean():.4f},{recall[:, i].std(ddof=1) if seeds > 1 else math.nan:.4f},"
            + ",".join(f"{v:.4f}" for v in recall[:, i])
            + "\n"
            for i, n in enumerate(names)
        ),
    )
    mean_conf = np.mean([r.scores.confusion for r in results], axis=0)
    save_image(
        confusion_image(np.round(mean_conf).astype(int), names), out / "test_confusion_mean.png"
    )
    for f in (table, out / "test_confusion_mean.png"):
        client.log_artifact(rep_id, str(f))


def register(
    client: MlflowClient, rep_id: str, name: str, winner: Candidate, seed_runs: list[str]
) -> dict:
    """Register the winner's best seed by validation accuracy (test was only reported) as
    `name`, with the alias serving and predict use (models:/NAME@champion)."""
    val_acc = [r.best_val_acc for r in winner.results]
    best_seed = int(np.argmax(val_acc))
    result = winner.results[best_seed]
    with mlflow_quiet():
        from sweep.commands.serving import log_and_register  # mlflow.pyfunc: imported here

        version = log_and_register(
            Path(result.paths["best"]), result.class_names, name, seed_runs[best_seed]
        )
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_tag(rep_id, "nrfer.registered_model", f"{name}/{version}")
    # what the Model Registry page says of this version: how it was chosen and its test
    test = [r.scores.acc for r in winner.results]
    val = [r.best_val_acc for r in winner.results]
    (tm, ts), (vm, vs) = mean_std(test), mean_std(val)
    client.update_model_version(
        name,
        version,
        description=(
            f"Seed {best_seed} (best val {val_acc[best_seed]:.4f}) of {len(test)} retrained seeds "
            f"of the sweep's best config by validation. Over the seeds: val {vm:.4f} +- {vs:.4f}, "
            f"test {tm:.4f} +- {ts:.4f} (test evaluated once per seed, never used to choose). "
            f"Input: grayscale faces, any size; output: probabilities of "
            f"{', '.join(result.class_names)}."
        ),
    )
    for key, value in {
        "test_acc_mean": f"{tm:.4f}",
        "test_acc_std": f"{ts:.4f}",
        "val_acc_mean": f"{vm:.4f}",
        "seeds": str(len(test)),
        "reproduce_run_id": rep_id,
    }.items():
        client.set_model_version_tag(name, version, key, value)
    return {
        "registered_model": name,
        "model_version": version,
        "model_alias": CHAMPION,
        "best_seed": best_seed,
    }


QUIET = {"mlflow": False}  # set by quiet_mlflow (not --verbose)


@contextlib.contextmanager
def mlflow_quiet():
    """Without --verbose: MLflow's warnings (its pyfunc warns about type hints on every model
    it logs, in raw colour codes) and its own stderr lines ("Successfully registered model")
    left out for the block; our lines say what was done."""
    if not QUIET["mlflow"]:
        yield
        return
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def quiet_mlflow() -> None:
    """MLflow's download bars, INFO lines and warnings off (`--verbose` keeps them): its
    pyfunc warns about type hints on every model it logs, with raw colour codes."""
    import logging
    import warnings

    QUIET["mlflow"] = True
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    warnings.filterwarnings("ignore", message=r".*\bmlflow\b", category=UserWarning)


def main(argv: list[str] | None = None) -> int:
    from sweep.commands.parsers import best_parser

    return run_command(best_parser(__doc__), _reproduce, argv)


def _reproduce(args) -> int:
    print(
        f"nrfer best: {'sweep ' + args.sweep if args.sweep else 'the most recent sweep'}",
        flush=True,
    )
    if not args.verbose:
        quiet_mlflow()
    uri = check_tracking_uri(tracking_uri(args.tracking_uri), "--tracking-uri")
    uri = move_credentials_to_env(uri)  # nothing printed or logged carries them
    out = Path(args.out or f"runs/reproduce-{args.sweep or 'latest'}")
    check_out_dir(out, "--out")
    if args.pick is not None:
        if args.top != 1:
            raise ConfigError("--pick chooses one trial; give it without --top")
        parse_pick(args.pick)  # a bad expression is refused before anything is read
    if args.exclude and not Path(args.exclude).is_file():  # before any training
        raise ValueError(
            f"--exclude {args.exclude}: no such file (make it with `nrfer data audit`)"
        )
    s = reproduce(
        args.sweep,
        args.seeds,
        uri,
        out,
        args.parallel,
        args.model_name,
        args.top,
        args.pick,
        args.exclude,
    )
    if len(s["candidates"]) > 1:
        print(
            f"\n{'cand':>4}  {'trial':16s}  {'sweep val':>9}  {'val mean +- std':>17}  {'test mean +- std':>17}"
        )
        for c in s["candidates"]:
            print(
                f"{c['rank']:>4}  {c['trial_id'] or '?':16s}  {c['trial_val_acc']:9.4f}  "
                f"{c['val_acc_mean']:.4f} +- {c['val_acc_std']:.4f}  "
                f"{c['test_acc_mean']:.4f} +- {c['test_acc_std']:.4f}"
                + ("  <- winner (best mean val)" if c["winner"] else "")
            )
    print(f"\nbest config of sweep {s['sweep']} -> {out / 'best_config.yaml'}")
    for k, v in s["sampled"].items():
        print(f"  {k} = {v}")
    print(
        f"val  acc {s['val_acc_mean']:.4f} +- {s['val_acc_std']:.4f}  (sweep trial: {s['trial_val_acc']:.4f}, gap {s['val_gap']:+.4f})"
    )
    print(
        f"test acc {s['test_acc_mean']:.4f} +- {s['test_acc_std']:.4f}  macro-F1 {s['test_macro_f1_mean']:.4f}  over {s['seeds']} seeds"
    )
    if "test_acc_unleaked" in s:
        print(
            f"test acc {s['test_acc_unleaked_mean']:.4f} +- {s['test_acc_unleaked_std']:.4f}  without the "
            f"{s['test_leaked_dropped']} test faces with a twin in train or val ({s['exclude']})"
        )
    print(
        f"MLflow run {s['reproduce_run_id']} at {uri}; registered models:/{s['registered_model']}/{s['model_version']}"
        f" (alias: models:/{s['registered_model']}@{CHAMPION})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
