"""The sweep driver: Ray Tune (OptunaSearch TPE + ASHA/FIFO) over nrfer trials, tracked in MLflow.

The dataset is read once here and handed to every trial through Ray's object store
(`tune.with_parameters`); each trial (`sweep.runtime.trainable.run_trial`) runs `nrfer.train.fit`
and reports every epoch's metrics and checkpoint to Tune and its MLflow run. `--resume`
restores Tune's state, the early-stopping rule's records (`sweep.runtime.stopping`) and the sweep's parent run.
A sweep is its name and its storage folder: the driver holds its lock for its whole life
and only ever touches the runs of its own instance (`sweep.runtime.resume`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune

from nrfer.config import ConfigError
from nrfer.errors import first_line
from sweep.compat.ray_tune import restored_scheduler, set_restored_callbacks
from sweep.runtime import resume as sweep_state
from sweep.runtime.checks import check_storage, storage_dir
from sweep.runtime.console import Console, quiet
from sweep.runtime.cost_gate import remove_gates
from sweep.runtime.disk_guard import DiskGuard
from sweep.runtime.ledger import (
    FINISHED,
    INTERRUPTED,
    METRIC_RECORDS,
    RUNNING,
    Ledger,
    saved_trials,
)
from sweep.runtime.lifecycle import TrialStatusCallback
from sweep.runtime.live_report import ReportRefresh
from sweep.runtime.local_ray import init_ray
from sweep.runtime.retention import Retention
from sweep.runtime.search import (
    build_searcher,
    check_study,
    replace_old_study,
    restore_study_at,
    study_names,
    study_storage_url,
    warm_start_trials,
)
from sweep.runtime.startup import clock, launched, phase
from sweep.runtime.stopping import rule_for
from sweep.runtime.summary import SweepSummary, summarize
from sweep.runtime.sweep_data import load_datasets, load_eval_sets, resolve_base_config
from sweep.runtime.trainable import TrialContext, run_trial
from sweep.spec.space import SweepSpec, parse_space
from sweep.tracking import (
    SweepTracker,
    check_tracking_uri,
    replay_records,
    tracking_uri,
)
from sweep.tracking.store import check_experiment, move_credentials_to_env
from sweep.tracking.ui import tune_trial_name

log = logging.getLogger("nrfer.sweep")

# Tune saves its experiment state (which trials finished) at most every 10 s by default; a
# driver killed in that window would rerun a trial that had just finished. Tune also
# snapshots after every trial checkpoint (see make_tuner) and warns each time on short
# epochs; the snapshot is what makes a killed driver resumable, so keep it quiet.
TUNE_ENV = {
    "TUNE_GLOBAL_CHECKPOINT_S": "2",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


def check_resources(spec: SweepSpec) -> None:
    total = ray.cluster_resources()
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        need = getattr(spec.resources, key)
        if need > total.get(name, 0):
            raise ConfigError(
                f"{spec.source}: resources.{key}: a trial asks for {need} {name}, "
                f"the Ray cluster has {total.get(name, 0)}"
            )


def announce(decision, tracker: SweepTracker, since: float) -> None:
    """An early-stopping rule's decision (`decision.line()`, `.tag()`, `.metrics()`,
    `.to_dict()`; the adaptive rule's `RungChoice`), at each look: a line in the terminal; on
    the parent run the tag nrfer.early_stopping, its numbers as metrics (a later look logs
    them again) and early_stopping/decision.json (the latest look's)."""
    print(f"[{clock(time.time() - since)}] {decision.line()}", flush=True)
    parent = tracker.parent
    try:
        client = tracker.client
        client.set_tag(parent, "nrfer.early_stopping", decision.tag())
        for name, value, step in decision.metrics():
            client.log_metric(parent, name, value, step=step)
        client.log_dict(parent, decision.to_dict(), "early_stopping/decision.json")
    except Exception as e:  # MLflow away: the ledger and the terminal have it
        log.warning("could not log the early-stopping decision to MLflow: %s", first_line(e))


def make_tuner(
    spec: SweepSpec,
    trainable,
    exp_dir: Path,
    callbacks: list,
    restore: bool,
    verbose: int = 1,
    searcher=None,
) -> tune.Tuner:
    """A new Tuner, or the killed sweep's, restored with its searcher and trial states."""
    if restore:
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
        set_restored_callbacks(tuner, callbacks)  # the pickled ones hold the killed driver's
        return tuner
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher or build_searcher(spec),
            scheduler=rule_for(spec).build(Ledger(exp_dir).dir),
            metric=spec.metric,
            mode=spec.mode,
            num_samples=spec.budget.num_samples,
            time_budget_s=spec.budget.time_budget_s,
            # a new worker process costs seconds of imports (torch, timm, mlflow) per trial
            reuse_actors=spec.budget.reuse_workers,
            trial_name_creator=tune_trial_name,  # t01_<id>, t02_<id>, ...: run names start so
        ),
        run_config=tune.RunConfig(
            name=exp_dir.name,
            storage_path=str(exp_dir.parent),
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures),
            # two, not one: with one, Tune deletes a trial's previous checkpoint as it
            # registers the next and saves its experiment state (which names the trial's
            # checkpoint) just after; a driver killed in between left a state naming a
            # deleted checkpoint, and that trial could never be restored (seen in the suite's
            # random-kill test). The saved state lags at most one checkpoint behind.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=verbose,
        ),
    )


