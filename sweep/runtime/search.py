"""The searcher: Ray's OptunaSearch with a study that persists (an RDB storage, the sweep's
name), trials stopped early told to Optuna as PRUNED with their per-epoch values, and a warm
start from the finished and pruned trials of earlier sweeps."""

from __future__ import annotations

import logging
import pickle
import warnings
from pathlib import Path
from typing import Literal

import optuna
from optuna.trial import TrialState
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from nrfer.config import ConfigError
from nrfer.errors import first_line
from sweep.compat.ray_optuna import (
    picklable_sampler,
    searcher_completed,
    searcher_state,
    searcher_study,
    searcher_trials,
    set_searcher_state,
)
from sweep.spec.space import SweepSpec

log = logging.getLogger("nrfer.sweep")
STUDY_FILE = "optuna.db"
WARM_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def study_storage_url(tracking_uri: str, exp_dir: Path, option: str | None = None) -> str:
    """--optuna-storage if given; else a SQLite file next to the SQLite MLflow store, named
    after it (mlflow.db: optuna.db; a.db: a.optuna.db, so two stores in one folder never
    share, or rename, each other's studies); else (an MLflow server) one in the sweep
    storage folder."""
    if option:
        return option
    if tracking_uri.startswith("sqlite:///"):
        store = Path(tracking_uri.removeprefix("sqlite:///"))
        name = STUDY_FILE if store.name == "mlflow.db" else f"{store.stem}.{STUDY_FILE}"
        return f"sqlite:///{store.parent / name}"
    return f"sqlite:///{Path(exp_dir).parent / STUDY_FILE}"


# Where a resumed sweep's study is now. The searcher Tune restores was pickled with the URL
# the sweep started with; after its folder (and store) moved that file is elsewhere, so the
# driver names the current one here before Tune restores the searcher.
_RESTORE_URL: str | None = None


def restore_study_at(url: str | None) -> None:
    global _RESTORE_URL
    _RESTORE_URL = url


def check_study(url: str, name: str) -> None:
    """A resumed sweep's study must be where the sweep expects it: a missing SQLite file
    (or study) is an error naming it, before Ray starts (Optuna would create an empty file
    and fail later with "Record does not exist")."""
    path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    fix = (
        "restore the file (or pass --optuna-storage with where it is now), or start this "
        "sweep anew under another --name"
    )
    if path is not None and not path.is_file():
        raise ConfigError(f"--resume: the sweep's Optuna study file {path} does not exist; {fix}")
    if name not in study_names(url):
        raise ConfigError(f"--resume: no Optuna study {name!r} in {url}; {fix}")


def study_names(url: str, where: str = "the Optuna storage") -> set[str]:
    """The studies in an RDB storage; a URL that does not open (a bad --optuna-storage, a
    missing DB driver, a read-only file) is one line naming it, before anything runs."""
    try:
        return {s.study_name for s in optuna.get_all_study_summaries(open_storage(url))}
    except Exception as e:  # ArgumentError, OperationalError, ImportError of a DB driver ...
        first = first_line(e)
        raise ConfigError(f"{where} {url!r} cannot be opened: {first}") from None


def open_storage(url: str) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})


