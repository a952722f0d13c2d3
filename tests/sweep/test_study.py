"""Studies: the grid (every valid cell once per seed), the table from MLflow (means, stds,
failed cells, McNemar on the stored predictions), a real study end to end with an extra
evaluation set, and a killed study resumed without rerunning finished runs."""

import csv
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from helpers import REPO, TINY_VIT, leak_audit, write_rafdb
from sweep.analysis.significance import mcnemar_exact, mean_std
from sweep.spec.space import SpaceError, parse_space

GRID = {
    "model.backbone": {"choice": ["vit_tiny_patch16_224", "vit_small_patch16_224"]},
    "model.resizer.enabled": {"choice": [False, True]},
    "model.resizer.n": {"choice": [4, 8], "when": {"model.resizer.enabled": True}},
    "loss.name": {"choice": ["ce", "ls", "pdls", "fpdls"]},
    "loss.alpha": {"choice": [0.7, 0.9], "when": {"loss.name": ["pdls", "fpdls"]}},
}


def study_space(search=GRID, study=None, **extra) -> dict:
    return {
        "name": "study",
        "fixed": {"model": {"backbone_args": dict(TINY_VIT)}},
        "search": search,
        "study": {"seeds": 3, "baseline": {"model.resizer.enabled": False}, **(study or {})},
        **extra,
    }


def test_the_grid_is_every_valid_cell_once_per_seed():
    spec = parse_space(study_space(), "grid.yaml")
    cells = spec.cells()
    # backbone 2 x resizer (off | on with n 4, 8) 3 x loss (ce, ls | pdls, fpdls x alpha 2) 6
    assert len(cells) == 2 * 3 * 6 == 36
    assert len({json.dumps(c, sort_keys=True) for c in cells}) == 36
    for c in cells:  # conditions honoured: a key only where its when: holds
        assert ("model.resizer.n" in c) == c["model.resizer.enabled"]
        assert ("loss.alpha" in c) == (c["loss.name"] in ("pdls", "fpdls"))
    grid = spec.grid()
    assert len(grid) == 36 * 3 == spec.budget.num_samples
    assert [r["train.seed"] for r in grid] == [0] * 36 + [1] * 36 + [2] * 36
    assert [{k: v for k, v in r.items() if k != "train.seed"} for r in grid[36:72]] == cells
    assert spec.early_stopping.name == "fifo" and spec.searcher == "grid"
    assert spec.study.rows == "model.backbone"
    # each cell's baseline: the resizer off, every other axis the same
    base = spec.baseline_of(
        {**cells[0], "model.resizer.enabled": True, "model.resizer.n": 8, "loss.name": "ce"}
    )
    assert base == {
        "model.backbone": "vit_tiny_patch16_224",
        "model.resizer.enabled": False,
        "loss.name": "ce",
    }
    assert spec.baseline_of(base) is None
    again = parse_space(spec.to_dict(), "state")  # a resume reads the spec it saved
    assert again.grid() == grid and again.to_dict() == spec.to_dict()
    assert parse_space(study_space(study={"seeds": [5, 9]}), "g").grid()[-1]["train.seed"] == 9