@dataclass(frozen=True)
class Prepared:
    """A sweep checked and ready to start: what runs (the spec; a resume's as it was
    started), whether Tune's state is restored, and where it is tracked."""

    spec: SweepSpec
    spec_dict: dict  # spec.to_dict(): the ledger's and the parent run's copy
    restore: bool  # Tune's state is there: restore it (else a new Tuner)
    instance: str  # the sweep's identity (kept by a resume)
    uri: str  # MLflow tracking URI, credentials moved to the environment
    study_url: str  # the Optuna study's storage
    warm: list  # warm-start trials for a new study
    ledger: Ledger  # the sweep's records for crash recovery


def run_sweep(
    spec: SweepSpec,
    space_file: Path,
    *,
    storage: str | None = None,
    address: str | None = None,
    uri: str | None = None,
    uri_checked: bool = False,
    resume: bool = False,
    force_resume: bool = False,
    verbose: int = 1,
    warm_start: list[str] | None = None,
    optuna_storage: str | None = None,
    since: float | None = None,
) -> SweepSummary:
    """Run (or resume) a sweep; returns its summary. Raises sweep.runtime.resume.SweepFinished
    when `resume` finds the sweep finished (nothing is touched). The sweep's lock
    (`sweep.runtime.resume.SweepLock`) is held from the first check to the last write, so a
    second driver of the same name and storage is refused, naming this one.

    storage: the folder of sweeps (default $NRFER_STORAGE, else runs/sweeps); address: a Ray
    cluster (default: a local one); uri: the MLflow store (uri_checked: already resolved and
    probed by `sweep.runtime.checks.preflight`, not probed again); verbose: 0 our lines, 1 Tune's
    tables, 2 and its logs; warm_start: earlier sweeps whose trials seed the Optuna study;
    optuna_storage: where the study lives (default: beside the MLflow store); since: the
    launch (wall clock) elapsed times count from (default: this process's start)."""
    with sweep_state.SweepLock(storage_dir(storage), spec.name):
        for k, v in TUNE_ENV.items():  # read by Tune when the Tuner runs
            os.environ.setdefault(k, v)
        if verbose == 0:
            quiet()
        since = launched() if since is None else since
        exp_dir = storage_dir(storage) / spec.name
        with phase("sweep state and Optuna study", since) as found:
            run = prepare(
                spec, exp_dir, uri, resume, force_resume, warm_start, optuna_storage, uri_checked
            )
            found.append("restored from its saved state" if run.restore else "new")
        return _run_sweep(run, exp_dir, space_file, address, resume, verbose, since)


