"""The trial config: every default in one place, validated once at the edge.

Layers: defaults (this file) -> YAML file -> `--set key.path=value` overrides. An unknown
key or a bad value is a `ConfigError` naming the file, the key path, the value and what is
allowed. The resolved config is saved next to every output (`config.yaml`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nrfer.data import DATASETS
from nrfer.data.labels import LABEL_MODES
from nrfer.errors import ConfigError
from nrfer.registry import suggest

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds both take it


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticConfig(_Section):
    seed: int = Field(0, ge=0, le=MAX_SEED)
    # at most FER2013's named faces per split: each synthetic face carries a real FER+ name
    n_train: int = Field(4000, ge=8, le=28_558)
    n_val: int = Field(600, ge=8, le=3_579)
    n_test: int = Field(600, ge=8, le=3_573)


class SRConfig(_Section):
    """The offline super-resolution stage (nrfer.sr): every split is upscaled once into a
    cache (built on first use, rebuilt when its sources change) before training."""

    method: Literal["none", "bicubic", "lanczos", "model"] = "none"
    scale: Literal[2, 4, 8] = 4
    weights: str | None = None  # method model: a TorchScript file or our SR weights file
    cache_dir: str = "data/sr-cache"
    device: str = "auto"
    batch_size: int = Field(256, ge=1, le=65536)

    @model_validator(mode="after")
    def _weights_needed(self) -> SRConfig:
        if self.method == "model" and not self.weights:
            raise ValueError("data.sr.weights is required for data.sr.method 'model'")
        return self


class DataConfig(_Section):
    dataset: str = "synthetic"  # a name in nrfer.data.DATASETS
    # ferplus: folder with fer2013.csv + fer2013new.csv; folders: the paper's layout;
    # rafdb / affectnet: their released layouts (nrfer/data/rafdb_affectnet.py);
    # synthetic: where the generated CSVs are cached (default data/synthetic-<seed>-<sizes>).
    root: str | None = None
    # folders: the label CSV (default: the one CSV in root); ferplus_folders: optional
    # fer2013new.csv whose (2017) votes replace the folders' label.csv votes, by image name
    label_file: str | None = None
    label_mode: str = "majority"  # nrfer.data.labels.LABEL_MODES
    synthetic: SyntheticConfig = SyntheticConfig()
    image_folder: Literal["aligned", "original"] = "aligned"  # rafdb
    image_size: int | None = Field(None, ge=8, le=1024)  # rafdb / affectnet: resize on read
    val_fraction: float = Field(0.1, gt=0, lt=0.5)  # rafdb / affectnet: val carved from train
    split_seed: int = Field(0, ge=0, le=MAX_SEED)
    sr: SRConfig = SRConfig()

    @model_validator(mode="after")
    def _root_needed(self) -> DataConfig:
        if self.dataset != "synthetic" and not self.root:
            raise ValueError(f"data.root is required for dataset {self.dataset!r}")
        return self

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        return DATASETS.check(v)

    @field_validator("label_mode")
    @classmethod
    def _known_mode(cls, v: str) -> str:
        if v not in LABEL_MODES:
            raise ValueError(f"unknown label mode {v!r}; {suggest(v, list(LABEL_MODES))}")
        return v


class AugmentConfig(_Section):
    """Batched on-device augmentation of training batches (evaluation is never augmented)."""

    enabled: bool = True
    flip: float = Field(0.5, ge=0, le=1)
    rotate_deg: float = Field(10.0, ge=0, le=180)
    # a second, independent rotation (the paper's RandomRotation(45) then RandomAffine(15))
    rotate_extra_deg: float = Field(0.0, ge=0, le=180)
    scale: float = Field(0.1, ge=0, lt=1)  # zoom in [zoom * (1 - scale), zoom * (1 + scale)]
    zoom: float = Field(1.0, gt=0, le=4)  # a fixed zoom factor (the paper: 1.2)
    translate: float = Field(0.08, ge=0, le=0.5)  # fraction of the image size
    brightness: float = Field(0.3, ge=0, le=1)
    contrast: float = Field(0.3, ge=0, le=1)
    erase: float = Field(0.25, ge=0, le=1)  # probability of one random-erasing box
    # the affine warp: what fills the corners a rotation uncovers (border: the nearest edge
    # pixel; black: 0, as torchvision does for the paper) and how pixels are sampled
    fill: Literal["border", "black"] = "border"
    resample: Literal["bilinear", "nearest"] = "bilinear"


class ResizerConfig(_Section):
    enabled: bool = True
    n: int = Field(16, ge=1, le=256)
    r: int = Field(1, ge=0, le=16)
    interpolation: Literal["bilinear", "bicubic", "nearest", "area"] = "bilinear"


class ModelConfig(_Section):
    backbone: str = "vit_tiny_patch16_224"
    backbone_args: dict[str, Any] = Field(default_factory=dict)  # passed to timm.create_model
    # per backbone name, merged over backbone_args when that backbone is the one built: a
    # space searching ViT and Swin gives each its own (ViT's depth, Swin's depths)
    per_backbone_args: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # a weights file, a folder with one file per backbone name, or "hub" (timm's weights in
    # the local Hugging Face cache); never downloaded. None: random initialisation.
    pretrained: str | None = None
    # The size the resizer (or interpolation) produces. None: the backbone's own size
    # (a transformer's img_size); set it for CNNs, which take any size.
    input_size: int | None = Field(None, ge=8, le=1024)
    head: str = "linear"  # a name in nrfer.models.backbone.HEADS
    head_hidden: int = Field(512, ge=1, le=65536)
    dropout: float = Field(0.0, ge=0, lt=1)
    resizer: ResizerConfig = ResizerConfig()
    stn: bool | Literal["paper"] = False  # true: ours (any input size); paper: the reference net

    @field_validator("head")
    @classmethod
    def _known_head(cls, v: str) -> str:
        from nrfer.models.backbone import HEADS

        return HEADS.check(v)

    @property
    def timm_args(self) -> dict[str, Any]:
        """The keyword arguments timm gets for `backbone`."""
        return {**self.backbone_args, **self.per_backbone_args.get(self.backbone, {})}


class LossConfig(_Section):
    name: str = "fpdls"
    alpha: float = Field(0.8, ge=0, le=1)
    gamma: float = Field(2.0, ge=0, le=10)
    smoothing: float = Field(0.1, ge=0, lt=1)
    # K x K rows, or "ferplus" (the FER+ vote prior); default: from the training votes, else
    # (data without votes) the FER+ vote prior restricted to the dataset's classes
    prior: list[list[float]] | Literal["ferplus"] | None = None

    @field_validator("prior")
    @classmethod
    def _a_distribution_per_row(cls, v):
        if not isinstance(v, list):
            return v
        k = len(v)
        if k == 0 or any(len(row) != k for row in v):
            raise ValueError("must be K rows of K values each (one row per class)")
        for i, row in enumerate(v):
            if not all(math.isfinite(x) and x >= 0 for x in row):
                raise ValueError(f"row {i}: values must be finite and >= 0")
            if sum(row) <= 0:
                raise ValueError(f"row {i}: all zero; each row is a class's label distribution")
        return v

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from nrfer.losses import LOSSES

        if v not in LOSSES:
            raise ValueError(f"unknown loss {v!r}; {suggest(v, LOSSES.names())}")
        return v


class OptimConfig(_Section):
    name: str = "adam"  # a name in nrfer.optim.OPTIMIZERS
    lr: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(0.0, ge=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    grad_clip: float | None = Field(None, gt=0)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from nrfer.optim import OPTIMIZERS

        return OPTIMIZERS.check(v)


class SchedulerConfig(_Section):
    name: str = "step"  # a name in nrfer.optim.SCHEDULERS
    step_size: int = Field(15, ge=1, le=10000)  # step: the paper's StepLR(15, 0.25)
    gamma: float = Field(0.25, gt=0, le=1)
    warmup_epochs: int = Field(0, ge=0, le=10000)  # cosine
    # when the schedule steps: after each epoch's training (the PyTorch convention), or
    # before it, as the paper's code does (the first decay one epoch earlier)
    step_at: Literal["epoch_end", "epoch_start"] = "epoch_end"

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from nrfer.optim import SCHEDULERS

        return SCHEDULERS.check(v)


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1, le=10000)
    batch_size: int = Field(64, ge=1, le=65536)
    eval_batch_size: int = Field(256, ge=1, le=65536)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int | None = Field(
        None, ge=1, le=4096
    )  # torch CPU threads (None: torch's default)
    amp: Literal["auto", "off", "bf16"] = "auto"  # auto: bf16 on CUDA, off on CPU
    channels_last: bool = False
    compile: bool = False  # torch.compile the model; falls back to eager if compiling fails
    # deterministic kernels (cuDNN deterministic, no benchmark, cuBLAS workspace, torch's
    # deterministic algorithms; ops without one, e.g. grid_sample's CUDA backward, warn)
    deterministic: bool = False
    # last.pt (model + optimiser state, what a resume continues from) every N epochs and at
    # the last: a ViT-B's is ~1 GB, written on the training thread; a resume after a kill
    # runs the epochs since the last one again (their metrics are logged once)
    checkpoint_every: int = Field(1, ge=1, le=10000)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda") and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"device {v!r} is not one of auto, cpu, cuda, cuda:N")
        return v


class TrialConfig(_Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> leaf values (for tracking params)."""
        return flatten(self.to_dict())


