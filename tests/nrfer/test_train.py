"""End-to-end fit on small synthetic FER+ (real CSV format, real reader)."""

import json

import pytest

from nrfer.config import ConfigError, make_config
from nrfer.train import fit, main


@pytest.mark.slow
def test_fit_learns_and_reports_every_epoch(tiny_config_dict, tmp_path):
    # a small random-init CNN learns this in seconds; the tiny ViTs need more data and epochs
    model = {"backbone": "resnet10t", "input_size": 48, "resizer": {"enabled": True, "n": 4}}
    cfg = make_config(
        {**tiny_config_dict, "model": model, "train": {**tiny_config_dict["train"], "epochs": 5}}
    )
    seen = []
    result = fit(
        cfg,
        callback=lambda m, paths: seen.append(
            (m, sorted(p.name for p in paths.checkpoint_dir.iterdir()))
        ),
        out_dir=tmp_path / "run",
    )
    assert [m["epoch"] for m, _ in seen] == list(range(5))
    assert all({"train_loss", "val_loss", "val_acc", "val_macro_f1"} <= m.keys() for m, _ in seen)
    assert all(files == ["best.pt", "last.pt"] for _, files in seen)
    assert result.paths["best"] == str(tmp_path / "run" / "checkpoint" / "best.pt")
    assert {"checkpoint_dir", "last", "previews", "config", "result"} <= result.paths.keys()
    best = max(seen, key=lambda s: s[0]["val_acc"])[0]
    assert result.best_val_acc == best["val_acc"] and result.best_epoch == best["epoch"]
    # 8 classes: chance is 1/8; the most frequent class is about a quarter
    assert result.scores.acc > 0.45, result
    assert sum(map(sum, result.scores.confusion)) > 100
    assert (
        json.loads((tmp_path / "run" / "result.json").read_text())["test_acc"] == result.scores.acc
    )


@pytest.mark.slow
def test_same_seed_same_metrics_and_resume_matches_unbroken(tiny_config_dict, tmp_path):
    cfg = make_config(tiny_config_dict)
    full = fit(cfg, out_dir=tmp_path / "full")
    again = fit(cfg, out_dir=tmp_path / "again")
    assert [h["val_loss"] for h in again.history] == [h["val_loss"] for h in full.history]

    # stop after epoch 1 (the callback asks to stop), then resume from its checkpoint
    fit(cfg, callback=lambda m, _: m["epoch"] == 1, out_dir=tmp_path / "part")
    resumed = fit(
        cfg, resume=tmp_path / "part" / "checkpoint" / "last.pt", out_dir=tmp_path / "resumed"
    )
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert [h["val_loss"] for h in resumed.history] == pytest.approx(
        [h["val_loss"] for h in full.history], abs=1e-6
    )
    assert resumed.scores.acc == pytest.approx(full.scores.acc, abs=1e-9)

    # a resume with another config would continue the old optimiser state: refused, naming
    # the key, unless forced; where the run executes (device, threads) may change
    changed = make_config({**tiny_config_dict, "optim": {**tiny_config_dict["optim"], "lr": 0.1}})
    part = tmp_path / "part" / "checkpoint" / "last.pt"
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.003 -> 0\.1.*--force-resume"):
        fit(changed, resume=part, out_dir=tmp_path / "refused")
    assert not (tmp_path / "refused" / "checkpoint" / "last.pt").exists()
    with pytest.warns(UserWarning, match=r"optim\.lr"):
        forced = fit(changed, resume=part, out_dir=tmp_path / "forced", force_resume=True)
    assert [h["epoch"] for h in forced.history] == [0, 1, 2]
    threads = make_config(
        {**tiny_config_dict, "train": {**tiny_config_dict["train"], "num_threads": 1}}
    )
    fit(threads, resume=part, out_dir=tmp_path / "threads")