def test_the_grid_searcher_hands_out_each_run_once_and_resumes(tmp_path):
    from ray.tune.search import Searcher

    from sweep.runtime.search import GridSearch

    runs = parse_space(study_space(), "g").grid()
    first = GridSearch(runs, "val_acc", "max")
    got = [first.suggest(f"t{i}") for i in range(50)]
    first.save(str(tmp_path / "grid.pkl"))
    second = GridSearch(runs, "val_acc", "max")
    second.restore(str(tmp_path / "grid.pkl"))
    assert second.suggest("t3") == got[3]  # a trial Tune asks again keeps its run
    got += [second.suggest(f"t{i}") for i in range(50, len(runs))]
    assert got == runs and second.suggest("t999") == Searcher.FINISHED
    other = GridSearch(runs[:-1], "val_acc", "max")
    with pytest.raises(ValueError, match="saved grid differs"):
        other.restore(str(tmp_path / "grid.pkl"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search": {**GRID, "optim.lr": {"loguniform": [1e-4, 1e-2]}}}, "search.optim.lr: a grid"),
        ({"search": {**GRID, "train.seed": {"choice": [0, 1]}}}, "study.seeds"),
        ({"study": {"rows": "loss.nam"}}, "study.rows: 'loss.nam' is not searched"),
        ({"study": {"baseline": {"model.resizer.enabled": "no"}}}, "is not one of"),
        ({"study": {"baseline": {"optim.lr": 0.1}}}, "study.baseline.optim.lr: not searched"),
        (
            {"study": {"baseline": {"model.resizer.enabled": True}}},
            "study.baseline.model.resizer.n",
        ),
        ({"study": {"compare": [{"optim.lr": 0.1}]}}, "study.compare[0].optim.lr: not searched"),
        ({"study": {"compare": [{"loss.name": "focal"}]}}, "study.compare[0].loss.name: 'focal'"),
        ({"study": {"compare": [{}]}}, "study.compare[0]: expected {searched key: value}"),
        ({"study": {"seeds": 0}}, "study.seeds"),
        ({"study": {"seeds": [1, 1]}}, "listed twice"),
        ({"budget": {"num_samples": 10}}, "36 cells x 3 seeds = 108"),
        ({"searcher": "tpe"}, "searcher: a study runs every cell"),
        ({"study": {"eval_sets": [{"name": "x", "dataset": "rafdbb"}]}}, "rafdbb"),
        (
            {"study": {"eval_degradations": {"pixelate": [4]}}},
            "study.eval_degradations: eval_degradations: 'pixelate:4' is not KIND:SEVERITY",
        ),
        (
            {"study": {"eval_degradations": {"lowres": [4, 96]}}},
            "lowres:96 is larger than the faces (48x48 px)",
        ),
    ],
)
def test_a_bad_study_names_the_key(change, message):
    raw = study_space()
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if key == "study" else value
    with pytest.raises(SpaceError, match=re.escape(message)):
        parse_space(raw, "bad.yaml")


# --- the table from a real MLflow store -----------------------------------------------------


def fake_study(tmp_path, compare=None, one_seed_cell=None, open_cell=None):
    """A study's runs written into a real SQLite MLflow store, with hand-set metrics and
    test predictions: cell resizer-on beats the baseline on 32 faces; one cell failed;
    `one_seed_cell`: that cell's seed 1 failed too; `open_cell`: that cell's seed 0 was
    closed by an interruption (KILLED) and its seed 1 is still RUNNING."""
    from mlflow.tracking import MlflowClient

    from nrfer.evaluate import save_predictions
    from sweep.analysis.study import CELL_TAG, SEED_TAG
    from sweep.tracking import INSTANCE, ROLE

    search = {
        "model.resizer.enabled": {"choice": [False, True]},
        "loss.name": {"choice": ["ce", "fpdls"]},
    }
    study = {"seeds": 2, **({"compare": compare} if compare else {})}
    spec = parse_space(study_space(search, study, name="fake"), "fake.yaml")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("fake", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp, tags={INSTANCE: "i1", ROLE: "sweep"})
    # as the driver logs the spec: a YAML copy (keys sorted) and the JSON one (file order)
    client.log_dict(parent.info.run_id, spec.to_dict(), "space/resolved_spec.yaml")
    client.log_dict(parent.info.run_id, spec.to_dict(), "space/resolved_spec.json")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 200)
    values = {}
    for seed in (0, 1):
        right = {}
        for i, cell in enumerate(spec.cells()):
            tags = {INSTANCE: "i1", ROLE: "trial", CELL_TAG: json.dumps(cell, sort_keys=True)}
            run = client.create_run(exp, tags={**tags, SEED_TAG: str(seed)}).info.run_id
            if cell == {"model.resizer.enabled": True, "loss.name": "fpdls"} or (
                i == one_seed_cell and seed == 1
            ):
                client.set_terminated(run, "FAILED")  # crashed: no numbers
                continue
            if i == open_cell:
                if seed == 0:
                    client.set_terminated(run, "KILLED")
                continue
            n_right = 100 + 30 * cell["model.resizer.enabled"] + 5 * seed + i
            pred = labels.copy()
            pred[n_right:] = (labels[n_right:] + 1) % 8  # right on the first n_right faces
            right[i] = n_right
            metrics = {
                "best_val_acc": 0.5 + 0.01 * i + 0.003 * seed,
                "test_acc": n_right / 200,
                "test_macro_f1": 0.4 + 0.01 * seed,
                "test_mean_class_acc": 0.45 + 0.02 * seed,
                "test_ece": 0.05 + 0.01 * seed + 0.002 * i,
                "test_nll": 1.2 + 0.1 * seed,
            }
            for k, v in metrics.items():
                client.log_metric(run, k, v, step=2)
                values.setdefault((i, k), []).append(v)
            probs = np.eye(8, dtype=np.float32)[pred]
            path = save_predictions(
                tmp_path / f"p-{run}" / "test.npz", probs, labels, [str(k) for k in range(8)]
            )
            client.log_artifact(run, str(path), "predictions")
            client.set_terminated(run, "FINISHED")
    return spec, client, client.get_run(parent.info.run_id), values, labels