def dotted_value(config: dict, key: str, missing: Any = None) -> Any:
    """A dotted key's value in a nested config dict, also inside the dicts that flat params
    keep whole (model.backbone_args.depth); `missing` when a part is absent."""
    value = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value


# dicts that are one value (timm's keyword arguments), not sections of the config
LEAF_DICTS = ("backbone_args", "per_backbone_args")


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in LEAF_DICTS:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# Config values that name files or folders: made absolute where a run starts, since a sweep's
# trials run in folders of their own ("hub" names the Hugging Face cache, not a path).
PATH_KEYS = ("model.pretrained", "data.root", "data.sr.weights", "data.sr.cache_dir")


def absolute_path(key: str, value: Any, base_dir: str | Path) -> Any:
    """`value` made absolute against `base_dir` when `key` is a path key and it is relative."""
    if key not in PATH_KEYS or not isinstance(value, str) or value == "hub" or not value:
        return value
    return value if Path(value).is_absolute() else str((Path(base_dir) / value).resolve())


def absolute_paths(raw: dict, base_dir: str | Path) -> dict:
    """A nested config dict with every path key made absolute (a new dict)."""
    out = copy.deepcopy(raw)
    for key, value in flatten(raw).items():
        if key in PATH_KEYS and value is not None:
            set_by_path(out, key, absolute_path(key, value, base_dir))
    return out