@pytest.mark.slow
def test_cli_prints_json_summary_last(tiny_config_dict, tmp_path, capsys):
    import yaml

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict))
    assert (
        main(
            [
                "--config",
                str(path),
                "--set",
                "train.epochs=1",
                "--set",
                "model.resizer.enabled=false",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) >= {"best_val_acc", "best_epoch", "test_acc"} and last["best_epoch"] == 0
    # the overrides took effect: the saved config and the run say so
    saved = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1 and saved["model"]["resizer"]["enabled"] is False
    assert tiny_config_dict["model"]["resizer"]["enabled"] is True  # the file said otherwise
    assert last["epochs_run"] == 1


def test_cli_bad_config_is_a_clear_error(tmp_path, capsys):
    assert main(["--set", "loss.name=nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown loss 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_compile_flag_trains_to_the_same_kind_of_result(tiny_config_dict, tmp_path):
    cfg = make_config(
        {**tiny_config_dict, "train": {**tiny_config_dict["train"], "epochs": 1, "compile": True}}
    )
    with_compile = fit(cfg, out_dir=tmp_path / "c")
    eager = fit(
        make_config({**tiny_config_dict, "train": {**tiny_config_dict["train"], "epochs": 1}}),
        out_dir=tmp_path / "e",
    )
    # the compiled path really ran (no silent eager fallback), and eager did not compile
    assert with_compile.compiled is True and eager.compiled is False
    # compiled kernels may round differently; the run must work and land close to eager
    assert with_compile.history[0]["val_loss"] == pytest.approx(
        eager.history[0]["val_loss"], rel=0.05
    )


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_auto_device_falls_back_to_the_cpu_with_one_warning(monkeypatch):
    import warnings

    import torch

    import nrfer.device as train

    monkeypatch.setattr(train, "_warned_no_cuda", False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        devices = [train.resolve_device("auto") for _ in range(3)]
    assert devices == [torch.device("cpu")] * 3
    assert len(caught) == 1 and "CUDA_VISIBLE_DEVICES=1" in str(caught[0].message)
    with pytest.raises(ConfigError, match="train.device is 'cuda:0' but CUDA is not available"):
        train.resolve_device("cuda:0")


def test_last_pt_holds_no_copy_of_the_best_and_a_resume_finds_it_beside(tiny_config_dict, tmp_path):
    """last.pt (every train.checkpoint_every epochs and at the last) is the run state only;
    best.pt says its epoch and val accuracy; a resume into another folder takes the best.pt
    beside the resumed last.pt, and refuses one of another run."""
    import shutil

    import torch

    raw = {**tiny_config_dict, "train": {**tiny_config_dict["train"], "checkpoint_every": 2}}
    cfg = make_config(raw)
    flags = []
    part = tmp_path / "part" / "checkpoint"
    fit(
        cfg,
        callback=lambda m, _: flags.append(m["checkpointed"]) or m["epoch"] == 1,
        out_dir=part.parent,
    )
    assert flags == [False, True]
    state = torch.load(part / "last.pt", weights_only=True)
    best = torch.load(part / "best.pt", weights_only=True)
    assert "best_model" not in state and state["epoch"] == 1
    assert (best["epoch"], best["val_acc"]) == (state["best_epoch"], state["best_val_acc"])
    weights = sum(t.numel() * t.element_size() for t in best["model"].values())
    # weights + AdamW's two slots, no second copy of the weights (before: over 4x the weights)
    assert (part / "last.pt").stat().st_size < 3.5 * weights  # + small-tensor headers

    full = fit(cfg, out_dir=tmp_path / "full")
    assert [h["checkpointed"] for h in full.history] == [False, True, True]
    resumed = fit(cfg, resume=part / "last.pt", out_dir=tmp_path / "resumed")
    assert (resumed.best_epoch, resumed.scores.acc) == (full.best_epoch, full.scores.acc)
    again = torch.load(tmp_path / "resumed" / "checkpoint" / "best.pt", weights_only=True)
    assert again["epoch"] == full.best_epoch

    other = tmp_path / "other" / "checkpoint"  # a best.pt that is not this run's
    shutil.copytree(part, other)
    torch.save({**best, "epoch": 1 - state["best_epoch"]}, other / "best.pt")
    with pytest.raises(
        ConfigError, match=rf"{other / 'best.pt'} holds epoch .* not from the same run"
    ):
        fit(cfg, resume=other / "last.pt", out_dir=tmp_path / "x")
    (other / "best.pt").unlink()  # and none at all: said where it looked
    with pytest.raises(ValueError, match=r"best weights \(epoch \d\) are not at .*other"):
        fit(cfg, resume=other / "last.pt", out_dir=tmp_path / "y")
