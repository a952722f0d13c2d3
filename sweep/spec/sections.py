"""The space file's top level as typed sections: each key once, with its type, default and
bounds. `search` and `fixed` stay plain mappings here (sweep.spec.params and the trial config
check them); `read_sections` turns pydantic's errors into our `file: key.path: ...` lines."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError, model_validator

from nrfer.config import MAX_SEED
from nrfer.registry import suggest
from nrfer.val_metrics import VAL_METRICS
from sweep.spec.params import SpaceError, shown

METRICS = tuple(VAL_METRICS)
# what a trial costs to run (nrfer.cost; measured when an objective names one, or `cost:` is
# given): parameters, GFLOPs of one face, and latency in ms per call at each of
# cost.batch_sizes (latency_ms_b<B>; latency_ms is batch 1's)
COST_METRICS = ("params", "gflops", "latency_ms")
LATENCY_AT = re.compile(r"latency_ms_b([1-9][0-9]*)")
# tpe and random handle several objectives too (Optuna's MOTPE; random ignores them);
# nsga2: Optuna's NSGA-II; grid: every cell of the choices (a study)
SEARCHERS = ("tpe", "random", "nsga2", "grid")
EARLY_STOPPING_KEYS = {
    "asha": ("name", "grace_period", "reduction_factor", "max_epochs"),
    "fifo": ("name", "max_epochs"),
    "adaptive": (
        "name",
        "max_epochs",
        "reduction_factor",
        "min_trials",
        "min_rank_correlation",
        "min_dominating",
        "looks_again",
    ),
    "median": ("name", "max_epochs", "grace_period", "min_samples"),
}


def _int_at_least(low: int, high: int | None = None) -> PlainValidator:
    def check(v: Any) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < low or (high and v > high):
            bound = f" >= {low}" if high is None else f" in {low}..{high}"
            raise ValueError(f"expected an integer{bound}, got {shown(v)}")
        return v

    return PlainValidator(check)


def _number_at_least(low: float, strict: bool = False) -> PlainValidator:
    def check(v: Any) -> float:
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or v != v
            or v
            in (
                float("inf"),
                float("-inf"),
            )
        ):
            raise ValueError(f"expected a number, got {shown(v)}")
        if v < low or (strict and v == low):
            raise ValueError(f"must be {'>' if strict else '>='} {low}, got {v}")
        return v

    return PlainValidator(check)


def _one_of(allowed: tuple[str, ...]) -> PlainValidator:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in allowed:
            raise ValueError(f"{shown(v)} is not one of {', '.join(allowed)}")
        return v

    return PlainValidator(check)


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {shown(v)}")
    return v


def _model_name(what: str) -> PlainValidator:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"expected a non-empty {what}, got {shown(v)}")
        return v

    return PlainValidator(check)


def _set(model: BaseModel, name: str, value: Any) -> None:
    """A default an after-validator fills in: set without validating again (an assignment
    would run the validator that is setting it, for ever)."""
    object.__setattr__(model, name, value)


class _Section(BaseModel):
    # a value set after loading is checked as one in the file is
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError(f"expected a mapping, got {shown(v)}")
        return v


class EarlyStopping(_Section):
    """ASHA stops weak trials at rungs grace_period * reduction_factor^k; FIFO runs all;
    adaptive runs `min_trials` trials to the end, then places ASHA's first rung at the first
    epoch whose rank correlation with the final value is at least `min_rank_correlation`
    (a bootstrap lower bound), or stops nothing; with several objectives a trial stops at a
    rung only where `min_dominating` trials dominate it; median stops a trial whose best is
    below the median of `min_samples` others at its epoch. The rules themselves:
    sweep.runtime.stopping."""

    name: Annotated[str, _one_of(tuple(EARLY_STOPPING_KEYS))] = "asha"
    max_epochs: Annotated[int, _int_at_least(1)] = 10
    grace_period: Annotated[int, _int_at_least(1)] | None = None
    reduction_factor: Annotated[int, _int_at_least(2)] | None = None
    min_trials: Annotated[int, _int_at_least(3)] | None = None
    min_rank_correlation: Annotated[float, _number_at_least(-1)] | None = None
    # several objectives: a trial stops at a rung only where this many trials dominate it
    min_dominating: Annotated[int, _int_at_least(1)] | None = None
    # adaptive, no rung yet: decide again each time the completed trials double (16, 32, ...)
    looks_again: Annotated[bool, PlainValidator(_flag)] | None = None
    # median: a trial is compared once at least this many others reported the same epoch
    min_samples: Annotated[int, _int_at_least(1)] | None = None

    @model_validator(mode="after")
    def _fits_the_scheduler(self) -> EarlyStopping:
        allowed = EARLY_STOPPING_KEYS[self.name]
        for key in sorted(self.model_fields_set - set(allowed)):
            raise ValueError(f"{key}: not used by {self.name}; allowed: {', '.join(allowed)}")
        if self.name in ("asha", "median"):
            grace = self.grace_period or 1
            _set(self, "grace_period", grace)
            if grace > self.max_epochs:
                raise ValueError(f"grace_period: {grace} > max_epochs {self.max_epochs}")
        if self.name == "asha":
            _set(self, "reduction_factor", self.reduction_factor or 2)
        if self.name == "median":
            _set(self, "min_samples", self.min_samples or 3)
        if self.name == "adaptive":
            _set(self, "reduction_factor", self.reduction_factor or 2)
            # the defaults bench/search_replay.py supports on both recordings (bench/NOTES.md)
            _set(self, "min_trials", self.min_trials or 8)
            rho = 0.8 if self.min_rank_correlation is None else self.min_rank_correlation
            if rho > 1:
                raise ValueError(f"min_rank_correlation: {rho} > 1 (a rank correlation)")
            _set(self, "min_rank_correlation", rho)
            _set(self, "looks_again", False if self.looks_again is None else self.looks_again)
        return self


class Budget(_Section):
    num_samples: Annotated[int, _int_at_least(1)] = 8
    max_concurrent: Annotated[int, _int_at_least(1)] = 2
    time_budget_s: Annotated[float, _number_at_least(0, strict=True)] | None = None
    reuse_workers: Annotated[bool, PlainValidator(_flag)] = True  # reuse a worker process
    max_failures: Annotated[int, _int_at_least(0)] = 2  # Ray retries of a crashed trial


class Resources(_Section):
    """What one trial asks of the Ray cluster."""

    cpu: Annotated[float, _number_at_least(0, strict=True)] = 1
    gpu: Annotated[float, _number_at_least(0)] = 0

    @model_validator(mode="after")
    def _whole_gpus_above_one(self) -> Resources:
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise ValueError(f"gpu: fractions are allowed below 1 only, got {self.gpu}")
        return self


def _batch_sizes(v: Any) -> list[int]:
    if not isinstance(v, list) or not v:
        raise ValueError(f"expected a non-empty list of batch sizes, got {shown(v)}")
    for b in v:
        if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 4096:
            raise ValueError(f"a batch size must be an integer in 1..4096, got {shown(b)}")
    if len(set(v)) != len(v):
        raise ValueError(f"a batch size is listed twice in {shown(v)}")
    return list(v)


class Cost(_Section):
    """How each trial measures what its model costs (nrfer.cost), once, before its first
    epoch, on the trial's own device: latency is the median of `repeats` warm calls (after
    `warmup` ones) at each batch size; parameters and FLOPs are counted."""

    batch_sizes: Annotated[list[int], PlainValidator(_batch_sizes)] = [1, 64]
    repeats: Annotated[int, _int_at_least(1, 1000)] = 20
    warmup: Annotated[int, _int_at_least(0, 100)] = 3


def _objectives(v: Any) -> dict[str, str]:
    """objectives: {name: max | min, ...} in the order given (a name: a validation metric or
    a cost metric)."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError(f"expected a mapping of objective -> max or min, got {shown(v)}")
    allowed = (*METRICS, *COST_METRICS, "latency_ms_b<B>")
    for name, sense in v.items():
        if not isinstance(name, str) or not (
            name in METRICS or name in COST_METRICS or LATENCY_AT.fullmatch(name)
        ):
            raise ValueError(
                f"{shown(name)} is not an objective; {suggest(str(name), list(allowed))}"
            )
        if sense not in ("max", "min"):
            raise ValueError(f"{name}: expected max or min, got {shown(sense)}")
    return dict(v)