def test_the_table_is_the_runs_metrics_with_failed_cells_and_significance(tmp_path):
    from sweep.analysis.comparisons import ALPHA
    from sweep.analysis.significance import (
        benjamini_hochberg,
        crossed_interval,
        holm,
        paired_t_interval,
    )
    from sweep.analysis.study import study_table
    from sweep.analysis.study_tables import render

    spec, client, parent, values, labels = fake_study(tmp_path)
    read, cells = study_table(client, parent)  # the spec as the parent run has it
    assert read.to_dict() == spec.to_dict()
    # in file order (resizer, then loss), not the YAML copy's sorted order
    assert [c.cell for c in cells] == spec.cells()
    assert list(cells[0].cell) == ["model.resizer.enabled", "loss.name"]
    for i, c in enumerate(cells[:3]):
        assert c.n == 2 and c.seeds == [0, 1] and c.status == "ok"
        for key in ("best_val_acc", "test_acc", "test_macro_f1", "test_mean_class_acc"):
            assert c.stat(key) == pytest.approx(mean_std(values[(i, key)]))
    failed = cells[3]
    assert failed.n == 0 and failed.failed == 2 and failed.shown("test_acc") == "failed"
    # cell 2 (resizer on, ce) against its baseline cell 0 (resizer off, ce)
    on = cells[2]
    (comp,) = on.comparisons
    assert comp.base == {"model.resizer.enabled": False, "loss.name": "ce"}
    assert comp.seeds == [0, 1]
    # seed s: on is right on the first 132 + 5s faces, off on 100 + 5s: +32 faces each seed
    right = {s: np.arange(200) < 132 + 5 * s for s in (0, 1)}
    right_base = {s: np.arange(200) < 100 + 5 * s for s in (0, 1)}
    assert [v["diff"] for v in comp.per_seed.values()] == pytest.approx([0.16, 0.16])
    assert [v["p"] for v in comp.per_seed.values()] == [mcnemar_exact(32, 0)] * 2
    assert comp.pooled_mcnemar == mcnemar_exact(64, 0)
    assert comp.crossed == crossed_interval(right, right_base)
    want = paired_t_interval([0.16, 0.16])
    assert (comp.paired.estimate, comp.paired.low, comp.paired.high) == pytest.approx(
        (want.estimate, want.low, want.high)
    )
    assert comp.p == comp.crossed.p
    assert comp.agreement == "seeds agree 2/2 +"
    # the family: the two comparisons with numbers (cell 1 vs 0: the resizer off both
    # times is the baseline itself, so none; the failed cell 3 has no numbers)
    family = [x for c in cells for x in c.comparisons if x.p is not None]
    assert family == [comp]
    assert comp.p_holm == holm([comp.p])[0] and comp.p_bh == benjamini_hochberg([comp.p])[0]
    assert comp.verdict == ("cell better" if comp.p_holm < ALPHA else "not shown")
    assert cells[0].comparisons == [] and cells[3].comparisons[0].missing == "no finished run"
    tables = render(spec, cells)
    md, tex, csv_text = tables["md"], tables["latex"], tables["csv"]
    assert "| off | ce | 2/2 |" in md and "failed" in md and "2 failed" in md
    m, s = mean_std(values[(2, "test_acc")])
    assert f"{100 * m:.2f} ± {100 * s:.2f}" in md
    boot = comp.interval
    assert f"{100 * boot.estimate:+.2f} [{100 * boot.low:+.2f}, {100 * boot.high:+.2f}]" in md
    assert "over all 1 comparisons of this table" in md and "Δ test, 95% CI (seeds × faces)" in md
    assert "bootstrap" not in md
    assert "With 2 seeds in some cells, intervals are wide" in md
    assert "Seeds needed for 80% power" in md
    assert "\\toprule" in tex and "\\bottomrule" in tex and "$\\pm$" in tex
    rows = [r.split(",") for r in csv_text.strip().splitlines()]
    head = rows[0]
    on_row = dict(zip(head, rows[3], strict=True))
    assert float(on_row["test_acc_mean"]) == pytest.approx(m, abs=1e-6)
    failed_row = dict(zip(head, rows[4], strict=True))
    assert failed_row["test_acc_mean"] == "" and failed_row["status"] == "2 failed"
    comp_rows = list(csv.DictReader(io.StringIO(tables["compare-csv"])))
    got = next(r for r in comp_rows if r["p_crossed"])
    assert float(got["crossed_low"]) == pytest.approx(boot.low, rel=1e-5)
    assert float(got["mcnemar_pooled_test_noise_only"]) == pytest.approx(
        mcnemar_exact(64, 0), rel=1e-5
    )
    assert got["direction"] == "seeds agree 2/2 +"


