"""Property test: no YAML document crashes the space parser with anything but SpaceError."""

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep.space import TOP_KEYS, SpaceError, parse_space

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
