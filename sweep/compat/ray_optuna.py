"""Shims into Ray's OptunaSearch (checked on Ray 2.60) and Optuna's Trial (Optuna 5.1): the
searcher's study and per-trial handles, and its state pickled without the open storage."""

from __future__ import annotations

import inspect
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from sweep.compat.guard import shim

SEARCHER_MISSING = (
    "OptunaSearch exposes neither its study nor the optuna.Trial it asked for each Tune "
    "trial, so a trial cannot be told PRUNED with its per-epoch values"
)
# OptunaSearch's own attributes: the state a resumed sweep must get back.
STATE = ("_ot_study", "_ot_trials", "_storage", "_sampler", "_completed_trials", "_study_name")


def _probe_searcher() -> None:
    source = inspect.getsource(OptunaSearch)
    for name in STATE:
        assert f"self.{name}" in source, f"OptunaSearch has no {name}"
    assert "load_if_exists=True" in inspect.getsource(OptunaSearch._setup_study)


@shim("ray", SEARCHER_MISSING, _probe_searcher)
def searcher_study(searcher: OptunaSearch) -> optuna.Study | None:
    """The study the searcher asks and tells (None before Tune set the metric)."""
    return searcher._ot_study


@shim("ray", SEARCHER_MISSING, _probe_searcher)
def searcher_trials(searcher: OptunaSearch) -> dict[str, optuna.Trial]:
    """Tune trial id -> the optuna.Trial asked for it (running trials)."""
    return searcher._ot_trials


@shim("ray", SEARCHER_MISSING, _probe_searcher)
def searcher_completed(searcher: OptunaSearch) -> set[str]:
    """The Tune trial ids already told to the study (a second tell would be refused)."""
    return searcher._completed_trials


PICKLE_MISSING = (
    "OptunaSearch.save pickles its whole __dict__, the open RDB storage included, which "
    "reconnects to the file the sweep started with even after its folder moved"
)


def _probe_trial() -> None:
    study = optuna.create_study()
    trial = study.ask()
    fields = trial_fields(trial)
    assert "_trial_id" in fields and "study" not in fields and "storage" not in fields
    again = trial_from_fields(fields, study)
    again.report(0.5, 1)
    assert study.trials[0].intermediate_values == {1: 0.5}


@shim("ray", PICKLE_MISSING, _probe_searcher)
def searcher_state(searcher: OptunaSearch) -> dict[str, Any]:
    """The searcher's attributes without the study, its storage and the running trials'
    handles on it (saved as `_ot_trials`: each trial's own fields)."""
    state = {k: v for k, v in searcher.__dict__.items() if k not in ("_ot_study", "_storage")}
    state["_ot_trials"] = {tid: trial_fields(t) for tid, t in searcher._ot_trials.items()}
    return state


@shim("ray", PICKLE_MISSING, _probe_searcher)
def set_searcher_state(
    searcher: OptunaSearch, state: dict[str, Any], study: optuna.Study | None
) -> None:
    """Put `searcher_state`'s output back, with `study` (reopened where it is now) as the
    searcher's study and storage and each running trial's handle rebuilt on it."""
    state = dict(state)
    trials = state.pop("_ot_trials", {})
    searcher.__dict__.update(state)
    inner: Any = searcher  # OptunaSearch's own attributes, typed by what they hold
    inner._ot_study = study
    inner._storage = study._storage if study is not None else None
    searcher._ot_trials = (
        {tid: trial_from_fields(f, study) for tid, f in trials.items()} if study else {}
    )


@shim(
    "optuna",
    "an optuna.Trial cannot be pickled apart from its storage, nor rebuilt for a trial "
    "number without calling the sampler's before_trial again",
    _probe_trial,
)
def trial_fields(trial: optuna.Trial) -> dict[str, Any]:
    """A running optuna.Trial's own fields (its id, cached params, relative search space),
    without its study and storage."""
    return {k: v for k, v in trial.__dict__.items() if k not in ("study", "storage")}


@shim(
    "optuna",
    "optuna.Trial's constructor calls the sampler's before_trial again, so a running trial "
    "cannot be rebuilt as it was from public API",
    _probe_trial,
)
def trial_from_fields(fields: dict[str, Any], study: optuna.Study) -> optuna.Trial:
    """The optuna.Trial of `trial_fields` on `study`, as it was when it was saved."""
    trial = optuna.trial.Trial.__new__(optuna.trial.Trial)
    trial.__dict__.update(fields)
    trial.study, trial.storage = study, study._storage
    return trial


class _PicklableNSGAII(optuna.samplers.NSGAIISampler):
    """Optuna 5.1's NSGA-II sampler keeps a `threading.Lock` that pickle refuses, and Tune
    pickles the searcher (with its sampler) into its experiment state: pickled here without
    the lock, and given a new one when unpickled."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import threading

        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def picklable_sampler(sampler: optuna.samplers.BaseSampler) -> optuna.samplers.BaseSampler:
    """`sampler`, made picklable where Optuna's is not (NSGA-II: its lock)."""
    if type(sampler) is optuna.samplers.NSGAIISampler:
        sampler.__class__ = _PicklableNSGAII
    return sampler