class SweepSearch(OptunaSearch):
    """OptunaSearch for a sweep. Ray's class tells every trial COMPLETE with its last value,
    so a trial ASHA stopped after one epoch enters TPE as finished; here a trial that ends
    before `max_epochs` without an error is PRUNED (Optuna keeps the values it reported each
    epoch and ranks it by how far it got). A diverged trial (it reports `diverged`) stays
    COMPLETE with the worst value, so TPE learns to avoid it. What this needs of Ray's
    class beyond its public API is in `sweep.compat.ray_optuna`."""

    def __init__(self, *, max_epochs: int, study_url: str | None = None, **kwargs) -> None:
        self._max_epochs = max_epochs
        self._study_url = study_url  # where the study is: pickled instead of the storage
        self._last_step: dict[str, int] = {}  # the last epoch reported per running trial
        storage = open_storage(study_url) if study_url else None
        super().__init__(storage=storage, **kwargs)

    # Ray's OptunaSearch.save pickles its whole __dict__ (and Tune pickles the searcher into
    # tuner.pkl), the study's open RDB storage and each running optuna.Trial's handle on it
    # included: unpickled, they reconnect to the file the sweep started with, even after its
    # folder moved. Pickled here without them (the study named by URL and name) and reopened
    # where it is now (`restore_study_at`) when unpickled.
    def __getstate__(self) -> dict:
        return searcher_state(self)

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        study = None
        if state.get("_study_url") is not None and state.get("_study_name"):
            state["_study_url"] = _RESTORE_URL or state["_study_url"]  # where it is now
            study = optuna.load_study(
                study_name=state["_study_name"],
                storage=open_storage(state["_study_url"]),
                sampler=state.get("_sampler"),
            )
        set_searcher_state(self, state, study)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        """The searcher as saved, its study reopened where it is now. Tune's saved searcher
        can be older than the study: a trial asked for after the last save (then the driver
        was killed) stays RUNNING in the study forever; it is marked FAIL. A trial told
        after the last save (it ended, then the driver was killed before Tune saved that)
        is one Tune reruns from its checkpoint: it is counted as told, and the study keeps
        what it was told first (Optuna refuses any report to a finished trial)."""
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        if isinstance(state, dict) and "_study_url" in state:
            self.__setstate__(state)
        else:  # saved by Ray's own save (an earlier version of ours)
            super().restore(checkpoint_path)
        self.__dict__.setdefault("_last_step", {})
        study = self.study()
        trials, told = searcher_trials(self), searcher_completed(self)
        states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
        for tid, t in trials.items():
            if tid not in told and states.get(t.number, TrialState.RUNNING).is_finished():
                told.add(tid)
                log.info(
                    "optuna: trial %d (%s) was told %s after Tune's last save; kept as told",
                    t.number,
                    tid,
                    states[t.number].name,
                )
        known = {t.number for t in trials.values()}
        for number, state in states.items():
            if state == TrialState.RUNNING and number not in known:
                study.tell(number, state=TrialState.FAIL)
                log.info("optuna: trial %d was asked after Tune's last save; marked FAIL", number)

    def study(self) -> optuna.Study:
        """The Optuna study this searcher asks and tells (set when Tune starts the sweep)."""
        study = searcher_study(self)
        if study is None:
            raise RuntimeError("the Optuna searcher has no study yet (Tune sets it at the start)")
        return study

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in searcher_completed(self):  # a rerun of a trial the study has
            return
        super().on_trial_result(trial_id, result)
        self._last_step[trial_id] = int(result.get(TRAINING_ITERATION, 0))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        trials, told = searcher_trials(self), searcher_completed(self)
        if trial_id in told:  # told before a kill; Tune reran it (see restore)
            self._last_step.pop(trial_id, None)
            return
        open_here = trial_id in trials
        # Tune hands the result that made the scheduler stop a trial to on_trial_complete
        # only (not on_trial_result): record it as that epoch's value first.
        step = int((result or {}).get(TRAINING_ITERATION, 0))
        if (  # (several objectives: Optuna keeps no per-epoch values)
            not error
            and result
            and isinstance(self.metric, str)
            and self.metric in result
            and open_here
            and step > self._last_step.get(trial_id, 0)
        ):
            trials[trial_id].report(result[self.metric], step)
        self._last_step.pop(trial_id, None)
        stopped_early = (
            not error
            and result
            and not result.get("diverged")
            and int(result.get(TRAINING_ITERATION, self._max_epochs)) < self._max_epochs
        )
        if stopped_early and open_here:
            try:
                self.study().tell(trials[trial_id], state=TrialState.PRUNED)
            except Exception as e:  # a trial that reported nothing: Optuna refuses PRUNED
                log.warning("searcher: could not record trial %s as pruned: %s", trial_id, e)
            told.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


