"""Every `--set` example the README, the docs and the help texts show is parsed here as its
command parses it, and numbers read as numbers (1e-4 is a float, not a string)."""

import re

import pytest

from helpers import REPO

PATTERN = re.compile(r"--set\s+(?:'([^']+)'|\"([^\"]+)\"|([A-Za-z_][\w.]*=[^\s`)',\"]+))")
PLACEHOLDERS = {"key", "key.path"}
SPACE_SECTIONS = {"budget", "fixed", "search", "early_stopping", "data", "tracking", "resources"}
CONFIG_SECTIONS = {"model", "train", "optim", "loss", "augment", "scheduler"}


def examples() -> list[tuple[str, str]]:
    files = [REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").glob("*.md"))]
    files += sorted((REPO / "sweep").rglob("*.py")) + sorted((REPO / "nrfer").glob("*.py"))
    out = []
    for path in files:
        text = " ".join(path.read_text(encoding="utf-8").split())  # examples wrap lines
        for m in PATTERN.finditer(text):
            item = next(g for g in m.groups() if g)
            key = item.split("=", 1)[0]
            if "=" in item and key not in PLACEHOLDERS and "{" not in key:
                out.append((path.relative_to(REPO).as_posix(), item))
    return sorted(set(out))


EXAMPLES = examples()


def test_the_examples_are_found():
    items = {item for _, item in EXAMPLES}
    assert "search.optim.lr={loguniform: [1e-4, 1e-2]}" in items
    assert "early_stopping.max_epochs=2" in items and "image_size=48" in items
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize(("where", "item"), EXAMPLES)
def test_every_documented_set_example_is_accepted(where, item):
    from nrfer.config import load_config, make_config, parse_overrides
    from sweep.spec.space import load_space

    section = item.split("=", 1)[0].split(".", 1)[0]
    if section in SPACE_SECTIONS:  # nrfer sweep --set
        load_space("demo", [item])
    elif section in CONFIG_SECTIONS:  # nrfer train --set
        load_config(REPO / "nrfer" / "configs" / "demo.yaml", [item])
    else:  # nrfer evaluate --set: keys of the data section
        make_config({"data": parse_overrides([item])})


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-4", 1e-4), ("1E-3", 1e-3), (".5", 0.5), ("+2e-5", 2e-5), ("1.0e-3", 1e-3)],
)
def test_numbers_read_as_numbers_in_space_files_and_set(text, value, tmp_path):
    from nrfer.config import parse_overrides
    from sweep.spec.space import load_space

    spec = load_space("demo", [f"search.optim.lr={{loguniform: [{text}, 1]}}"])
    (lr,) = [p for p in spec.params if p.key == "optim.lr"]
    assert lr.args[0] == value and isinstance(lr.args[0], float)
    assert parse_overrides([f"optim.lr={text}"]) == {"optim": {"lr": value}}
    (tmp_path / "s.yaml").write_text(
        f"name: numbers\nsearch:\n  optim.lr: {{loguniform: [{text}, 1]}}\n"
        f"fixed:\n  optim: {{weight_decay: {text}}}\n"
    )
    spec = load_space(tmp_path / "s.yaml")
    assert spec.params[0].args[0] == value
    assert spec.trial_config({"optim.lr": 0.5}).optim.weight_decay == value