def _run_sweep(
    run: Prepared,
    exp_dir: Path,
    space_file: Path,
    address: str | None,
    resume: bool,
    verbose: int,
    since: float,
) -> SweepSummary:
    spec, ledger = run.spec, run.ledger

    # Setup: Ray first (a trial larger than the cluster is refused before minutes of SR
    # caching), the data once in the driver, the parent run.
    base = resolve_base_config(spec)
    start_ray(spec, address, verbose, since)
    t0 = time.perf_counter()
    with phase("data read once for every trial", since) as found:
        data, sr_builds, datasets = load_datasets(spec, base)
        eval_data = load_eval_sets(spec)
        for mode, d in data.items():
            sizes = "/".join(str(len(d.split(s))) for s in ("train", "val", "test"))
            found.append(f"{d.source} ({mode}) {sizes} faces")
    data_s = time.perf_counter() - t0
    # from here on a killed driver leaves something to --resume
    ledger.write_sweep(run.spec_dict, RUNNING, instance=run.instance)
    saved = saved_trials(exp_dir, spec.metric, spec.mode) if run.restore else {}
    with phase("MLflow parent run", since) as found:
        tracker = start_tracking(run, exp_dir, space_file, datasets, resume, set(saved))
        found.append(f"{tracker.parent} in experiment {spec.name}")

    # Tuner: the trainable with the shared data, the callback that closes trial runs.
    trainable = make_trainable(spec, base, data, tracker, datasets, exp_dir, eval_data)
    retention = Retention(ledger, spec.tracking.keep_checkpoints, spec.mode)
    status_callback = TrialStatusCallback(
        tracker, ledger, retention, spec.max_epochs, spec.metric, spec.mode
    )
    # what a killed driver left: records of trials Tune never saved, retention and file
    # removals cut short, folders of unsaved trials (a new sweep: nothing, and no line)
    with phase("crash-recovery records reconciled", since, shown=resume) as found:
        done = ledger.reconcile(saved, retention, status_callback)
        found.append(
            f"{len(saved)} trials in Tune's saved state, {len(done.retained)} retained, "
            f"{len(done.orphans)} unsaved folders removed"
        )
    guard = DiskGuard(guarded_folders(exp_dir, run.uri))
    callbacks = [status_callback, guard, ReportRefresh(tracker, run.spec_dict, exp_dir)]
    if verbose == 0:  # our lines instead of Tune's tables (1: its tables, 2: and logs)
        callbacks.append(
            Console(
                spec.budget.num_samples,
                spec.metric,
                spec.mode,
                spec.max_epochs,
                set(ledger.ended),
                ledger.completed(),
                since=since,
                per_epoch=True if verbose > 1 else None,
            )
        )
    tuner = start_tuner(run, exp_dir, trainable, callbacks, tracker, verbose, since)

    status = "FAILED"
    try:
        t1 = time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - t1
        status_callback.flush_pending()  # runs an MLflow outage kept the callback from closing
        summary = summarize(
            spec, tracker, results, wall, space_file.name, len(ledger.ended), exp_dir, run.spec_dict
        )
        summary.stopped_because = guard.reason
        summary.storage = str(exp_dir)
        summary.data_load_s = data_s
        summary.sr_caches = sr_builds
        summary.optuna_storage = run.study_url
        summary.warm_start_trials = len(run.warm)
        summary.elapsed_s = time.time() - since
        status = "KILLED" if summary.unfinished else "FINISHED"
        ledger.write_sweep(
            run.spec_dict,
            INTERRUPTED if summary.unfinished else FINISHED,
            instance=run.instance,
            parent_run_id=tracker.parent_id,
            num_trials=summary.num_trials,
        )
        return summary
    finally:
        replay_records(exp_dir / METRIC_RECORDS, run.uri)
        tracker.close_open_trials("KILLED")
        tracker.end_parent(status)
        if spec.cost is not None:  # the trials' cost gates on this node (a resume makes new)
            remove_gates(run.instance)