def _keep(v: Any) -> int | None:
    """tracking.keep_checkpoints: a count (0: none) or `all` (None)."""
    if v == "all" or v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    raise ValueError(f"expected a count >= 0 of trials or all, got {shown(v)}")


class Tracking(_Section):
    """What each trial's MLflow run records besides its metrics."""

    system_metrics: Annotated[bool, PlainValidator(_flag)] = True  # MLflow's CPU/GPU/memory
    system_metrics_interval_s: Annotated[float, _number_at_least(1)] = 10  # seconds between samples
    # the best.pt of the top K trials (by the sweep's metric) goes to their MLflow runs;
    # the others' weights are deleted when they end (every run keeps its config, curves
    # and previews); `all` keeps every trial's
    keep_checkpoints: Annotated[int | None, PlainValidator(_keep)] = 3


def _seeds(v: Any) -> list[int]:
    """study.seeds: a count N (seeds 0..N-1) or the list of seeds."""
    if isinstance(v, int) and not isinstance(v, bool):
        if not 1 <= v <= 100:
            raise ValueError(f"expected a count of 1..100 seeds or a list of seeds, got {v}")
        return list(range(v))
    if isinstance(v, list) and v:
        for s in v:
            if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s <= MAX_SEED:
                raise ValueError(f"a seed must be an integer in 0..{MAX_SEED}, got {shown(s)}")
        if len(set(v)) != len(v):
            raise ValueError(f"a seed is listed twice in {shown(v)}")
        return list(v)
    raise ValueError(f"expected a count of seeds or a non-empty list of seeds, got {shown(v)}")