def fingerprint(d: dict) -> str:
    """sha256 of a config/spec dict in canonical JSON: what a resume checks it continues."""
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def config_diff(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """'key: old -> new' for every dotted key whose value differs (keys in `ignore` skipped)."""
    a, b = flatten(old), flatten(new)
    return [
        f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k) and not any(k == i or k.startswith(i + ".") for i in ignore)
    ]


def set_by_path(d: dict, path: str, value: Any, where: str = "--set") -> None:
    """d['a']['b'] = value for path 'a.b', creating sections on the way."""
    keys = path.split(".")
    if not all(keys):
        raise ConfigError(f"{where}: bad key path {path!r}")
    node = d
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{where}: {path!r}: {k!r} is a value, not a section")
        node = nxt
    node[keys[-1]] = value


def apply_overrides(
    raw: dict,
    items: list[str] | None,
    error: type[ValueError] = ConfigError,
    flat_under: tuple[str, ...] = (),
) -> dict:
    """`--set key.path=value` items on a copy of a config or space file's mapping, in order,
    each set by its path (sections made on the way; a later item wins). Values are parsed
    as YAML (1 -> int, 1e-4 -> float, true -> bool) by the same hardened parser as the files.
    Under a key in `flat_under` the rest of the path is one key (a space's
    `search.optim.lr={loguniform: [1e-4, 1e-2]}`). The one parser of `--set`, for trial
    configs and space files alike."""
    out = copy.deepcopy(raw)
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        where = f"--set {item!r}"
        if not sep or not key:
            raise error(f"{where}: expected key.path=value")
        value = parse_yaml(text, where, error) if text else None
        head, _, rest = key.partition(".")
        if head in flat_under and rest:
            section = out.setdefault(head, {})
            if not isinstance(section, dict):
                raise error(f"{where}: {head}: expected a mapping")
            section[rest] = value
            continue
        try:
            set_by_path(out, key, value, where=where)
        except ConfigError as e:
            raise error(str(e)) from None
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """['a.b=1', 'c=x'] -> nested dict (apply_overrides on an empty mapping)."""
    return apply_overrides({}, items)


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in LEAF_DICTS:
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key {path!r}")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{source}: {path}: {msg}{shown}")
    return "\n".join(lines)


def make_config(raw: dict | None = None, source: str = "config") -> TrialConfig:
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}"
        )
    try:
        return TrialConfig.model_validate(raw or {})
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


MAX_YAML_BYTES = 1 << 20  # a config or space file is a few kB; a megabyte is a mistake
MAX_YAML_DEPTH = 50


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first: int, again: int) -> None:
        super().__init__(f"line {again}: key {key!r} is given twice (lines {first} and {again})")
        self.text = str(self.args[0])


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error (YAML keeps the last one
    silently: a second `budget:` or `optim.lr` would replace the first without a word)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKey(key, seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    pass
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads 1e-4 and 1E-3 as strings: its floats need a dot and a signed
# exponent. YAML 1.2 and every user read them as numbers, so this loader does too.
_UniqueKeyLoader.yaml_implicit_resolvers = {
    k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str, error: type[ValueError] = ValueError):
    """yaml.safe_load without anchors/aliases (a 550-byte "billion laughs" document expands
    to gigabytes), without unbounded nesting, and with the error naming `source`."""
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{source}: {len(text):,} bytes; a config file is at most {MAX_YAML_BYTES:,}")
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            depth += isinstance(event, yaml.CollectionStartEvent)
            depth -= isinstance(event, yaml.CollectionEndEvent)
            if depth > MAX_YAML_DEPTH:
                line = event.start_mark.line + 1
                raise error(f"{source}: line {line}: nested deeper than {MAX_YAML_DEPTH} levels")
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1
                raise error(
                    f"{source}: line {line}: YAML anchors and aliases (&name, *name) are not "
                    "allowed here; write the values out"
                )
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except DuplicateKey as e:
        raise error(f"{source}: {e.text}; keep one") from None
    except yaml.YAMLError as e:
        raise error(f"{source}: not valid YAML: {e}") from None
    except RecursionError:
        raise error(f"{source}: nested too deep to be a config") from None


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    raw = parse_yaml(text, str(path), ConfigError)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}"
        )
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrialConfig:
    raw = read_yaml(path) if path else {}
    source = str(path) if path else "defaults"
    if overrides:
        raw = apply_overrides(raw, overrides)
        source += " + --set"
    return make_config(raw, source)


def save_config(cfg: TrialConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