def start_ray(spec: SweepSpec, address: str | None, verbose: int, since: float) -> None:
    """Ray first: a trial larger than the cluster is refused before minutes of SR caching."""
    with phase("Ray", since) as found:
        started = init_ray(address, verbose)
        check_resources(spec)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        where = (
            f"joined {address}"
            if address
            else "a local cluster"
            if started
            else "the Ray this process runs"
        )
        found.append(f"{where}, {cpus} CPUs")


def start_tuner(
    run: Prepared,
    exp_dir: Path,
    trainable,
    callbacks: list,
    tracker: SweepTracker,
    verbose: int,
    since: float,
) -> tune.Tuner:
    """The Tuner (new, or restored from a killed driver's state) with the searcher and the
    early-stopping rule, attached to this sweep's records; its line says which."""
    spec = run.spec
    rule = rule_for(spec)
    with phase("searcher and Tune", since) as found:
        searcher = None if run.restore else build_searcher(spec, run.study_url, run.warm)
        tuner = make_tuner(spec, trainable, exp_dir, callbacks, run.restore, verbose, searcher)
        # the scheduler, new or a killed driver's unpickled, at this sweep's records
        rule.attach(
            restored_scheduler(tuner),
            run.ledger.dir,
            lambda decision: announce(decision, tracker, since),
        )
        objectives = ", ".join(f"{k} {v}" for k, v in spec.senses.items())
        found.append(
            f"{spec.searcher}{f' on {objectives}' if spec.multi_objective else ''} + "
            f"{rule.describe()}, {spec.budget.max_concurrent} trials at a time"
        )
    return tuner


def guarded_folders(exp_dir: Path, uri: str) -> dict[str, Path]:
    """The folders a sweep writes to that can fill: its storage, and a SQLite store's."""
    folders = {"storage": exp_dir}
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        folders["the MLflow store's folder"] = Path(uri.removeprefix("sqlite:///")).parent
    return folders


def prepare(
    spec: SweepSpec,
    exp_dir: Path,
    uri: str | None,
    resume: bool,
    force_resume: bool,
    warm_start: list[str] | None,
    optuna_storage: str | None,
    uri_checked: bool = False,
) -> Prepared:
    """Every input checked before Ray starts, each error naming its file: the sweep state
    (a resume runs the spec it was started with), the storage, the tracking URI, the Optuna
    study, the warm start, the experiment and a resume's files."""
    ledger = Ledger(exp_dir)
    restore, spec_dict = sweep_state.prepare(ledger, spec.to_dict(), resume, force_resume)
    # this sweep's identity: kept by a resume, new for a new sweep even with an old name
    instance = (ledger.read_sweep() or {}).get("instance") if resume else None
    instance = instance or sweep_state.new_instance()
    check_storage(exp_dir.parent)
    # a URI MLflow cannot use fails now, not after the data load; credentials in it move to
    # MLflow's environment variables, so the URI printed, pickled and logged carries none
    if not uri_checked:  # (else the preflight resolved and probed it: a server is asked once)
        uri = check_tracking_uri(tracking_uri(uri), "--tracking-uri")
    assert uri is not None
    uri = move_credentials_to_env(uri)
    if spec_dict != spec.to_dict():  # --force-resume: the sweep continues as it was started
        # errors name the ledger's file, not the space file the user gave this time
        spec = parse_space(spec_dict, f"{ledger.sweep_file} (spec)")
    # The Optuna study: kept in an RDB storage under the sweep's name (optuna-dashboard reads
    # it; --resume continues it), started from earlier sweeps' trials with --warm-start.
    study_url = study_storage_url(uri, exp_dir, optuna_storage)
    check_experiment(uri, spec.name)  # one deleted in the UI: said now, not after Ray
    if spec.is_study:  # a grid: no Optuna study, nothing to warm-start
        if warm_start:
            raise ConfigError(
                f"--warm-start: {spec.source} is a study (searcher: grid), which runs every "
                "cell; a warm start is for a search"
            )
        warm = []
    else:
        warm = prepare_search(spec, study_url, restore, resume, warm_start, optuna_storage)
    if restore:
        ledger.check()
        rule_for(spec).check(ledger.dir)
    return Prepared(spec, spec_dict, restore, instance, uri, study_url, warm, ledger)


