import pytest

from nrfer.config import ConfigError, load_config, make_config


def test_defaults_yaml_and_overrides_layer(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("model:\n  resizer: {n: 8}\ntrain: {epochs: 5}\n")
    cfg = load_config(path, ["train.epochs=7", "model.stn=true", "loss.name=pdls"])
    assert (cfg.model.resizer.n, cfg.model.resizer.r, cfg.train.epochs) == (8, 1, 7)
    assert cfg.model.stn is True and cfg.loss.name == "pdls"
    assert cfg.flat()["model.resizer.n"] == 8


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("model: {resizr: {n: 3}}", [], "unknown key 'model.resizr'"),
        ("", ["loss.name=fpdl"], "loss.name: unknown loss 'fpdl'.*did you mean 'fpdls'"),
        ("train: {epochs: 0}", [], "train.epochs: .*greater than or equal to 1 .got 0"),
        (
            "optim: {name: rmsprop}",
            [],
            "optim.name: unknown optimizer 'rmsprop'; valid: adam, adamw, sgd",
        ),
        ("data: {dataset: ferplus}", [], "data.root is required"),
        ("- a\n- b", [], "top level must be a mapping"),
        ("model: {backbone: [", [], "not valid YAML"),
        ("", ["train.epochs"], "expected key.path=value"),
        ("", ["train.device=tpu"], "device 'tpu' is not one of"),
    ],
)
def test_bad_configs_name_the_file_key_and_value(tmp_path, text, overrides, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path, overrides)
    if not overrides:
        assert str(path) in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "key, registry",
    [
        ("model.head", "nrfer.models.backbone:HEADS"),
        ("optim.name", "nrfer.optim:OPTIMIZERS"),
        ("scheduler.name", "nrfer.optim:SCHEDULERS"),
        ("loss.name", "nrfer.losses:LOSSES"),
        ("data.dataset", "nrfer.data:DATASETS"),
    ],
)
def test_config_names_are_the_registry_names(key, registry):
    """The registry is the only list: every registered name is valid, others are refused."""
    import importlib

    module, name = registry.split(":")
    reg = getattr(importlib.import_module(module), name)
    section, field = key.split(".")
    for valid in reg.names():
        extra = {"root": "x"} if section == "data" else {}
        assert (
            getattr(getattr(make_config({section: {field: valid, **extra}}), section), field)
            == valid
        )
    with pytest.raises(ConfigError, match=f"{key}: unknown {reg.kind} 'nope'; valid: "):
        make_config({section: {field: "nope"}})
