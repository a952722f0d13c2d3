"""A real sweep: local Ray runtime on loopback, SQLite MLflow store, tiny synthetic data."""

import json
import re
from pathlib import Path

import pytest
import timm
import torch
import yaml

from helpers import TINY_VIT, tiny_space

pytestmark = pytest.mark.slow


# Credentials a user may have in the environment: none may reach MLflow or the sweep's files.
SECRETS = {
    "MLFLOW_TRACKING_TOKEN": "nrfer-secret-token-5f2a9c",
    "MLFLOW_TRACKING_PASSWORD": "nrfer-secret-password-81be",
    "AWS_ACCESS_KEY_ID": "AKIANRFERSECRET0007",
    "AWS_SECRET_ACCESS_KEY": "nrfer-secret-aws-key-3d4e",
    "HF_TOKEN": "hf_nrferSecretToken42",
}


def test_sweep_tracks_parent_and_nested_trial_runs(
    tmp_path, synthetic_root, run_tiny_sweep, monkeypatch
):
    from mlflow.tracking import MlflowClient

    for k, v in SECRETS.items():  # before Ray starts, so trial workers inherit them too
        monkeypatch.setenv(k, v)

    space = tiny_space(
        "e2e",
        synthetic_root,
        seed=1,
        search={
            "model.resizer.enabled": {"choice": [True, False]},
            "model.resizer.n": {"choice": [4, 8], "when": {"model.resizer.enabled": True}},
            "optim.lr": {"loguniform": [1e-4, 1e-2]},
        },
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": 3},
        budget={"num_samples": 4, "max_concurrent": 2},
    )
    # trials here last seconds; MLflow keeps the best.pt of the top 2 of the 4 trials
    space["tracking"] = {"system_metrics_interval_s": 1, "keep_checkpoints": 2}
    # pretrained weights by a path relative to where the sweep is launched (trials run in
    # folders of their own: the driver makes it absolute)
    space["fixed"]["model"]["pretrained"] = "weights/tiny.pth"
    (tmp_path / "weights").mkdir()
    torch.manual_seed(0)
    backbone = timm.create_model("vit_tiny_patch16_224", num_classes=0, **TINY_VIT)
    torch.save(backbone.state_dict(), tmp_path / "weights" / "tiny.pth")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = run_tiny_sweep(space, uri)  # works in tmp_path: ./weights
    assert summary.num_trials == 4 and summary.num_errors == 0

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("nrfer.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("nrfer.role") == "trial"]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    # the saved view the printed link opens (MLflow 3.17: ?viewStateShareKey=K reads the
    # experiment tag mlflow.sharedViewState.K): this sweep's 4 trials, best first, the
    # metric and both searched keys as columns
    instance = parent.data.tags["nrfer.sweep_instance"]
    view = json.loads(exp.tags[f"mlflow.sharedViewState.nrfer-{instance[:16]}"])
    state = json.loads(view["state"])
    assert view["name"] == "e2e: trials by best_val_acc" and view["createdAt"] > 0
    shown = client.search_runs([exp.experiment_id], state["searchFilter"])
    assert sorted(r.info.run_id for r in shown) == sorted(r.info.run_id for r in children)
    assert state["orderByKey"] == "metrics.`best_val_acc`" and state["orderByAsc"] is False
    columns = set(state["selectedColumns"])
    assert {"metrics.`best_val_acc`", "attributes.`Description`"} <= columns
    assert {f"params.`{k}`" for k in space["search"]} <= columns
    assert all(k in children[0].data.params for k in space["search"])  # the columns have values
    best_by_run, kept_by_run = {}, {}
    for child in children:
        run_id = child.info.run_id
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.tags["nrfer.pretrained"] == str(tmp_path / "weights" / "tiny.pth")
        # what the load did: every backbone tensor, no head in a headless file, nothing resampled
        assert child.data.tags["nrfer.pretrained.file"] == str(tmp_path / "weights" / "tiny.pth")
        assert child.data.tags["nrfer.pretrained.tensors"] == str(len(backbone.state_dict()))
        assert child.data.tags["nrfer.pretrained.dropped"] == "none"
        # the flat resolved trial config, clean names, no Ray bookkeeping
        assert {"model.resizer.enabled", "optim.lr", "model.backbone", "loss.name"} <= set(
            child.data.params
        )
        assert not {"pid", "timestamp", "time_this_iter_s"} & set(child.data.metrics)
        history = client.get_metric_history(run_id, "val_acc")
        assert 1 <= len(history) <= 3 and [m.step for m in history] == list(range(len(history)))
        for name in ("train_loss", "val_loss", "val_macro_f1"):
            assert len(client.get_metric_history(run_id, name)) == len(history)
        kept = "checkpoint/best.pt" in {a.path for a in client.list_artifacts(run_id, "checkpoint")}
        tag = child.data.tags["nrfer.checkpoint"]
        assert tag.startswith("best.pt kept" if kept else "best.pt not kept"), (kept, tag)
        if kept:  # the weights of the trial's best epoch by validation
            best = torch.load(
                client.download_artifacts(run_id, "checkpoint/best.pt", str(tmp_path)),
                weights_only=True,
            )
            vals = [m.value for m in client.get_metric_history(run_id, "val_acc")]
            assert best["epoch"] == vals.index(max(vals))
            assert best["val_acc"] == pytest.approx(max(vals))
        kept_by_run[run_id] = kept
        assert {a.path for a in client.list_artifacts(run_id, "previews")} == {
            "previews/resizer_grid.png",
            "previews/val_confusion.png",
        }
        early = child.data.tags.get("nrfer.stopped_early")
        assert (early == "true") == (len(history) < 3), (early, len(history))
        best_by_run[run_id] = max(m.value for m in history)
    epochs = sorted(len(client.get_metric_history(c.info.run_id, "val_acc")) for c in children)
    assert epochs[0] < 3, f"ASHA should stop a trial early: {epochs}"
    # retention: best.pt for 2 trials, none worse than a trial without; on disk, nothing of
    # the ended trials (optimiser state, work folders), artifacts beside the store
    assert sum(kept_by_run.values()) == 2
    assert min(best_by_run[r] for r, k in kept_by_run.items() if k) >= max(
        best_by_run[r] for r, k in kept_by_run.items() if not k
    )
    sweep_dir = tmp_path / "storage" / "e2e"
    assert not list(sweep_dir.rglob("checkpoint_*")) and not list(sweep_dir.glob("work/*"))
    assert not list(sweep_dir.rglob("*.pt"))
    assert not (tmp_path / "mlruns").exists()
    stored = sorted(p.name for p in (tmp_path / "mlflow-artifacts").rglob("best.pt"))
    assert stored == ["best.pt", "best.pt"]
    best_run = max(best_by_run, key=best_by_run.get)
    assert parent.data.metrics["best_val_acc"] == pytest.approx(best_by_run[best_run])
    assert parent.data.tags["nrfer.best_trial_run_id"] in {
        r for r, v in best_by_run.items() if v == best_by_run[best_run]
    }
    assert "nrfer.git_commit" in parent.data.tags and "nrfer.version.torch" in parent.data.tags
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {
        "report/leaderboard.csv",
        "report/optimization_history.png",
        "report/learning_curves.png",
        "report/index.html",
    } <= report
    assert_interactive_report(client, parent, children, tmp_path, uri)
    # ASHA's rung records are saved beside the sweep (YAML), for --resume
    state = yaml.safe_load(
        (tmp_path / "storage" / "e2e" / "nrfer_ledger" / "asha_rungs.yaml").read_text()
    )
    recorded = {t for bracket in state["brackets"] for rung in bracket for t in rung["scores"]}
    assert len(recorded) == 4 and (state["metric"], state["mode"]) == ("val_acc", "max")
    # the Optuna study persists next to mlflow.db under the sweep's name; ASHA-stopped trials
    # are PRUNED with one intermediate value per epoch they ran, the others COMPLETE
    import optuna

    assert summary.optuna_storage == f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.load_study(study_name="e2e", storage=summary.optuna_storage)
    assert len(study.trials) == 4
    by_lr = {round(float(c.data.params["optim.lr"]), 12): c for c in children}
    for t in study.trials:
        child = by_lr[round(t.params["optim.lr"], 12)]
        vals = [m.value for m in client.get_metric_history(child.info.run_id, "val_acc")]
        assert [t.intermediate_values[s] for s in sorted(t.intermediate_values)] == vals
        stopped = child.data.tags.get("nrfer.stopped_early") == "true"
        want = optuna.trial.TrialState.PRUNED if stopped else optuna.trial.TrialState.COMPLETE
        assert t.state == want, (t.number, t.state, vals)
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    assert_ui_story(client, exp, parent, children, synthetic_root)
    space_files = {a.path for a in client.list_artifacts(parent.info.run_id, "space")}
    assert {"space/e2e.yaml", "space/resolved_spec.yaml"} <= space_files
    assert_no_secrets(
        client, runs, [tmp_path / "mlflow.db", tmp_path / "mlflow-artifacts", tmp_path / "storage"]
    )


def report_trials(page: str) -> list[dict]:
    """The trials an interactive report embeds (and plots)."""
    import html as html_lib

    m = re.search(r'<script type="application/json" id="nrfer-trials">(.*?)</script>', page, re.S)
    assert m, "no trial data in the report"
    return json.loads(html_lib.unescape(m.group(1)))


def assert_interactive_report(client, parent, children, tmp_path, uri) -> None:
    """report/index.html on the parent run holds every trial, its id, run and values as
    MLflow has them, and needs no network (plotly's JavaScript inside, nothing fetched);
    `nrfer report` writes the same page anywhere."""
    from sweep.commands.report import main as report_main

    page = Path(client.download_artifacts(parent.info.run_id, "report/index.html", str(tmp_path)))
    text = page.read_text()
    shown = {t["run_id"]: t for t in report_trials(text)}
    assert set(shown) == {c.info.run_id for c in children}
    for child in children:
        t = shown[child.info.run_id]
        history = client.get_metric_history(child.info.run_id, "val_acc")
        curve = [m.value for m in sorted(history, key=lambda m: m.step)]
        assert t["trial_id"] == child.data.tags["nrfer.trial_id"] and t["curve"] == curve
        assert t["value"] == pytest.approx(max(curve))
        assert t["params"]["optim.lr"] == pytest.approx(float(child.data.params["optim.lr"]))
        stopped = child.data.tags.get("nrfer.stopped_early") == "true"
        assert t["state"] == ("stopped early" if stopped else "finished")
        assert f"/#/experiments/{parent.info.experiment_id}/runs/{child.info.run_id}" in text
    # offline: no script, style or frame is fetched; plotly's bundle is in the page
    assert not re.search(r'<(script|link|iframe|img)[^>]+(src|href)="(https?:)?//', text)
    assert "Plotly.newPlot" in text and len(text) > 1_000_000
    for heading in ("Optimisation history", "Learning curves", "Parallel coordinates", "Slices"):
        assert f"<h2>{heading}" in text, heading
    assert report_main(["--sweep", "e2e", "--tracking-uri", uri, "--out", str(tmp_path / "r")]) == 0
    again = report_trials((tmp_path / "r" / "index.html").read_text())
    assert {t["run_id"]: t["value"] for t in again} == {k: v["value"] for k, v in shown.items()}


def assert_ui_story(client, exp, parent, children, synthetic_root) -> None:
    """What the MLflow UI shows (issue 16): a training experiment, readable run names and
    descriptions, the dataset on every run, system metrics and the trial's peak memory."""
    from nrfer.data.ferplus import read_ferplus
    from nrfer.data.identity import identity
    from sweep.tracking.ui import short_value

    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # the experiment's description says where the trials view is, as a link the UI opens
    note = exp.tags["mlflow.note.content"]
    key = "nrfer-" + parent.data.tags["nrfer.sweep_instance"][:16]
    assert (
        f"(/#/experiments/{exp.experiment_id}/runs?" in note and f"viewStateShareKey={key})" in note
    )
    assert "`best_val_acc` is a trial's best epoch on validation" in note
    assert parent.data.tags["mlflow.runName"] == "e2e"
    best_name = client.get_run(parent.data.tags["nrfer.best_trial_run_id"]).info.run_name
    assert parent.data.tags["mlflow.note.content"].startswith("Sweep e2e (e2e.yaml): 4 trials")
    assert (
        f"best val_acc {parent.data.metrics['best_val_acc']:.4f}: {best_name}"
        in (parent.data.tags["mlflow.note.content"])
    )
    names = sorted(c.info.run_name for c in children)
    assert [n.split()[0] for n in names] == ["t01", "t02", "t03", "t04"], names
    for c in children:  # the number, then what was sampled: resizer when on, lr=...
        lr = float(c.data.params["optim.lr"])
        on = c.data.params["model.resizer.enabled"] == "True"
        # an inactive key (resizer.n with the resizer off) is not logged: no default shown
        assert ("model.resizer.n" in c.data.params) == on, sorted(c.data.params)
        want = f"resizer resizer.n={c.data.params['model.resizer.n']} " if on else ""
        assert c.info.run_name.split(" ", 1)[1] == f"{want}lr={short_value(lr)}", c.info.run_name
        note = c.data.tags["mlflow.note.content"]
        best = max(m.value for m in client.get_metric_history(c.info.run_id, "val_acc"))
        if c.data.tags.get("nrfer.stopped_early") == "true":
            assert note.startswith(f"best val_acc {best:.4f}; stopped early"), note
        else:
            assert note == f"best val_acc {best:.4f} over 3 of 3 epochs", note
    # the data every run trained on: name, digest of the arrays, split sizes
    ident = identity(read_ferplus(synthetic_root, "majority"))
    for run in [parent, *children]:
        (inp,) = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert (inp.dataset.name, inp.dataset.digest) == (ident["name"], ident["digest"])
        assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
        assert json.loads(inp.dataset.profile)["splits"] == ident["profile"]["splits"]
    # system metrics (MLflow's monitor, every second here) and the trial's own peak memory
    for c in children:
        metrics = client.get_run(c.info.run_id).data.metrics
        assert "system/cpu_utilization_percentage" in metrics, sorted(metrics)
        assert metrics["system/system_memory_usage_megabytes"] > 0
        peak = client.get_metric_history(c.info.run_id, "trial_peak_rss_mb")
        val = client.get_metric_history(c.info.run_id, "val_acc")
        assert [m.step for m in peak] == [m.step for m in val]
        assert 100 < peak[-1].value < 16000  # a torch process: hundreds of MB, not bytes


def assert_no_secrets(client, runs, folders) -> None:
    """No secret value in any run's params, tags or metric names, in any artifact, nor in
    any file of the store or the sweep's storage."""
    secrets = [v.encode() for v in SECRETS.values()]
    for run in runs:
        fields = [*run.data.params.items(), *run.data.tags.items(), *run.data.metrics]
        text = repr(fields).encode()
        assert not [s for s in secrets if s in text], run.info.run_id
    files = [
        f
        for folder in map(Path, folders)
        for f in ([folder] if folder.is_file() else folder.rglob("*"))
        if f.is_file()
    ]
    assert len(files) > 20  # the store, artifacts, Ray's results and checkpoints
    for f in files:
        data = f.read_bytes()
        assert not [s for s in secrets if s in data], f