def prepare_search(
    spec: SweepSpec,
    study_url: str,
    restore: bool,
    resume: bool,
    warm_start: list[str] | None,
    optuna_storage: str | None,
) -> list:
    """The Optuna study of a search: checked where a resume expects it, an old one of the
    name set aside for a new sweep; returns the warm-start trials."""
    if restore:  # the study must be where the sweep left it (checked before it is opened)
        check_study(study_url, spec.name)
    study_names(study_url, "--optuna-storage" if optuna_storage else "the Optuna study file")
    if resume and warm_start:
        raise ConfigError("--warm-start starts a new sweep; a resumed sweep keeps its study")
    warm = warm_start_trials(spec, study_url, warm_start) if warm_start else []
    if not restore:
        replace_old_study(study_url, spec.name)
    restore_study_at(study_url if restore else None)  # where the study is now
    return warm


def start_tracking(
    run: Prepared,
    exp_dir: Path,
    space_file: Path,
    datasets: dict,
    resume: bool,
    saved: set[str],
) -> SweepTracker:
    """The sweep's parent run (a resume's, reopened); on a resume, the runs the killed driver
    left open are closed and those of trials Tune never saved (`saved`: the ids it has)
    deleted (they run again)."""
    spec = run.spec
    tracker = SweepTracker(run.uri, spec.name, spec.name, run.instance)
    parent = tracker.start_parent(
        run.spec_dict,
        space_file,
        str(exp_dir),
        [d for ids in datasets.values() for d in ids],
        f"Sweep {spec.name} ({space_file.name}): running, up to {spec.budget.num_samples} trials",
    )
    if not resume:  # what stops trials here (an adaptive rule's decision replaces it)
        tracker.client.set_tag(parent, "nrfer.early_stopping", rule_for(spec).describe())
    if resume:
        tracker.close_open_trials("KILLED")  # runs the killed driver left open
        if n := tracker.delete_orphan_trial_runs(saved):
            print(f"resume: {n} trial run(s) started after Tune's last saved state deleted")
    run.ledger.write_sweep(run.spec_dict, RUNNING, instance=run.instance, parent_run_id=parent)
    return tracker


def make_trainable(
    spec: SweepSpec,
    base: dict,
    data: dict,
    tracker: SweepTracker,
    datasets,
    exp_dir: Path,
    eval_data: dict | None = None,
):
    """`run_trial` with what every trial shares (the config, the data per label mode through
    Ray's object store, the tracking context) and the resources one trial asks for."""
    system = spec.tracking
    return tune.with_resources(
        tune.with_parameters(
            run_trial,
            base=base,
            data=data,
            launch_dir=str(Path.cwd()),
            eval_data=eval_data,
            tracking=TrialContext(
                run=tracker.context(),
                exp_dir=str(exp_dir),
                record_dir=str(exp_dir / METRIC_RECORDS),
                dataset={mode: ids[0] for mode, ids in datasets.items()},
                study=spec.study.model_dump() if spec.study is not None else None,
                system_metrics_interval_s=(
                    system.system_metrics_interval_s if system.system_metrics else None
                ),
                cost=spec.cost.model_dump() if spec.cost is not None else None,
                searched=tuple(p.key for p in spec.params),
            ),
        ),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