def test_baselines_on_any_axis_one_seed_cells_and_calibration_columns(tmp_path):
    """study.compare adds a block on the loss axis; a cell with one finished seed shows
    its value with n=1 and no spread, and no interval; calibration columns appear."""
    from sweep.analysis.study import study_table
    from sweep.analysis.study_tables import render

    spec, client, parent, values, labels = fake_study(
        tmp_path, compare=[{"loss.name": "ce"}], one_seed_cell=1
    )
    assert spec.study.baselines == [{"model.resizer.enabled": False}, {"loss.name": "ce"}]
    _, cells = study_table(client, parent)
    blocks = {}
    for c in cells:
        for comp in c.comparisons:
            blocks.setdefault(comp.block, []).append((comp.cell, comp.base))
    # the loss block: each fpdls cell against the same resizer setting with ce
    assert blocks[1] == [
        (
            {"model.resizer.enabled": False, "loss.name": "fpdls"},
            {"model.resizer.enabled": False, "loss.name": "ce"},
        ),
        (
            {"model.resizer.enabled": True, "loss.name": "fpdls"},
            {"model.resizer.enabled": True, "loss.name": "ce"},
        ),
    ]
    one = cells[1]  # resizer off, fpdls: only seed 0 finished
    assert one.n == 1 and one.status == "1 failed"
    value = values[(1, "test_acc")][0]
    assert one.shown("test_acc") == f"{100 * value:.2f} (n=1)"
    (loss_comp,) = one.comparisons
    assert loss_comp.seeds == [0] and loss_comp.p is None and loss_comp.paired is None
    md = render(spec, cells)["md"]
    assert "#### vs loss.name=ce" in md and "#### vs resizer.enabled=off" in md
    assert f"{100 * value:.2f} (n=1)" in md and f"{100 * value:.2f} ± " not in md
    assert "n/a (< 2 seeds)" in md
    assert "With 1 seed in some cells, intervals are wide or absent" in md
    assert "| ECE % | NLL |" in md  # the runs logged calibration
    ece = mean_std(values[(0, "test_ece")])
    assert f"{100 * ece[0]:.2f} ± {100 * ece[1]:.2f}" in md
    csv_rows = list(csv.DictReader(io.StringIO(render(spec, cells)["csv"])))
    assert csv_rows[1]["test_acc_std"] == "" and csv_rows[1]["n_seeds"] == "1"


