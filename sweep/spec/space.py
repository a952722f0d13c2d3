"""Search-space YAML -> validated sweep spec -> Optuna define-by-run function.

One file describes a sweep: `name`, `metric`, `mode`, `data`, `fixed` (trial-config values
shared by all trials), `search` (dotted trial-config key -> distribution, optionally with
`when:` conditions on other parameters), `early_stopping` (ASHA or FIFO; the old name
`scheduler` still works, with a warning), `budget`, `resources`, `seed`.
Every error names the file, the key path and what is allowed.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr

from nrfer.config import (
    ConfigError,
    TrialConfig,
    deep_merge,
    dotted_value,
    make_config,
    parse_yaml,
    set_by_path,
)
from nrfer.config import (
    apply_overrides as config_overrides,
)
from nrfer.models.backbone import check_backbone_name
from nrfer.registry import suggest
from sweep.spec.params import Param, SpaceError, _err, parse_param, shown
from sweep.spec.sections import SpaceFile, Study, read_sections

# the shipped spaces, package data of `sweep` (search_spaces/ in a checkout links here)
SPACES_DIR = Path(__file__).resolve().parent.parent / "spaces"
# data keys a trial may vary: each distinct dataset (label mode) is read once, each SR cache
# built once, by the driver before trials start
SEARCHABLE_DATA = ("data.label_mode", "data.sr.method", "data.sr.scale", "data.sr.weights")
SEED_KEY = "train.seed"


class SweepSpec(SpaceFile):
    """A space file as the sweep runs it: the typed sections of `sweep.spec.sections` (each key
    once, with its default: `spec.budget.num_samples`, `spec.early_stopping.grace_period`,
    ...), the searched parameters parsed (`params`) and the file it came from (`source`)."""

    _params: list[Param] = PrivateAttr(default_factory=list)
    _source: str = PrivateAttr("space")

    @property
    def params(self) -> list[Param]:
        return self._params

    @property
    def source(self) -> str:
        return self._source

    @property
    def study_section(self) -> Study:
        """The study section of a study (searcher: grid); an error for a search."""
        if self.study is None:
            raise ValueError(f"{self.source} is a search, not a study (no study section)")
        return self.study

    @property
    def max_epochs(self) -> int:
        return self.early_stopping.max_epochs

    def base_config(self) -> dict:
        """The trial config shared by all trials (data + fixed + epochs = max_epochs)."""
        base = deep_merge(self.fixed, {"data": self.data})
        return deep_merge(base, {"train": {"epochs": self.max_epochs}})

    def trial_config(self, params: dict[str, Any]) -> TrialConfig:
        return apply_params(self.base_config(), params, self.source)

    def sr_settings(self, base: dict | None = None, label_mode: str | None = None) -> list:
        """Every distinct SR stage a trial may ask for (method none left out): the product
        of the data.sr.* choices over the shared config (of one label mode when given)."""
        searched = [p for p in self.params if p.key in SEARCHABLE_DATA[1:]]
        base = self.base_config() if base is None else base
        fixed = {} if label_mode is None else {"data.label_mode": label_mode}
        found = {}
        for combo in itertools.product(*(p.args for p in searched)):
            chosen = dict(zip([p.key for p in searched], combo, strict=True))
            sr = apply_params(base, {**fixed, **chosen}, self.source).data.sr
            if sr.method != "none":
                found[(sr.method, sr.scale, sr.weights)] = sr
        return list(found.values())

    def backbones(self) -> list[str]:
        """Every backbone a trial may build: model.backbone's choices, else the one set."""
        for p in self.params:
            if p.key == "model.backbone":
                return list(p.args)
        return [self.trial_config({}).model.backbone]

    def label_modes(self) -> list[str]:
        """The label modes trials train with: data.label_mode's choices, else the one set."""
        for p in self.params:
            if p.key == "data.label_mode":
                return list(p.args)
        return [self.trial_config({}).data.label_mode]

    @property
    def is_study(self) -> bool:
        return self.searcher == "grid"

    def cells(self) -> list[dict[str, Any]]:
        """A study's cells: every combination of the searched choices, in file order, a
        parameter taking part only where its `when:` holds (resizer.n only with the
        resizer on)."""
        out: list[dict[str, Any]] = [{}]
        for p in self.params:
            out = [
                {**cell, p.key: v} if p.active(cell) else cell
                for cell in out
                for v in (p.args if p.active(cell) else [None])
            ]
        return out

    def grid(self) -> list[dict[str, Any]]:
        """What a study runs: each cell once per seed (all cells of the first seed first, so
        a half-run study already has every cell), `train.seed` set."""
        return [{**cell, SEED_KEY: s} for s in self.study_section.seeds for cell in self.cells()]

    def baseline_of(
        self, cell: dict[str, Any], base: dict[str, Any] | None = None, where: str = ""
    ) -> dict[str, Any] | None:
        """The cell `cell` is compared with under baseline `base` (default: the study's
        first): itself with the baseline's values (its dependants following: inactive keys
        dropped), None when it is that baseline itself."""
        if base is None:
            bases = self.study.baselines if self.study else []
            base, where = (bases[0], "study.baseline") if bases else (None, where)
        if not base:
            return None
        wanted = {**cell, **base}
        out: dict[str, Any] = {}
        for p in self.params:
            if p.active(out):
                if p.key not in wanted:
                    raise _err(
                        self.source,
                        f"{where or 'study.baseline'}.{p.key}",
                        f"needed by the baseline of cell {cell_label(cell)} (its condition "
                        "holds there); give its value in the baseline",
                    )
                out[p.key] = wanted[p.key]
        return None if out == cell else out

    def sampler(self):
        """The Optuna sampler of `searcher` (tpe | random | nsga2), seeded: sweeps and
        --dry-run draw from the same one. TPE and NSGA-II take several objectives."""
        import optuna

        if self.searcher == "random":
            return optuna.samplers.RandomSampler(seed=self.seed)
        if self.searcher == "nsga2":  # a generation of a quarter of the budget, 4 to 50
            population = max(4, min(50, self.budget.num_samples // 4))
            return optuna.samplers.NSGAIISampler(population_size=population, seed=self.seed)
        return optuna.samplers.TPESampler(
            seed=self.seed, n_startup_trials=min(4, self.budget.num_samples)
        )

    def define_by_run(self, trial) -> None:
        """Optuna define-by-run: declares the parameters, in file order, skipping inactive ones."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if p.active(chosen):
                chosen[p.key] = p.suggest(trial)

    def to_dict(self) -> dict:
        """The spec as plain data, every default filled in: what the sweep's state file keeps
        (a resume compares it) and the parent run logs."""
        out = self.model_dump()
        for key in ("study", "objectives", "cost"):  # a sweep's state reads as it did
            if not out[key]:  # before studies and objectives
                del out[key]
        out["early_stopping"] = self.early_stopping.model_dump(exclude_none=True)
        if out["early_stopping"].get("looks_again") is False:  # reads as before the key
            del out["early_stopping"]["looks_again"]
        out["search"] = {
            p.key: {p.kind: p.args, **({"when": p.when} if p.when else {})} for p in self.params
        }
        return out


def apply_params(base: dict, params: dict[str, Any], source: str = "trial") -> TrialConfig:
    """The trial config: `base` with the sampled dotted-key values set. `base` is copied
    deeply first, so neither the spec nor a shared base ever carries one trial's values."""
    raw = copy.deepcopy(base)
    for key, value in params.items():
        set_by_path(raw, key, value, where=f"{source}: search.{key}")
    return make_config(raw, f"{source} (trial)")


def resolve_space_path(name: str | Path) -> Path:
    """A path is used as it is; a bare name (`demo` or `demo.yaml`) is one of the shipped
    spaces (search_spaces/ in a checkout, package data once installed)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (SPACES_DIR / path.name, SPACES_DIR / f"{path.name}.yaml"):
        if not path.parent.parts and candidate.is_file():
            return candidate
    known = sorted(p.name for p in SPACES_DIR.glob("*.yaml"))
    raise SpaceError(
        f"search space {str(name)!r} not found (as a path, or shipped: {', '.join(known)})"
    )


def _renamed_scheduler(raw: dict, source: str) -> dict:
    """The top-level `scheduler:` (ASHA/FIFO) is now `early_stopping:`, so that it is not
    confused with the trial's LR schedule (`fixed.scheduler`); the old key still works."""
    if "scheduler" not in raw:
        return raw
    if "early_stopping" in raw:
        raise _err(
            source, "scheduler", "give early_stopping only (scheduler is its deprecated old name)"
        )
    warnings.warn(
        f"{source}: the top-level key 'scheduler' is deprecated; rename it to 'early_stopping' "
        "(the LR schedule stays fixed.scheduler)",
        DeprecationWarning,
        stacklevel=3,
    )
    return {("early_stopping" if k == "scheduler" else k): v for k, v in raw.items()}


def parse_space(raw: Any, source: str = "space") -> SweepSpec:
    if isinstance(raw, dict):
        raw = _renamed_scheduler(raw, source)
    top = read_sections(raw, source, SweepSpec)
    search = top.search
    params = [parse_param(source, str(k), v) for k, v in search.items()]
    check_conditions(source, params)
    spec = top
    spec._params, spec._source = params, source
    # The data are read once, in the driver: of the data section only the SR stage may vary
    # (its caches are built before trials start), and only among listed choices.
    for p in params:
        if p.key.startswith("data.") and p.key not in SEARCHABLE_DATA:
            raise _err(
                source,
                f"search.{p.key}",
                "the data are read once for all trials; of data.* only "
                f"{', '.join(SEARCHABLE_DATA)} can be searched (set the rest under data:)",
            )
        if p.key in SEARCHABLE_DATA and p.kind != "choice":
            raise _err(
                source,
                f"search.{p.key}",
                f"must be a choice (its SR caches are built before trials), got {p.kind}",
            )
    # Every parameter must be a real trial-config key with values it accepts: check the
    # shared config, and each parameter at its first value and (for choices) each value.
    try:
        backbones = {(spec.trial_config({}).model.backbone, "fixed.model.backbone")}
        for p in params:
            for value in p.args if p.kind == "choice" else [p.first(), p.args[1]]:
                cfg = spec.trial_config({p.key: value})
                if p.kind == "choice":
                    _check_choice_kept(source, p, value, dotted_value(cfg.to_dict(), p.key))
                if p.key == "model.backbone":
                    backbones.add((cfg.model.backbone, f"search.{p.key}"))
    except ConfigError as e:
        raise SpaceError(str(e)) from None
    # Backbone names are checked against timm now, not when a trial fails hours later.
    for name, where in sorted(backbones):
        try:
            check_backbone_name(name)
        except ValueError as e:
            raise _err(source, where, str(e)) from None
    if spec.is_study:
        check_study(spec)
    _warn_rung_in_warmup(spec)
    return spec


def cell_label(cell: dict[str, Any]) -> str:
    """A cell as a short label: its values, keys shortened to their last part."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={shown(v, 40)}" for k, v in cell.items()) or "(one)"


def check_degradations(spec, source: str) -> None:
    """A lowres degradation no larger than the faces it degrades (where their size is known)."""
    from nrfer.data import face_size

    study = spec.study_section
    side = face_size(make_config({"data": spec.data}, source).data)
    for d in study.degradations:
        if side and d.kind == "lowres" and d.severity > side:
            raise _err(
                source,
                "study.eval_degradations",
                f"{d.label} is larger than the faces ({side}x{side} px); lowres makes a face "
                "smaller",
            )


def check_study(spec: SweepSpec) -> None:
    """A study's grid: choices only, its seeds from study.seeds, rows and baseline naming
    searched keys and listed values; the budget becomes every cell once per seed."""
    source, keys = spec.source, [p.key for p in spec.params]
    for p in spec.params:
        if p.kind != "choice":
            raise _err(
                source,
                f"search.{p.key}",
                f"a grid (study) runs listed values only: give {{choice: [...]}}, got {p.kind}",
            )
        if p.key == SEED_KEY:
            raise _err(source, f"search.{SEED_KEY}", "a study's seeds are study.seeds")
    if not keys:
        raise _err(source, "search", "a study needs at least one parameter to compare")
    study = spec.study_section
    if study.rows is None:
        study.rows = keys[0]
    elif study.rows not in keys:
        raise _err(
            source, "study.rows", f"{study.rows!r} is not searched; {suggest(study.rows, keys)}"
        )
    for where, base in baseline_entries(study):
        if not isinstance(base, dict) or not base:
            raise _err(source, where, f"expected {{searched key: value}}, got {shown(base)}")
        for key, value in base.items():
            if key not in keys:
                raise _err(source, f"{where}.{key}", f"not searched; {suggest(key, keys)}")
            choices = next(p.args for p in spec.params if p.key == key)
            if value not in choices:
                raise _err(source, f"{where}.{key}", f"{shown(value)} is not one of {choices}")
        for cell in spec.cells():
            spec.baseline_of(cell, base, where)  # a baseline every cell can be compared with
    for ev in study.eval_sets:
        try:
            make_config({"data": {"dataset": ev.dataset, "root": ev.root, **ev.settings}}, source)
        except ConfigError as e:
            raise _err(source, f"study.eval_sets.{ev.name}", str(e)) from None
    check_degradations(spec, source)
    if len({ev.name for ev in study.eval_sets}) != len(study.eval_sets):
        raise _err(source, "study.eval_sets", "two sets share a name")
    runs = len(spec.grid())
    if "num_samples" in spec.budget.model_fields_set and spec.budget.num_samples != runs:
        raise _err(
            source,
            "budget.num_samples",
            f"a study runs every cell once per seed ({len(spec.cells())} cells x "
            f"{len(study.seeds)} seeds = {runs}); leave it out",
        )
    spec.budget.num_samples = runs


def baseline_entries(study) -> list[tuple[str, Any]]:
    """(where in the file, baseline) for study.baseline and each study.compare entry."""
    out = [("study.baseline", study.baseline)] if study.baseline is not None else []
    return out + [(f"study.compare[{i}]", c) for i, c in enumerate(study.compare)]


def check_conditions(source: str, params: list[Param]) -> None:
    """Each `when:` names a choice parameter listed before it, and values it can take."""
    keys = [p.key for p in params]
    for i, p in enumerate(params):
        for dep, vals in p.when.items():
            if dep not in keys:
                raise _err(
                    source,
                    f"search.{p.key}.when.{dep}",
                    f"no such parameter; conditions may name: {', '.join(k for k in keys if k != p.key) or 'none'}",
                )
            if keys.index(dep) >= i:
                raise _err(
                    source,
                    f"search.{p.key}.when.{dep}",
                    "a condition must name a parameter listed before this one",
                )
            dep_param = params[keys.index(dep)]
            if dep_param.kind != "choice":  # a sampled number never equals a listed value
                raise _err(
                    source,
                    f"search.{p.key}.when.{dep}",
                    f"{dep} is searched with {dep_param.kind}; conditions must name a choice "
                    f"parameter (its dependant would never be sampled)",
                )
            if dep_param.kind == "choice":
                bad = [v for v in vals if v not in dep_param.args]
                if bad:
                    raise _err(
                        source,
                        f"search.{p.key}.when.{dep}",
                        f"{bad[0]!r} is not one of {dep_param.args}",
                    )


def _check_choice_kept(source: str, p, value: Any, kept: Any) -> None:
    """A listed choice must reach the trial as written: the config would turn `true` into 1,
    "8" into 8 and 8.0 into 8 for an int key, so that [4, "8", 8.0, true] were four
    'different' choices of two values. An int for a float key is fine (1 -> 1.0)."""
    same_kind = (
        type(value) is type(kept)
        or (type(value) is int and type(kept) is float)
        or (isinstance(value, list | tuple) and isinstance(kept, list | tuple))
    )
    if not same_kind or kept != value:
        raise _err(
            source,
            f"search.{p.key}.choice",
            f"{shown(value)} ({type(value).__name__}) would become {shown(kept)} "
            f"({type(kept).__name__}) in the trial config; list values of the key's own type",
        )
    if sum(v == value and type(v) is type(value) for v in p.args) > 1:
        raise _err(source, f"search.{p.key}.choice", f"{shown(value)} is listed twice")


def _warn_rung_in_warmup(spec: SweepSpec) -> None:
    """ASHA's first rung during the LR warmup ranks trials by accuracies the warmup decides,
    not the config: measured on the demo's curves (bench/NOTES.md), grace 1 of 4 epochs with
    a 1-epoch warmup never found what FIFO + random finds."""
    stop = spec.early_stopping
    if stop.name != "asha" or any(p.key == "scheduler.warmup_epochs" for p in spec.params):
        return
    warmup = spec.trial_config({}).scheduler.warmup_epochs
    if warmup and stop.grace_period is not None and stop.grace_period <= warmup:
        warnings.warn(
            f"{spec.source}: early_stopping.grace_period {stop.grace_period} <= "
            f"fixed.scheduler.warmup_epochs {warmup}: ASHA's first rung would rank trials "
            "while their learning rate is still warming up; set grace_period above the "
            "warmup (bench/NOTES.md, search replay)",
            UserWarning,
            stacklevel=3,
        )


def apply_overrides(raw: Any, overrides: list[str], source: str) -> Any:
    """`--set key=value` on a space file's YAML (nrfer.config.apply_overrides): dotted keys
    into its sections (budget.num_samples, early_stopping.max_epochs); under `search.` the
    rest is one parameter's key (search.optim.lr={loguniform: [1e-4, 1e-2]})."""
    if not overrides or not isinstance(raw, dict):
        return raw  # (not a mapping: parse_space says what is wrong with the file)
    return config_overrides(raw, overrides, SpaceError, flat_under=("search",))


def load_space(name: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    path = resolve_space_path(name)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SpaceError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise SpaceError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        raw = apply_overrides(parse_yaml(text, str(path), SpaceError), overrides or [], str(path))
        source = f"{path} + --set" if overrides else str(path)
        return parse_space(raw, source)
    except RecursionError:
        raise SpaceError(f"{path}: nested too deep to be a space file") from None