def in_distribution(dist, value) -> bool:
    """Whether `value` is one `dist` can sample (Optuna's own check is private): a listed
    choice, or a number within the bounds and on the step."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        try:
            dist.to_internal_repr(value)
        except ValueError:
            return False
        return True
    if not dist.low <= value <= dist.high:
        return False
    if dist.step is None:
        return True
    k = (value - dist.low) / dist.step
    return abs(k - round(k)) < 1e-8


def warm_start_trials(spec: SweepSpec, storage_url: str, sweeps: list[str]) -> list:
    """The COMPLETE and PRUNED trials of `sweeps` (studies in `storage_url`) as trials of
    `spec`'s space: parameters outside it are dropped, trials with a value outside it are
    skipped; one line says each."""
    storage = open_storage(storage_url)
    known = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    dists = {p.key: p.distribution() for p in spec.params}
    out = []
    for sweep in sweeps:
        if sweep not in known:
            raise ValueError(
                f"--warm-start {sweep}: no study of that name in {storage_url} "
                f"(studies there: {', '.join(sorted(known)) or 'none'})"
            )
        study = optuna.load_study(study_name=sweep, storage=storage)
        theirs, ours = study_objectives(study), spec_objectives(spec)
        if len(theirs) != len(ours) or any(
            d != od or (n and n != on) for (n, d), (on, od) in zip(theirs, ours, strict=True)
        ):
            shown = ", ".join(f"{n or '?'} {d}" for n, d in theirs)
            want = ", ".join(f"{n} {d}" for n, d in ours)
            raise ValueError(f"--warm-start {sweep}: that study has {shown}; this sweep {want}")
        dropped, skipped, used = set(), 0, 0
        for t in study.get_trials(deepcopy=False, states=WARM_STATES):
            params = {k: v for k, v in t.params.items() if k in dists}
            dropped |= set(t.params) - set(params)
            outside = [k for k, v in params.items() if not in_distribution(dists[k], v)]
            if outside or (t.state == TrialState.COMPLETE and t.values is None):
                skipped += 1
                continue
            out.append(
                optuna.trial.create_trial(
                    state=t.state,
                    values=t.values if t.state == TrialState.COMPLETE else None,
                    params=params,
                    distributions={k: dists[k] for k in params},
                    intermediate_values=dict(t.intermediate_values),
                    user_attrs={"warm_start_from": f"{sweep}#{t.number}"},
                )
            )
            used += 1
        print(f"warm start from {sweep}: {used} trials used")
        for key in sorted(dropped):
            print(f"warm start from {sweep}: parameter {key} is not in this space, dropped")
        if skipped:
            print(
                f"warm start from {sweep}: {skipped} trials skipped (a value outside this "
                "space, or no value)"
            )
    return out


def spec_objectives(spec: SweepSpec) -> list[tuple[str, str]]:
    """(objective, maximize | minimize) in the order the study holds them."""
    return [(n, "maximize" if s == "max" else "minimize") for n, s in spec.senses.items()]


def study_objectives(study: optuna.Study) -> list[tuple[str | None, str]]:
    names: list[str | None] = [None] * len(study.directions)
    if study.metric_names:
        names = list(study.metric_names)
    return [(n, d.name.lower()) for n, d in zip(names, study.directions, strict=True)]


def replace_old_study(storage_url: str, name: str) -> None:
    """A new sweep reusing the name of a deleted one: its study is kept under another name."""
    storage = open_storage(storage_url)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if name not in names:
        return
    keep = next(f"{name}-old-{i}" for i in range(1, 10_000) if f"{name}-old-{i}" not in names)
    optuna.copy_study(
        from_study_name=name, from_storage=storage, to_storage=storage, to_study_name=keep
    )
    optuna.delete_study(study_name=name, storage=storage)
    print(f"optuna: an earlier study named {name} is now {keep}; this sweep starts a new one")


def start_study(storage_url: str, spec: SweepSpec, warm_start: list) -> None:
    """Create the sweep's study in its storage with the warm-start trials in it, before the
    searcher opens it (OptunaSearch loads an existing study of its name)."""
    objectives = spec_objectives(spec)
    directions: list[Literal["maximize", "minimize"]] = [d for _, d in objectives]  # type: ignore[misc]
    study = optuna.create_study(
        storage=open_storage(storage_url),
        study_name=spec.name,
        directions=directions,
        load_if_exists=True,
    )
    if study.metric_names is None:  # named: a warm start from it compares objectives
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([n for n, _ in objectives])
    if study.trials or not warm_start:  # never twice into one study (a new one is empty)
        return
    study.add_trials(warm_start)
    log.info("warm start: %d earlier trials added to the study", len(warm_start))


class GridSearch(Searcher):
    """A study's searcher: hands out `runs` (each a cell's values plus train.seed) in order,
    each once, then says FINISHED. Its state (how far it got, which trial has which run) is
    saved with Tune's experiment state, so a resumed study neither repeats nor skips a run:
    Tune continues the unfinished trials from their checkpoints and asks for the rest."""

    def __init__(self, runs: list[dict], metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.runs = [dict(r) for r in runs]
        self.next = 0
        self.assigned: dict[str, int] = {}  # trial id -> index in runs

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id in self.assigned:
            return dict(self.runs[self.assigned[trial_id]])
        if self.next >= len(self.runs):
            return Searcher.FINISHED  # type: ignore[return-value]  # Tune's own sentinel
        self.assigned[trial_id] = self.next
        self.next += 1
        return dict(self.runs[self.next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        pass  # nothing is learned: every run is decided up front

    def get_state(self) -> dict:
        return {"runs": self.runs, "next": self.next, "assigned": dict(self.assigned)}

    def set_state(self, state: dict) -> None:
        if state["runs"] != self.runs:
            raise ConfigError(
                "--resume: the study's saved grid differs from its space file's; resume with "
                "the file it was started with"
            )
        self.next, self.assigned = int(state["next"]), dict(state["assigned"])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


def build_searcher(
    spec: SweepSpec, storage_url: str | None = None, warm_start: list | None = None
) -> ConcurrencyLimiter:
    if spec.is_study:
        return ConcurrencyLimiter(
            GridSearch(spec.grid(), spec.metric, spec.mode),
            max_concurrent=spec.budget.max_concurrent,
        )
    if warm_start and not storage_url:
        raise ValueError("a warm start needs the study's storage")
    if storage_url:
        start_study(storage_url, spec, warm_start or [])
    searcher = SweepSearch(
        max_epochs=spec.max_epochs,
        study_url=storage_url,
        space=spec.define_by_run,
        metric=list(spec.senses) if spec.multi_objective else spec.metric,
        mode=list(spec.senses.values()) if spec.multi_objective else spec.mode,
        sampler=picklable_sampler(spec.sampler()),  # Tune pickles it with the searcher
        study_name=spec.name,
    )
    return ConcurrencyLimiter(searcher, max_concurrent=spec.budget.max_concurrent)