class EvalSet(_Section):
    """An extra evaluation set of a study: each run's best weights evaluated on its `split`
    (a column of the table)."""

    name: Annotated[str, _model_name("column name")]
    dataset: Annotated[str, _model_name("dataset name")]
    root: str | None = None
    split: Annotated[str, _one_of(("train", "val", "test"))] = "test"
    tta: Annotated[str, _one_of(("none", "flip"))] = "none"
    settings: dict = {}  # other data.* keys (image_size, image_folder, ...)


def _degradations(v: Any) -> list[str]:
    """study.eval_degradations: {kind: severities} or ['kind:severities', ...] (nrfer.degrade)
    -> their labels (lowres:12), each once."""
    from nrfer.degrade import from_mapping

    return [d.label for d in from_mapping(v, "eval_degradations")] if v else []


class Study(_Section):
    """`searcher: grid` as an experiment: every cell of the searched choices (`when:`
    honoured) x `seeds`, each run to its full epochs, epoch chosen on val, test once; the
    table's rows are the `rows` parameter and each cell is compared with its baseline cell
    under each entry of `baselines` (`baseline` and `compare`)."""

    seeds: Annotated[list[int], PlainValidator(_seeds)] = [0, 1, 2]
    rows: str | None = None  # a searched key (default: the first)
    baseline: dict | None = None  # searched key -> value: the cell each other is compared to
    # more baselines, on any axis: a block of comparisons per entry (e.g. the resizer off,
    # then the loss ce); `baseline`, when given, is the first block
    compare: list[dict] = []
    eval_sets: list[EvalSet] = []
    # each run's best weights also tested on its test faces degraded (nrfer.degrade): a
    # column per degradation, compared with the baselines as the clean test is
    eval_degradations: Annotated[list[str], PlainValidator(_degradations)] = []
    degradation_seed: Annotated[int, _int_at_least(0, MAX_SEED)] = 0
    # an audit.csv of `nrfer data audit`: the table also shows test accuracy without the
    # test faces that have a twin in train or val (nothing moves between splits)
    exclude_leaked: str | None = None

    @property
    def degradations(self) -> list:
        """study.eval_degradations as nrfer.degrade.Degradation, in the order given."""
        from nrfer.degrade import parse

        return parse(self.eval_degradations, "study.eval_degradations")

    @property
    def baselines(self) -> list[dict]:
        """Every baseline the cells are compared with, `baseline` first, each once."""
        out = [self.baseline] if self.baseline else []
        return out + [c for c in self.compare if c and c not in out]


SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]{0,99}")


def check_sweep_name(v: Any) -> str:
    """A sweep name is a folder under --storage and an MLflow experiment: letters, digits and
    _ . + = -, starting with a letter or digit, at most 100 characters (so no '..', slashes,
    quotes or spaces)."""
    if not isinstance(v, str) or not SWEEP_NAME.fullmatch(v) or ".." in v:
        raise ValueError(
            f"{shown(v)} is not a usable sweep name (it names the MLflow experiment and the "
            "folder under --storage): a non-empty name of letters, digits and _ . + = -, "
            "starting with a letter or digit, without '..', at most 100 characters"
        )
    return v


