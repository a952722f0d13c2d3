"""Several objectives through the whole product: the space file's `objectives:`, each trial's
measured cost, Optuna's multi-objective study through Tune, the Pareto front in the
leaderboard, the report, the terminal and MLflow, and `nrfer best --pick` retraining the
point it names."""

import csv
import json
import math

import pytest
import yaml

from helpers import tiny_space
from sweep.spec.params import SpaceError
from sweep.spec.space import parse_space

pytestmark = pytest.mark.slow


def test_objectives_in_the_space_file_and_their_errors():
    base = {"name": "o", "data": {"dataset": "synthetic"}, "search": {}}
    spec = parse_space({**base, "objectives": {"latency_ms": "min", "val_loss": "min"}})
    assert spec.metric == "val_loss" and spec.mode == "min" and spec.multi_objective
    assert spec.cost is not None and spec.cost.batch_sizes == [1, 64]
    assert spec.senses == {"latency_ms": "min", "val_loss": "min"}
    single = parse_space(base)
    assert single.senses == {"val_acc": "max"} and not single.multi_objective
    assert "objectives" not in single.to_dict()  # a sweep's saved state reads as before
    for bad, message in [
        ({"objectives": {"val_acc": "max"}}, "give two or more"),
        ({"objectives": {"val_acc": "max", "flops": "min"}}, "did you mean 'gflops'"),
        ({"objectives": {"params": "min", "gflops": "min"}}, "one must be a validation metric"),
        ({"objectives": {"val_acc": "max", "params": "min"}, "metric": "val_loss"}, "not one of"),
        (
            {"objectives": {"val_acc": "max", "latency_ms": "min"}, "cost": {"batch_sizes": [8]}},
            "objectives.latency_ms: batch 1 is not measured",
        ),
        ({"objectives": {"val_acc": "max", "params": "min"}, "searcher": "grid"}, "a study"),
    ]:
        with pytest.raises(SpaceError, match=message):
            parse_space({**base, **bad})


