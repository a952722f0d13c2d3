"""Property test: no YAML document crashes the space parser with anything but SpaceError."""

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep.spec.sections import TOP_KEYS
from sweep.spec.space import SpaceError, parse_space

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(
        ["asha", "fifo", "choice", "uniform", "loguniform", "int", "quantized", "val_acc"]
    ),
)
keys = st.one_of(
    st.sampled_from(
        [
            *TOP_KEYS,
            "when",
            "choice",
            "uniform",
            "optim.lr",
            "loss.name",
            "model.backbone",
            "max_epochs",
            "num_samples",
            "cpu",
            "gpu",
            "dataset",
        ]
    ),
    st.text(max_size=6),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents_give_a_spec_or_a_space_error(doc):
    try:
        parse_space(doc, "random.yaml")
    except SpaceError as e:
        assert "random.yaml" in str(e)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_random_text_through_yaml(text):
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    try:
        parse_space(doc, "random.yaml")
    except SpaceError:
        pass


VALID = {
    "name": "prop",
    "metric": "val_acc",
    "mode": "max",
    "seed": 0,
    "data": {"dataset": "synthetic"},
    "fixed": {"optim": {"name": "adamw", "lr": 0.001}, "train": {"batch_size": 32}},
    "search": {
        "loss.name": {"choice": ["ce", "focal"]},
        "loss.gamma": {"uniform": [0.5, 3.0], "when": {"loss.name": ["focal"]}},
        "optim.lr": {"loguniform": [1e-4, 1e-2]},
    },
    "early_stopping": {"name": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": 4},
    "budget": {"num_samples": 4, "max_concurrent": 2},
    "resources": {"cpu": 1, "gpu": 0},
    "tracking": {"system_metrics": True, "system_metrics_interval_s": 10},
}
FIELDS = [
    ("metric",),
    ("mode",),
    ("seed",),
    ("data", "dataset"),
    ("fixed", "optim", "lr"),
    ("fixed", "train", "batch_size"),
    ("search", "loss.name", "choice"),
    ("search", "loss.gamma", "uniform"),
    ("search", "loss.gamma", "when"),
    ("search", "optim.lr"),
    ("search", "optim.lr", "loguniform"),
    ("early_stopping", "name"),
    ("early_stopping", "grace_period"),
    ("early_stopping", "reduction_factor"),
    ("early_stopping", "max_epochs"),
    ("budget", "num_samples"),
    ("budget", "max_concurrent"),
    ("resources", "cpu"),
    ("resources", "gpu"),
    ("tracking", "system_metrics"),
    ("tracking", "system_metrics_interval_s"),
]
reached: dict[tuple, int] = {}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), documents)
def test_one_wrong_field_in_a_valid_space_is_named(field, value):
    """A valid space with one field replaced: it parses (the value was fine) or the error
    names the file and that field's key."""
    import copy

    doc = copy.deepcopy(VALID)
    node = doc
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = value
    try:
        parse_space(doc, "prop.yaml")
    except SpaceError as e:
        msg = str(e)
        assert "prop.yaml" in msg, msg
        named = [k for k in field if k not in ("fixed", "search")]
        assert any(k in msg for k in named), (field, value, msg)
        reached[field] = reached.get(field, 0) + 1


def test_the_mutation_test_reached_every_field():
    """Run after the property test: each field's checks were exercised by some bad value."""
    if not reached:
        import pytest

        pytest.skip("run together with test_one_wrong_field_in_a_valid_space_is_named")
    assert parse_space(VALID, "prop.yaml").budget.num_samples == 4
    assert len(reached) >= len(FIELDS) - 2, sorted(set(FIELDS) - set(reached))