class SpaceFile(_Section):
    """The top level of a space file (see sweep.spec.space for what each part means)."""

    name: Annotated[str, PlainValidator(check_sweep_name)]
    metric: Annotated[str, _one_of(METRICS)] = "val_acc"
    mode: Annotated[str, _one_of(("max", "min"))] = ""  # "": min for val_loss, else max
    seed: Annotated[int, _int_at_least(0, MAX_SEED)] = 0
    searcher: Annotated[str, _one_of(SEARCHERS)] = "tpe"
    data: dict = {}
    fixed: dict = {}
    search: dict = {}
    early_stopping: EarlyStopping = EarlyStopping()
    budget: Budget = Budget()
    resources: Resources = Resources()
    tracking: Tracking = Tracking()
    study: Study | None = None
    # several objectives (accuracy against latency, ...): the searcher proposes along their
    # Pareto front, and the leaderboard marks it; `metric` stays the one early stopping ranks
    objectives: Annotated[dict[str, str], PlainValidator(_objectives)] = {}
    cost: Cost | None = None
    registered_model: Annotated[str, _model_name("model name")] | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_other_sections(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        raw = {k: v for k, v in raw.items() if v is not None or k in ("name", "registered_model")}
        raw = _study_defaults(raw)
        for key, what in (
            ("data", "a mapping of data settings"),
            ("fixed", "a mapping of trial-config sections"),
            ("search", "a mapping of parameter -> distribution"),
        ):
            if key in raw and not isinstance(raw[key], dict):
                raise ValueError(f"{key}: expected {what}, got {shown(raw[key])}")
        # max_epochs defaults to the fixed trial config's train.epochs; both, disagreeing, is
        # an error (trials run max_epochs: the other would be replaced without a word)
        stop = raw.get("early_stopping") or {}
        train = (raw.get("fixed") or {}).get("train")
        epochs = train.get("epochs") if isinstance(train, dict) else None
        if isinstance(stop, dict) and "epochs" in (train or {}) and "max_epochs" in stop:
            if epochs != stop["max_epochs"]:
                raise ValueError(
                    f"fixed.train.epochs {shown(epochs)} and early_stopping.max_epochs "
                    f"{shown(stop['max_epochs'])} disagree; trials run max_epochs epochs: "
                    "give one of them"
                )
        if isinstance(stop, dict) and "max_epochs" not in stop and isinstance(train, dict):
            if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1:
                raw["early_stopping"] = {**stop, "max_epochs": epochs}
        fixed_data = (raw.get("fixed") or {}).get("data")
        if isinstance(fixed_data, dict) and isinstance(raw.get("data"), dict):
            clash = _clashes(fixed_data, raw["data"], "data")
            if clash:
                raise ValueError(
                    f"fixed.{clash[0][0]} {shown(clash[0][1])} and {clash[0][0]} "
                    f"{shown(clash[0][2])} disagree (the top-level data section would win "
                    "silently); set data in one place"
                )
        return raw

    @model_validator(mode="after")
    def _mode_follows_metric(self) -> SpaceFile:
        if self.objectives:
            self._check_objectives()
        stopping = self.early_stopping
        if self.objectives and stopping.name == "asha" and "name" not in stopping.model_fields_set:
            # not chosen in the file: the rule that ranks by dominance, not ASHA's default
            stopping = EarlyStopping(name="adaptive", max_epochs=stopping.max_epochs)
            _set(self, "early_stopping", stopping)
        if self.objectives and stopping.name in ("asha", "median"):
            raise ValueError(
                f"early_stopping: {stopping.name} ranks trials by {self.metric} alone, so with several "
                "objectives it stops the cheap trials the front needs; use adaptive (at its "
                "rungs a trial stops only where others dominate it) or fifo"
            )
        if not self.objectives and "min_dominating" in stopping.model_fields_set:
            raise ValueError(
                "early_stopping.min_dominating: used only with several objectives "
                "(objectives:); this space has one (metric:)"
            )
        if not self.mode:
            _set(self, "mode", VAL_METRICS[self.metric].sense)
        return self

    def _check_objectives(self) -> None:
        """Two or more objectives, one of them a validation metric: `metric` (given, else
        the first validation metric listed), its sense the one listed; each latency at a
        batch size `cost.batch_sizes` measures."""
        objectives = self.objectives
        if len(objectives) < 2:
            raise ValueError(
                f"objectives: give two or more (one objective is metric: and mode:), got "
                f"{', '.join(objectives)}"
            )
        if self.searcher == "grid":
            raise ValueError("objectives: a study (searcher: grid) compares cells; it has none")
        if "metric" not in self.model_fields_set:
            metric = next((n for n in objectives if n in METRICS), None)
            if metric is None:
                raise ValueError(
                    f"objectives: one must be a validation metric ({', '.join(METRICS)}): it is "
                    "what trials train towards and early stopping ranks"
                )
            _set(self, "metric", metric)
        if self.metric not in objectives:
            raise ValueError(f"metric: {self.metric} is not one of the objectives")
        sense = objectives[self.metric]
        if self.mode and self.mode != sense:
            raise ValueError(f"mode: {self.mode}, but objectives.{self.metric} is {sense}")
        _set(self, "mode", sense)
        cost = self.cost or Cost()
        if self.cost is None:
            _set(self, "cost", cost)
        for name in objectives:
            m = LATENCY_AT.fullmatch(name)
            batch = int(m.group(1)) if m else (1 if name == "latency_ms" else None)
            if batch is not None and batch not in cost.batch_sizes:
                raise ValueError(
                    f"objectives.{name}: batch {batch} is not measured; cost.batch_sizes is "
                    f"{cost.batch_sizes}"
                )

    @property
    def senses(self) -> dict[str, str]:
        """objective -> max | min: `metric` first, then the other objectives in file order
        (the order Optuna's study holds them in)."""
        return {self.metric: self.mode, **{k: v for k, v in self.objectives.items()}}

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def _study_defaults(raw: dict) -> dict:
    """A `study:` section means a grid (a grid without one runs each cell with seeds 0..2),
    and no early stopping unless the file asks for it: every run goes to its full epochs."""
    if "study" not in raw and raw.get("searcher") != "grid":
        return raw
    raw = dict(raw)
    if raw.setdefault("searcher", "grid") != "grid":
        raise ValueError(
            f"searcher: a study runs every cell (searcher: grid), got {shown(raw['searcher'])}"
        )
    raw.setdefault("study", {})
    stop = raw.get("early_stopping")
    if stop is None:
        raw["early_stopping"] = {"name": "fifo"}
    elif isinstance(stop, dict) and "name" not in stop:
        raw["early_stopping"] = {"name": "fifo", **stop}
    return raw


def _clashes(a: dict, b: dict, prefix: str) -> list[tuple[str, Any, Any]]:
    """(dotted key, a's value, b's value) for every leaf both set to different values."""
    out = []
    for k in a.keys() & b.keys():
        key = f"{prefix}.{k}"
        if isinstance(a[k], dict) and isinstance(b[k], dict):
            out += _clashes(a[k], b[k], key)
        elif a[k] != b[k]:
            out.append((key, a[k], b[k]))
    return sorted(out, key=lambda c: c[0])


TOP_KEYS = tuple(SpaceFile.model_fields)


def _allowed_at(loc: tuple) -> list[str]:
    """The keys the model accepts at `loc` (the section of an unknown key)."""
    model: type[BaseModel] = SpaceFile
    for part in loc:
        field = model.model_fields.get(str(part))
        sub = getattr(field, "annotation", None)
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return []
        model = sub
    return list(model.model_fields)


S = TypeVar("S", bound="SpaceFile")


def read_sections(raw: Any, source: str, model: type[S]) -> S:
    """`raw` (a parsed YAML document) as typed sections (`model`: SpaceFile or a subclass),
    or a SpaceError naming the file, the key path and what is allowed (one line per problem)."""
    if not isinstance(raw, dict):
        raise SpaceError(
            f"{source}: the top level must be a mapping with keys {', '.join(TOP_KEYS)}"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = tuple(str(p) for p in e["loc"])
            path = ".".join(loc)
            if e["type"] == "extra_forbidden":
                hint = suggest(loc[-1], _allowed_at(loc[:-1]))
                lines.append(f"{source}: {path}: unknown key; {hint}")
            elif e["type"] == "missing":
                lines.append(f"{source}: {path}: required ({_REQUIRED.get(path, 'missing')})")
            else:
                msg = e["msg"].removeprefix("Value error, ")
                lines.append(f"{source}: {path}: {msg}" if path else f"{source}: {msg}")
        raise SpaceError("\n".join(lines)) from None


_REQUIRED = {"name": "a sweep name: the MLflow experiment and the folder under --storage"}
