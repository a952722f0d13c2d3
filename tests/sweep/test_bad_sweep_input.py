"""Careless and hostile input to launch.py, sweep.commands.best and the replay command: one
`error: <where>: <what>` line, exit 2, in seconds, with nothing written; and the local Ray
set up as the README says (token auth, private temp folder, no AWS keys in runtime envs)."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
import yaml

import launch
from helpers import tiny_space
from procs import free_port
from sweep.commands.best import main as best_main
from sweep.tracking.replay import main as replay_main
from sweep.tracking.store import move_credentials_to_env, redact


def run(main, argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err


@pytest.fixture
def space_file(tmp_path, synthetic_root):
    def write(**changes) -> str:
        space = tiny_space(
            "bad",
            synthetic_root,
            search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
            scheduler={"name": "asha", "max_epochs": 2, "grace_period": 1},
            budget={"num_samples": 2, "max_concurrent": 1},
        )
        for key, value in changes.items():
            node = space
            *parents, last = key.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = value
        path = tmp_path / f"bad-{len(list(tmp_path.glob('bad-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(space))
        return str(path)

    return write


BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *[
            f"{c}: &{c} [{', '.join(['*' + p] * 9)}]"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ],
        "name: bomb",
    ]
)


def test_launch_refuses_bad_names_and_hostile_yaml_before_anything_is_written(
    tmp_path, space_file, capsys
):
    storage, db = tmp_path / "storage", tmp_path / "mlflow.db"
    common = ["--storage", str(storage), "--tracking-uri", f"sqlite:///{db}"]
    (tmp_path / "bomb.yaml").write_text(BOMB)  # 550 bytes that expand to 387 million strings
    (tmp_path / "deep.yaml").write_text("name: deep\nfixed: " + "[" * 5000 + "]" * 5000 + "\n")
    cases = [
        (["--space", space_file(), "--name", "../x"], "--name: '../x' is not a usable sweep name"),
        (["--space", space_file(), "--name", "/abs/x"], "--name: '/abs/x' is not a usable"),
        (["--space", space_file(), "--name", "it's"], '--name: "it\'s" is not a usable'),
        (["--space", str(tmp_path / "bomb.yaml")], "bomb.yaml: line 1: YAML anchors and aliases"),
        (
            ["--space", str(tmp_path / "deep.yaml")],
            "deep.yaml: line 2: nested deeper than 50 levels",
        ),
        (["--space", space_file(**{"resources/cpu": 0})], "resources.cpu: must be > 0, got 0"),
        (["--space", space_file(), "--resume", "--warm-start", "x"], "no sweep named"),
        (
            ["--space", space_file(objectives={"val_acc": "max", "params": "min"})],
            "early_stopping: asha ranks trials by val_acc alone",
        ),
        (
            [
                "--space",
                space_file(
                    early_stopping={"name": "adaptive", "max_epochs": 2, "min_dominating": 2}
                ),
            ],
            "early_stopping.min_dominating: used only with several objectives",
        ),
    ]
    for argv, message in cases:
        t0 = time.perf_counter()
        rc, err = run(launch.main, [*argv, *common], capsys)
        assert rc == 2 and message in err, (argv, err)
        assert len(err) < 2000 and time.perf_counter() - t0 < 10
    assert not db.exists() and not (tmp_path / "x").exists()
    assert not (storage / "bad").exists()
    # --warm-start from a study that does not exist: named, before any data or Ray
    rc, err = run(launch.main, ["--space", space_file(), "--warm-start", "nope", *common], capsys)
    assert rc == 2 and "--warm-start nope: no study of that name in sqlite:///" in err
    assert not db.exists() and not (storage / "bad").exists()


def test_unusable_tracking_uris_fail_fast_before_data_and_ray(tmp_path, space_file, capsys):
    port = free_port()  # nothing listens there
    cases = [
        (f"http://127.0.0.1:{port}", f"'http://127.0.0.1:{port}': no MLflow server answers"),
        (f"http://bob:s3cret@127.0.0.1:{port}", "'http://***@127.0.0.1:"),
        ("file:///tmp/mlruns", "file store is in maintenance mode; use a database"),
        ("ftp://host/x", "unknown scheme 'ftp'"),
        (f"sqlite:///{tmp_path}/missing/dir/m.db", "folder"),
        (f"sqlite:///{tmp_path}", "is a folder; give the database file in it"),
    ]
    for uri, message in cases:
        t0 = time.perf_counter()
        argv = ["--space", space_file(), "--storage", str(tmp_path / "s"), "--tracking-uri", uri]
        rc, err = run(launch.main, argv, capsys)
        assert rc == 2 and "--tracking-uri" in err and message in err, (uri, err)
        assert "s3cret" not in err
        assert time.perf_counter() - t0 < 15  # it used to wait 100+ s after loading the data
        assert not (tmp_path / "s" / "bad").exists()  # no sweep state, no Ray


def test_dry_run_builds_every_model_shape_and_runs_a_batch(space_file, capsys):
    # a patch grid that does not tile the input: edge pixels would be dropped silently
    grid = space_file(**{"fixed/model/backbone_args/img_size": 36})
    rc, err = run(launch.main, ["--space", grid, "--dry-run"], capsys)
    assert rc == 2 and "the input size must be a multiple of the patch size" in err
    # an input size the backbone was not built for: passes the parser, fails on a batch
    size = space_file(
        **{"fixed/model/input_size": 64, "search/model.resizer.enabled": {"choice": [True]}}
    )
    rc, err = run(launch.main, ["--space", size, "--dry-run"], capsys)
    assert rc == 2 and "sample 1" in err and "builds a model that fails on a 1x48x48 input" in err
    rc = launch.main(["--space", space_file(), "--dry-run"])
    out = capsys.readouterr().out
    assert (
        rc == 0
        and "vit_tiny_patch16_224, resizer n=16, stn off, head linear, on 1x48x48: ok" in out
    )


def test_replay_best_and_predict_inputs(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    record = tmp_path / "trial.jsonl"
    rc, err = run(replay_main, ["replay", str(record), "--tracking-uri", uri], capsys)
    assert rc == 2 and "trial.jsonl: no such record file" in err

    record.write_text('{"run_id": "r", "key": "val_acc"\n')
    rc, err = run(replay_main, ["replay", str(record), "--tracking-uri", uri], capsys)
    assert rc == 2 and "trial.jsonl: line 1: not a metric record" in err

    row = {"run_id": "0" * 32, "key": "val_acc", "value": 0.5, "timestamp": 1, "step": 0}
    record.write_text(json.dumps(row) + "\n")
    rc, err = run(replay_main, ["replay", str(record), "--tracking-uri", uri], capsys)
    assert rc == 2 and f"run {'0' * 32} is not in the store" in err and record.exists()

    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    record.write_text(json.dumps({**row, "run_id": run_id}) + "\n")
    rc, _ = run(replay_main, ["replay", str(record), "--tracking-uri", uri], capsys)
    assert rc == 0 and not record.exists()
    assert [m.value for m in client.get_metric_history(run_id, "val_acc")] == [0.5]

    dead = f"http://127.0.0.1:{free_port()}"
    for main, argv in (
        (replay_main, ["replay", str(record), "--tracking-uri", dead]),
        (best_main, ["--sweep", "x", "--tracking-uri", dead, "--out", str(tmp_path / "o")]),
    ):
        t0 = time.perf_counter()
        rc, err = run(main, argv, capsys)
        assert rc == 2 and "no MLflow server answers" in err and time.perf_counter() - t0 < 15
    rc, err = run(
        best_main, ["--sweep", "nope", "--tracking-uri", uri, "--out", str(tmp_path / "o")], capsys
    )
    assert rc == 2 and "no sweep named 'nope' in the tracking store; sweeps there:" in err
    from sweep.commands.predict import main as predict_main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    rc, err = run(predict_main, ["--model", "models:/missing/1", "x.png"], capsys)
    assert (
        rc == 2 and "--model models:/missing/1: cannot fetch models:/missing/1 from MLflow" in err
    )
    rc, err = run(predict_main, ["--model", "https://example.org/m.pt", "x.png"], capsys)
    assert rc == 2 and "https://example.org/m.pt: a web address; give a local model" in err
    afile = tmp_path / "afile"
    afile.write_text("")
    rc, err = run(best_main, ["--tracking-uri", uri, "--out", str(afile)], capsys)
    assert rc == 2 and "is a file" in err


def test_credentials_leave_the_uri_for_mlflows_variables(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    uri = "https://bob:p%40ss@mlflow.example:5000/prefix"
    assert redact(uri) == "https://***@mlflow.example:5000/prefix"
    assert move_credentials_to_env(uri) == "https://mlflow.example:5000/prefix"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "bob"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "p@ss"
    assert move_credentials_to_env("sqlite:////x/m.db") == "sqlite:////x/m.db"


def test_local_ray_keeps_token_auth_a_private_temp_folder_and_no_aws_copies(monkeypatch):
    import shutil
    import tempfile
    from pathlib import Path

    import ray
    from ray.tune.execution import class_cache

    from sweep.runtime.local_ray import NOT_PROPAGATED, init_ray

    tmp_path = Path(tempfile.mkdtemp(prefix="nr", dir="/tmp"))  # Ray's socket paths are short
    monkeypatch.setenv("NRFER_RAY_TMP", str(tmp_path / "rt"))
    monkeypatch.setenv("RAY_AUTH_MODE", "unset-below")  # restored (removed) after the test
    monkeypatch.delenv("RAY_AUTH_MODE")
    assert init_ray(verbose=0, num_cpus=1)
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode

        assert get_authentication_mode() == AuthenticationMode.TOKEN
        assert stat.S_IMODE((tmp_path / "rt").stat().st_mode) == 0o700
        assert any((tmp_path / "rt" / "r").glob("session_*"))  # Ray's files are in there
        assert not set(NOT_PROPAGATED) & set(class_cache.ENV_VARS_TO_PROPAGATE)
        assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.2"
    finally:
        ray.shutdown()
        shutil.rmtree(tmp_path, ignore_errors=True)