# --- real studies ----------------------------------------------------------------------------


def tiny_study(synthetic_root, name="study", epochs=2, eval_root=None, degradations=None) -> dict:
    study: dict = {"seeds": 2, "baseline": {"model.resizer.enabled": False}}
    if eval_root is not None:
        study["eval_sets"] = [{"name": "rafdb", "dataset": "rafdb", "root": str(eval_root)}]
    if degradations:
        study["eval_degradations"] = degradations
    return {
        "name": name,
        "data": {"dataset": "synthetic", "root": str(synthetic_root)},
        "fixed": {
            "model": {"backbone": "vit_tiny_patch16_224", "backbone_args": dict(TINY_VIT)},
            "train": {"batch_size": 64, "device": "cpu", "epochs": epochs},
        },
        "search": {
            "model.resizer.enabled": {"choice": [False, True]},
            "model.resizer.n": {"choice": [4], "when": {"model.resizer.enabled": True}},
        },
        "study": study,
        "tracking": {"system_metrics": False},
        "budget": {"max_concurrent": 2},
        "resources": {"cpu": 1},
    }


def study_runs(client, name):
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id])
    return [r for r in runs if r.data.tags.get("nrfer.role") == "trial"]


def cell_seed(run) -> tuple[str, str]:
    return run.data.tags["nrfer.study.cell"], run.data.tags["nrfer.study.seed"]