def test_a_two_objective_sweep_finds_marks_and_picks_its_front(
    run_tiny_sweep, synthetic_root, tmp_path, capsys
):
    import optuna
    from mlflow.tracking import MlflowClient

    from nrfer.config import make_config
    from nrfer.cost import count_params
    from nrfer.models import build_model
    from sweep.analysis.pareto import dominates, pareto_front
    from sweep.analysis.report import print_pareto
    from sweep.commands.best import main as best_main
    from sweep.runtime.summary import SweepSummary

    space = tiny_space(
        "pareto",
        synthetic_root,
        resizer={"enabled": False, "n": 1},
        search={
            "model.resizer.enabled": {"choice": [False, True]},
            "optim.lr": {"loguniform": [1e-3, 1e-2]},
        },
        # adaptive with its bound at -1: after 3 full trials the rung goes to epoch 1, where
        # the later trials are stopped by dominance (sweep.runtime.stopping.dominance)
        scheduler={
            "name": "adaptive",
            "max_epochs": 2,
            "min_trials": 3,
            "min_rank_correlation": -1,
        },
        budget={"num_samples": 5, "max_concurrent": 2},
    )
    space["objectives"] = {"val_acc": "max", "params": "min"}
    space["cost"] = {"batch_sizes": [1, 4], "repeats": 3, "warmup": 1}
    space["searcher"] = "nsga2"
    summary: SweepSummary = run_tiny_sweep(space)
    assert summary.num_trials == 5 and summary.num_errors == 0

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("pareto")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("nrfer.role") == "sweep")
    trials = [r for r in runs if r.data.tags.get("nrfer.role") == "trial"]
    points, by_trial = [], {}
    for run in trials:
        m = run.data.metrics
        cfg = make_config(
            yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config.yaml")).read()),
            "trial",
        )
        # parameters counted on the trial's own architecture; latency per batch, batch 1's
        # as latency_ms; GFLOPs of one face
        assert m["params"] == count_params(build_model(cfg.model, 8, (48, 48)))
        assert m["latency_ms"] == m["latency_ms_b1"] > 0 and m["latency_ms_b4"] > 0
        assert 0 < m["gflops"] < 1
        val = max(x.value for x in client.get_metric_history(run.info.run_id, "val_acc"))
        tid = run.data.tags["nrfer.trial_id"]
        by_trial[tid] = {"val_acc": val, "params": m["params"], "run": run, "cfg": cfg}
        points.append({"val_acc": val, "params": m["params"]})
    # each architecture is measured once: trials with the same one share its latency
    costs = list((tmp_path / "storage" / "pareto" / "costs").glob("*.json"))
    archs = {t["cfg"].model.resizer.enabled for t in by_trial.values()}
    assert len(costs) == len(archs)
    for enabled in archs:
        same = {
            t["run"].data.metrics["latency_ms"]
            for t in by_trial.values()
            if t["cfg"].model.resizer.enabled == enabled
        }
        assert len(same) == 1
    # each measured alone on its device, the load at that moment beside it (on the run and
    # in the record a later trial of the same architecture reads)
    for t in by_trial.values():
        load = json.loads(t["run"].data.tags["nrfer.cost_load"])
        assert load["alone_on_device"] is True and load["other_trials_training"] == 0
        assert 0 <= load["cpu_busy_percent"] <= 100 and load["waited_for_other_trials_s"] >= 0
    for path in costs:
        assert json.loads(path.read_text())["load"]["alone_on_device"] is True

    # the front, worked from the runs' own values, is what the sweep marked everywhere
    senses = {"val_acc": "max", "params": "min"}
    front = {trials[i].data.tags["nrfer.trial_id"] for i in pareto_front(points, senses)}
    assert {r["trial_id"] for r in summary.pareto} == front
    assert all(
        r["objectives"]["params"] == by_trial[r["trial_id"]]["params"] for r in summary.pareto
    )
    assert summary.pareto_of == 5
    for tid, t in by_trial.items():
        tag = t["run"].data.tags.get("nrfer.front_rank")
        assert (tag == "1") == (tid in front), (tid, tag)
    assert parent.data.metrics["pareto_front_size"] == len(front)
    report = client.download_artifacts(parent.info.run_id, "report")
    with open(f"{report}/pareto_front.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["trial_id"] for r in rows} == front
    assert [float(r["val_acc"]) for r in rows] == sorted(
        (float(r["val_acc"]) for r in rows), reverse=True
    )
    with open(f"{report}/leaderboard.csv") as f:
        board = list(csv.DictReader(f))
    assert {r["trial_id"] for r in board if r["front_rank"] == "1"} == front
    assert all(float(r["params"]) == by_trial[r["trial_id"]]["params"] for r in board)
    import os

    assert os.path.getsize(f"{report}/pareto_front.png") > 5000
    page = open(f"{report}/index.html", encoding="utf-8").read()  # the interactive report
    assert "<h2>Pareto front</h2>" in page
    assert f"{len(front)} of 5 trials on the Pareto front" in page

    # Optuna's study has both objectives, named, and each finished trial's values
    study = optuna.load_study(study_name="pareto", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val_acc", "params"]
    done = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    pruned = study.get_trials(states=[optuna.trial.TrialState.PRUNED])
    ran = {
        tid: len(client.get_metric_history(t["run"].info.run_id, "val_acc"))
        for tid, t in by_trial.items()
    }
    assert len(done) == sum(n == 2 for n in ran.values()) and len(pruned) == 5 - len(done)
    assert all(len(t.values) == 2 for t in done)
    full = sorted(t["params"] for tid, t in by_trial.items() if ran[tid] == 2)
    assert sorted(t.values[1] for t in done) == full

    # the rung at epoch 1, placed after 3 full trials, and each later trial's fate there as
    # the rule gives it: stopped when half the trials recorded before it dominate it
    record = yaml.safe_load(
        (tmp_path / "storage" / "pareto" / "nrfer_ledger" / "early_stopping.yaml").read_text()
    )
    assert record["choice"]["epoch"] == 1 and record["choice"]["min_dominating"] == 1
    assert record["pruner"]["rungs"] == [1] and record["pruner"]["fraction"] == 0.5
    at_rung = record["pruner"]["records"][1]
    assert set(at_rung) == set(by_trial)
    order, stopped = list(at_rung), []
    for k, tid in enumerate(order):
        point = at_rung[tid]
        assert point["params"] == by_trial[tid]["params"]
        first = client.get_metric_history(by_trial[tid]["run"].info.run_id, "val_acc")
        assert point["val_acc"] == next(m.value for m in first if m.step == 0)
        if tid in record["completed"]:
            continue  # the 3 that decided: replayed, never stopped
        beaten = sum(dominates(at_rung[o], point, senses) for o in order[:k])
        if beaten < max(1, math.ceil(0.5 * k)):  # not stopped at the rung: ran to the end
            assert ran[tid] == 2, (tid, beaten, k)
        else:
            stopped.append(tid)
    # a stopped trial ran 1 epoch, but for one running when the rung was placed: stopped at
    # its next result, which may be its last (max_concurrent 2)
    assert sum(ran[t] == 2 for t in stopped) <= 1, (stopped, ran)

    capsys.readouterr()
    print_pareto(summary, senses)
    shown = capsys.readouterr().out
    assert f"Pareto front (val_acc max, params min): {len(front)} of 5 trials" in shown
    assert "--pick 'max val_acc where params <=" in shown

    # --pick: the most accurate trial under a parameter bound, retrained and registered
    sizes = sorted({t["params"] for t in by_trial.values()})
    bound = sizes[0] + 1  # only the smaller architecture qualifies
    admitted = {tid: t for tid, t in by_trial.items() if t["params"] < bound}
    expected = max(admitted, key=lambda tid: admitted[tid]["val_acc"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "picked"
    pick = f"max val_acc where params < {bound:g}"
    common = ["--sweep", "pareto", "--tracking-uri", uri, "--seeds", "1", "--parallel", "no"]
    assert best_main([*common, "--out", str(out), "--pick", pick]) == 0
    said = capsys.readouterr().out
    assert f"--pick '{pick}': trial {expected}" in said
    result = json.loads((out / "report.json").read_text())
    assert [c["trial_id"] for c in result["candidates"]] == [expected]
    assert result["pick"] == pick
    # a bound no trial meets, a bad expression, --pick with --top: one line each, exit 2
    assert (
        best_main([*common, "--out", str(tmp_path / "x"), "--pick", "max val_acc where params < 1"])
        != 0
    )
    assert "no trial meets params < 1 (of 5 trials)" in capsys.readouterr().err
    assert best_main([*common, "--out", str(tmp_path / "y"), "--pick", "best val_acc"]) != 0
    assert "expected 'max|min OBJECTIVE" in capsys.readouterr().err
    assert best_main([*common, "--out", str(tmp_path / "z"), "--top", "2", "--pick", pick]) != 0
    assert "--pick chooses one trial" in capsys.readouterr().err
