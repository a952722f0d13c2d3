import json
import warnings

import optuna
import pytest

from sweep.commands.plan import sample_configs
from sweep.spec.space import SpaceError, load_space, parse_space

BASE = {
    "name": "t",
    "data": {"dataset": "synthetic"},
    "early_stopping": {"name": "asha", "max_epochs": 2},
}


def space(**search):
    return {**BASE, "search": search}


def test_every_distribution_and_conditionals_compile_to_define_by_run():
    spec = parse_space(
        space(
            **{
                "model.resizer.enabled": {"choice": [True, False]},
                "model.resizer.n": {"int": [4, 16], "when": {"model.resizer.enabled": True}},
                "loss.name": {"choice": ["ce", "focal"]},
                "loss.gamma": {"uniform": [0.5, 3.0], "when": {"loss.name": ["focal"]}},
                "optim.lr": {"loguniform": [1e-4, 1e-2]},
                "loss.alpha": {"quantized": [0.5, 0.9, 0.1]},
            }
        ),
        "s.yaml",
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    seen = set()
    for _ in range(40):
        t = study.ask()
        spec.define_by_run(t)
        p = t.params
        assert ("model.resizer.n" in p) == p["model.resizer.enabled"]
        assert ("loss.gamma" in p) == (p["loss.name"] == "focal")
        assert 1e-4 <= p["optim.lr"] <= 1e-2 and 4 <= p.get("model.resizer.n", 4) <= 16
        assert round(p["loss.alpha"] * 10) == pytest.approx(p["loss.alpha"] * 10)
        seen.add((p["model.resizer.enabled"], p["loss.name"]))
        cfg = spec.trial_config(p)
        assert cfg.optim.lr == p["optim.lr"] and cfg.train.epochs == 2
    assert len(seen) == 4


@pytest.mark.parametrize(
    "raw, message",
    [
        ({**BASE, "serch": {}}, "serch: unknown key; .*did you mean 'search'"),
        (
            space(**{"optim.lr": {"logunifom": [1, 2]}}),
            "search.optim.lr: unknown distribution 'logunifom'",
        ),
        (
            space(**{"optim.lr": {"uniform": [0.1, 0.01]}}),
            r"search.optim.lr.uniform: low 0.1 > high 0.01",
        ),
        (space(**{"optim.lr": {"loguniform": [0, 1]}}), "loguniform needs low > 0"),
        (
            space(**{"loss.name": {"choice": []}}),
            "search.loss.name.choice: the list of choices is empty",
        ),
        (
            space(**{"loss.gamma": {"uniform": [1, 2], "when": {"loss.nme": "focal"}}}),
            "when.loss.nme: no such parameter",
        ),
        (
            space(
                **{
                    "loss.name": {"choice": ["ce"]},
                    "loss.gamma": {"uniform": [1, 2], "when": {"loss.name": "fcl"}},
                }
            ),
            "'fcl' is not one of",
        ),
        (space(**{"model.resizr.n": {"int": [1, 2]}}), "unknown key 'model.resizr'"),
        (space(**{"loss.name": {"choice": ["ce", "nope"]}}), "unknown loss 'nope'"),
        (
            {**BASE, "early_stopping": {"name": "asha", "max_epochs": 2, "grace_period": 3}},
            "grace_period: 3 > max_epochs 2",
        ),
        (
            {**BASE, "early_stopping": {"name": "pbt"}},
            "early_stopping.name: 'pbt' is not one of asha, fifo",
        ),
        ({**BASE, "budget": {"num_samples": 0}}, "budget.num_samples: expected an integer >= 1"),
        ({**BASE, "resources": {"gpu": 1.5}}, "fractions are allowed below 1 only"),
        ({**BASE, "name": ""}, "name: '' is not a usable sweep name .* letters, digits"),
        ({**BASE, "name": "../x"}, r"name: '\.\./x' is not a usable sweep name"),
        ({**BASE, "name": "it's"}, 'name: "it\'s" is not a usable sweep name'),
        ({k: v for k, v in BASE.items() if k != "name"}, "name: required .*MLflow experiment"),
        ({**BASE, "early_stopping": 3}, "early_stopping: expected a mapping, got 3"),
        (
            {**BASE, "early_stopping": {"name": "fifo", "grace_period": 1}},
            "early_stopping: grace_period: not used by fifo; allowed: name, max_epochs",
        ),
        (
            {**BASE, "budget": {"num_sample": 3}},
            "budget.num_sample: unknown key; .*did you mean 'num_samples'",
        ),
        ({**BASE, "resources": {"cpu": 0}}, "resources.cpu: must be > 0, got 0"),
        ({**BASE, "tracking": {"system_metrics": "yes"}}, "tracking.system_metrics: expected true"),
        (
            {**BASE, "tracking": {"system_metric": False}},
            "tracking.system_metric: unknown key; valid: keep_checkpoints, system_metrics, system_metrics_interval_s",
        ),
        (
            {**BASE, "tracking": {"system_metrics_interval_s": 0.1}},
            "tracking.system_metrics_interval_s: must be >= 1",
        ),
        ({**BASE, "fixed": [1]}, "fixed: expected a mapping of trial-config sections"),
        ([1, 2], "top level must be a mapping"),
        (
            space(**{"data.val_fraction": {"choice": [0.1, 0.2]}}),
            r"search.data.val_fraction: the data are read once .* data.label_mode, data.sr.method",
        ),
        (
            space(**{"data.label_mode": {"uniform": [0, 1]}}),
            r"search.data.label_mode: must be a choice",
        ),
        (
            space(**{"data.sr.scale": {"int": [2, 8]}}),
            r"search.data.sr.scale: must be a choice .*, got int",
        ),
        (space(**{"data.sr.scale": {"choice": [3]}}), "data.sr.scale"),
        ({**BASE, "budget": {"reuse_workers": "yes"}}, "budget.reuse_workers: expected true"),
    ],
)
def test_errors_name_file_key_and_what_is_allowed(raw, message):
    with pytest.raises(SpaceError, match=message) as err:
        parse_space(raw, "bad.yaml")
    assert "bad.yaml" in str(err.value)


def test_asha_rung_inside_the_lr_warmup_warns():
    raw = {
        **BASE,
        "fixed": {**BASE.get("fixed", {}), "scheduler": {"name": "cosine", "warmup_epochs": 2}},
        "early_stopping": {"name": "asha", "grace_period": 2, "max_epochs": 6},
    }
    with pytest.warns(UserWarning, match=r"grace_period 2 <= fixed.scheduler.warmup_epochs 2"):
        parse_space(raw, "warm.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_space({**raw, "early_stopping": {**raw["early_stopping"], "grace_period": 3}}, "ok")
        load_space("demo.yaml")  # grace 2 after a 1-epoch warmup


def test_shipped_spaces_load_and_sample():
    demo = load_space("demo.yaml")
    assert (
        demo.name == "demo"
        and demo.early_stopping.name == "adaptive"
        and demo.budget.num_samples == 8
    )
    assert len(sample_configs(demo, 3)) == 3
    paper = load_space("ferplus_vit.yaml")
    keys = {p.key for p in paper.params}
    assert {"model.backbone", "model.resizer.n", "loss.gamma", "optim.lr"} <= keys
    assert paper.data["dataset"] == "ferplus" and paper.resources.gpu == 0.5
    with pytest.raises(SpaceError, match="not found"):
        load_space("nope.yaml")
    pareto = load_space("demo_pareto")  # two objectives; cost measured at batch 1 and 64
    assert pareto.senses == {"val_acc": "max", "latency_ms": "min"} and pareto.multi_objective
    assert pareto.cost is not None and pareto.cost.batch_sizes == [1, 64]
    assert len({json.dumps(c, sort_keys=True) for c in sample_configs(pareto, 12)}) > 1
    assert {(s.method, s.scale) for s in paper.sr_settings()} == {
        (m, x) for m in ("bicubic", "lanczos") for x in (4, 8)
    }


def test_paper_best_fixes_the_papers_setting():
    spec = load_space("paper_best.yaml")
    assert spec.budget.num_samples == 1 and spec.max_epochs == 100
    cfg = spec.trial_config({"train.seed": 0})
    assert cfg.model.backbone == "swin_base_patch4_window7_224"
    assert cfg.model.stn == "paper" and cfg.model.resizer.enabled and cfg.model.pretrained == "hub"
    assert (cfg.model.head, cfg.model.head_hidden, cfg.model.dropout) == ("mlp", 512, 0.5)
    a = cfg.augment  # the reference code's "Hard DA"
    assert (a.flip, a.rotate_deg, a.rotate_extra_deg, a.zoom, a.erase) == (0.5, 45, 15, 1.2, 0)
    assert (a.brightness, a.contrast, a.scale, a.translate) == (0.4, 0.4, 0, 0)
    assert (cfg.loss.name, cfg.loss.alpha, cfg.loss.gamma) == ("fpdls", 0.8, 2.0)
    assert (cfg.optim.name, cfg.optim.lr) == ("adam", 1e-4)
    assert (cfg.scheduler.name, cfg.scheduler.step_size, cfg.scheduler.gamma) == ("step", 15, 0.25)
    assert cfg.train.batch_size == 64 and cfg.train.epochs == 100
    # x8: the reference STN is built for 384 px (48 x 8) and its resizer maps 384 -> 224
    assert (cfg.data.sr.method, cfg.data.sr.scale) == ("bicubic", 8)


def test_relative_sqlite_uri_becomes_absolute(tmp_path, monkeypatch):
    from sweep.tracking import tracking_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_unknown_backbone_is_caught_at_parse_time_with_suggestions():
    raw = space(
        **{"model.backbone": {"choice": ["vit_base_patch16_224", "swin_base_patch4_window7_22"]}}
    )
    with pytest.raises(
        SpaceError,
        match="search.model.backbone: timm does not know backbone 'swin_base_patch4_window7_22'.*swin_base_patch4_window7_224",
    ):
        parse_space(raw, "bad.yaml")


def test_building_trial_configs_never_changes_the_spec():
    raw = space(**{"model.resizer.n": {"int": [4, 16]}, "loss.gamma": {"uniform": [0.5, 3.0]}})
    raw["fixed"] = {"model": {"resizer": {"n": 8}}}
    spec = parse_space(raw, "s.yaml")  # parsing builds a config per bound and choice
    assert spec.fixed == {"model": {"resizer": {"n": 8}}}
    assert spec.trial_config({"model.resizer.n": 16}).model.resizer.n == 16
    assert spec.trial_config({}).model.resizer.n == 8


def test_top_level_scheduler_is_the_deprecated_name_of_early_stopping():
    old = {k: v for k, v in BASE.items() if k != "early_stopping"}
    old["scheduler"] = {"name": "asha", "max_epochs": 3}
    with pytest.warns(
        DeprecationWarning, match="t.yaml: the top-level key 'scheduler' is deprecated"
    ):
        spec = parse_space({**old, "search": {"optim.lr": {"choice": [0.01]}}}, "t.yaml")
    assert spec.early_stopping.max_epochs == 3 and "scheduler" not in spec.to_dict()
    both = {**BASE, "scheduler": {"name": "fifo"}}
    with pytest.raises(SpaceError, match="t.yaml: scheduler: give early_stopping only"):
        parse_space(both, "t.yaml")