@pytest.mark.slow
def test_a_real_study_tests_each_run_once_and_tabulates_it(
    run_tiny_sweep, synthetic_root, tmp_path
):
    from mlflow.tracking import MlflowClient

    from nrfer.evaluate import load_predictions

    rafdb = write_rafdb(tmp_path / "RAF-DB", n_per_class=2)
    degradations = {"lowres": [12], "occlude": 0.25}
    summary = run_tiny_sweep(tiny_study(synthetic_root, eval_root=rafdb, degradations=degradations))
    assert summary.num_trials == 4 and summary.num_errors == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = study_runs(client, "study")
    assert len(runs) == 4
    assert sorted(cell_seed(r) for r in runs) == sorted(
        (json.dumps(c, sort_keys=True), str(s))
        for s in (0, 1)
        for c in [
            {"model.resizer.enabled": False},
            {"model.resizer.enabled": True, "model.resizer.n": 4},
        ]
    )
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.params["train.seed"] == r.data.tags["nrfer.study.seed"]
        # test once, at the epoch chosen on val
        history = client.get_metric_history(r.info.run_id, "test_acc")
        assert len(history) == 1
        best_epoch = max(
            range(2),
            key=lambda e: (client.get_metric_history(r.info.run_id, "val_acc")[e].value, -e),
        )
        assert history[0].step == best_epoch
        assert 0 <= r.data.metrics["eval_rafdb_acc"] <= 1
        files = {a.path for a in client.list_artifacts(r.info.run_id, "predictions")}
        degraded = {"predictions/deg_lowres_12.npz", "predictions/deg_occlude_0.25.npz"}
        assert files == {"predictions/test.npz", "predictions/rafdb.npz", *degraded}
        pred = load_predictions(
            client.download_artifacts(r.info.run_id, "predictions/test.npz", str(tmp_path))
        )
        acc = float((pred["probs"].argmax(1) == pred["labels"]).mean())
        assert acc == pytest.approx(r.data.metrics["test_acc"])
        for key in ("lowres_12", "occlude_0.25"):  # the same faces, degraded, at that epoch
            (logged,) = client.get_metric_history(r.info.run_id, f"deg_{key}_acc")
            assert logged.step == history[0].step
            deg = load_predictions(
                client.download_artifacts(
                    r.info.run_id, f"predictions/deg_{key}.npz", str(tmp_path)
                )
            )
            assert (deg["labels"] == pred["labels"]).all()
            right = deg["probs"].argmax(1) == deg["labels"]
            assert right.mean() == pytest.approx(logged.value, abs=0.02)  # float16 ties
            assert (deg["probs"] != pred["probs"]).any()
        rafdb_pred = load_predictions(
            client.download_artifacts(r.info.run_id, "predictions/rafdb.npz", str(tmp_path))
        )
        assert rafdb_pred["probs"].shape == (14, 7)
    # the table: each cell's mean +- std is its runs' metrics
    cells = summary.study_cells
    for c in cells:
        mine = [r for r in runs if json.loads(r.data.tags["nrfer.study.cell"]) == c.cell]
        assert c.n == 2
        by_seed = sorted(mine, key=lambda r: r.data.tags["nrfer.study.seed"])
        for key in ("best_val_acc", "test_acc", "test_macro_f1", "test_mean_class_acc"):
            want = [r.data.metrics[key] for r in by_seed]
            assert c.values[key] == want and c.stat(key) == pytest.approx(mean_std(want))
    on = cells[1]
    (comp,) = on.comparisons
    assert comp.seeds == [0, 1] and comp.p is not None and comp.crossed is not None
    # each degradation column: the same comparison on that condition's predictions
    assert set(on.degraded) == {"lowres:12", "occlude:0.25"} and not cells[0].degraded
    for label, key in (
        ("lowres:12", "deg_lowres_12_acc"),
        ("occlude:0.25", "deg_occlude_0.25_acc"),
    ):
        (under,) = on.degraded[label]
        assert under.seeds == [0, 1] and under.p is not None and under.p_holm == under.p
        want = statistics.fmean(on.values[key]) - statistics.fmean(cells[0].values[key])
        assert under.interval.estimate == pytest.approx(want, abs=0.02)
    md = summary.study_table
    assert (
        "under degradation: Δ test accuracy" in md and "| clean | lowres:12 | occlude:0.25 |" in md
    )
    for c in cells:  # calibration logged once per run, from its test predictions
        assert len(c.values["test_ece"]) == 2 and len(c.values["test_nll"]) == 2
        assert len(c.values["test_vote_tv"]) == 2  # the synthetic set has votes
    assert "rafdb" in summary.study_table
    parent = next(
        r
        for r in client.search_runs([client.get_experiment_by_name("study").experiment_id])
        if r.data.tags.get("nrfer.role") == "sweep"
    )
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/study_table.md", "report/study_table.tex", "report/study_table.csv"} <= report
    assert "report/study_degradations.png" in report  # a line per cell, per degradation
    # the on-demand command prints the same table
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweep.commands.study",
            "table",
            "--sweep",
            "study",
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--format",
            "csv",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = out.stdout.strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("model.resizer.enabled,model.resizer.n,n_seeds")
    # without leaked faces: an audit naming test faces 1, 5 and 9 as twins of train faces
    audit = leak_audit(synthetic_root, tmp_path / "audit.csv", {1: 0, 5: 2, 9: 4})
    out = subprocess.run(
        [sys.executable, "-m", "sweep.commands.study", "table", "--sweep", "study"]
        + ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--exclude", str(audit)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    header, *lines = [x for x in out.stdout.splitlines() if x.startswith("| ")][:3]
    column = [h.strip() for h in header.split("|")].index("test w/o 3 leaked")
    for c, line in zip(cells, lines, strict=True):
        accs = []
        for seed in (0, 1):
            (r,) = [
                r
                for r in runs
                if json.loads(r.data.tags["nrfer.study.cell"]) == c.cell
                and r.data.tags["nrfer.study.seed"] == str(seed)
            ]
            pred = load_predictions(
                client.download_artifacts(r.info.run_id, "predictions/test.npz", str(tmp_path))
            )
            keep = np.ones(len(pred["labels"]), dtype=bool)
            keep[[1, 5, 9]] = False
            accs.append(float((pred["probs"].argmax(1) == pred["labels"])[keep].mean()))
        m, sd = mean_std(accs)
        assert line.split("|")[column].strip() == f"{100 * m:.2f} ± {100 * sd:.2f}"


@pytest.mark.slow
def test_a_killed_study_resumes_without_rerunning_finished_runs(synthetic_root, tmp_path):
    """SIGKILL the driver (and its Ray) once Tune has saved two finished runs; --resume runs
    the rest: every cell x seed exactly once, the finished runs untouched."""
    from mlflow.tracking import MlflowClient

    space = tmp_path / "study.yaml"
    raw = tiny_study(synthetic_root, epochs=3)
    raw["budget"] = {"max_concurrent": 1}
    space.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp_dir = tmp_path / "storage" / "study"

    def launch(*extra, log="log0.txt"):
        cmd = [
            sys.executable,
            "launch.py",
            "--space",
            str(space),
            "--storage",
            str(tmp_path / "storage"),
            "--tracking-uri",
            uri,
            *extra,
        ]
        return subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=open(tmp_path / log, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def tune_status() -> list[str]:
        files = sorted(exp_dir.glob("experiment_state-*.json"))
        try:
            data = json.loads(files[-1].read_text()) if files else {"trial_data": []}
        except (OSError, json.JSONDecodeError):
            return []
        return [json.loads(t)["status"] for t, _ in data["trial_data"]]

    proc = launch()
    deadline = time.time() + 300
    while tune_status().count("TERMINATED") < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "log0.txt").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    client = MlflowClient(uri)
    before = {
        r.info.run_id: (cell_seed(r), r.info.end_time)
        for r in study_runs(client, "study")
        if r.info.status == "FINISHED"
    }
    assert len(before) >= 2
    resumed = launch("--resume", log="log1.txt")
    assert resumed.wait(timeout=400) == 0, (tmp_path / "log1.txt").read_text()[-3000:]
    runs = study_runs(client, "study")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert len({cell_seed(r) for r in runs}) == 4  # every cell x seed once
    after = {r.info.run_id: (cell_seed(r), r.info.end_time) for r in runs}
    for run_id, was in before.items():  # finished runs neither rerun nor touched
        assert after[run_id] == was
        history = client.get_metric_history(run_id, "test_acc")
        assert len(history) == 1
    text = (tmp_path / "log1.txt").read_text()
    assert "2/2" in text and "McNemar" in text


@pytest.mark.slow
def test_label_mode_is_an_axis_each_dataset_read_once(run_tiny_sweep, synthetic_root, tmp_path):
    """data.label_mode as a study axis: the driver reads the data once per mode, each run
    trains on its own mode's labels and logs that dataset."""
    from mlflow.tracking import MlflowClient

    raw = tiny_study(synthetic_root, name="modes", epochs=1)
    raw["search"] = {"data.label_mode": {"choice": ["majority", "crossentropy"]}}
    raw["study"] = {"seeds": 1}
    summary = run_tiny_sweep(raw)
    assert summary.num_trials == 2 and summary.num_errors == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = study_runs(client, "modes")
    modes = {}
    for r in runs:
        (dataset,) = [d.dataset for d in r.inputs.dataset_inputs]
        modes[r.data.params["data.label_mode"]] = json.loads(dataset.profile)
        assert "test_acc" in r.data.metrics
    assert set(modes) == {"majority", "crossentropy"}
    assert {p["label_mode"] for p in modes.values()} == {"majority", "crossentropy"}
    parent = next(
        r
        for r in client.search_runs([client.get_experiment_by_name("modes").experiment_id])
        if r.data.tags.get("nrfer.role") == "sweep"
    )
    assert len(parent.inputs.dataset_inputs) == 2  # one dataset per label mode
    assert [c.n for c in summary.study_cells] == [1, 1]


def test_a_study_refuses_a_warm_start_and_num_samples(tmp_path, synthetic_root, capsys):
    import launch

    space = tmp_path / "study.yaml"
    space.write_text(yaml.safe_dump(tiny_study(synthetic_root)))
    common = ["--space", str(space), "--storage", str(tmp_path / "s")]
    common += ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert launch.main([*common, "--num-samples", "3"]) == 2
    assert (
        "is a study, which runs each of its cells once per seed (4 runs)" in capsys.readouterr().err
    )
    assert launch.main([*common, "--warm-start", "demo"]) == 2
    assert "--warm-start: " in capsys.readouterr().err
    assert not (tmp_path / "s" / "study").exists() or not any(
        (tmp_path / "s" / "study").glob("experiment_state*")
    )


def test_study_plan_prints_the_seeds_each_block_needs(tmp_path, capsys):
    """`nrfer study plan`: per baseline block and over all comparisons, the seeds the
    planner computes from the stored runs' per-seed differences."""
    from sweep.analysis.comparisons import plan
    from sweep.analysis.study import study_table
    from sweep.commands.study import main

    spec, client, parent, _, _ = fake_study(tmp_path, compare=[{"loss.name": "ce"}])
    _, cells = study_table(client, parent)
    comps = [x for c in cells for x in c.comparisons]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["plan", "--sweep", "fake", "--tracking-uri", uri, "--delta", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "detect Δ=5 points" in out[0] and "80% power" in out[0]
    want = plan(comps, 0.05)
    family = sum(bool(c.seeds) for c in comps)
    assert want.comparisons == family >= 2 and f"α=0.05/{family}" in out[0]
    alone = plan(comps, 0.05, family=1)  # planned for one uncorrected test: fewer seeds
    assert alone.seeds is None or want.seeds is None or alone.seeds <= want.seeds
    line = next(x for x in out if x.startswith("  vs all comparisons:"))
    assert line.startswith(f"  vs all comparisons: {want.seeds_text}")
    assert any(x.startswith("  vs resizer.enabled=off:") for x in out)
    assert any(x.startswith("  vs loss.name=ce:") for x in out)
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--sweep", "fake", "--tracking-uri", uri, "--delta", "0"])
    assert exit_.value.code == 2
    assert "expected a number in (0, 100], got '0'" in capsys.readouterr().err


def test_interrupted_runs_are_interrupted_never_failed(tmp_path):
    """A run an interruption closed (KILLED) is "interrupted", with how to resume; one still
    RUNNING is running while the study runs and interrupted in the driver's final table."""
    from sweep.analysis.study import collect, study_table
    from sweep.analysis.study_tables import render

    spec, client, parent, _, _ = fake_study(tmp_path, open_cell=1)
    _, cells = study_table(client, parent)
    cell = cells[1]
    assert (cell.interrupted, cell.running, cell.failed) == (1, 1, 0)
    assert cell.status == "1 interrupted (resume with --resume), 1 running"
    assert cell.shown("test_acc") == "interrupted"
    md = render(spec, cells)["md"]
    assert f"nrfer sweep --space {spec.source} --sweep fake --resume" in md
    from sweep.tracking import INSTANCE, ROLE
    from sweep.tracking.store import find_runs

    runs = find_runs(client, parent.info.experiment_id, {INSTANCE: "i1", ROLE: "trial"})
    done = collect(spec, runs, driver_done=True)[1]
    assert (done.interrupted, done.running) == (2, 0)
    assert done.status == "2 interrupted (resume with --resume)"
