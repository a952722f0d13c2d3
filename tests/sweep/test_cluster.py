"""The production stack, for real and on loopback: MLflow on PostgreSQL with its artifacts on
an S3 server (SeaweedFS), a two-node Ray cluster with GPUs declared, one sweep across it, then
`nrfer report`, `nrfer ui` and `nrfer best` against the same stack (docs/cluster.md)."""

import json
import subprocess
import urllib.request

import pytest
import yaml

from helpers import tiny_space
from procs import BIN, S3_SECRET, Stack

pytestmark = pytest.mark.slow
SECRET = "s3cr3t-pw-7781"  # in the tracking URI the driver gets: it must end up nowhere
PG_SECRET = "pg-pw-9923"  # the server's database password


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_postgres_s3_two_nodes_sweep_report_ui_best(tmp_path, synthetic_root):
    import psycopg
    import torch
    from mlflow.tracking import MlflowClient

    # the driver's own HOME and temp folder: what it writes outside --storage shows there
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    stack = Stack(tmp_path, PG_SECRET)
    pg, s3, server_uri = stack.pg, stack.s3, stack.uri
    driver_env = {**stack.env, "HOME": str(home), "TMPDIR": str(tmp)}

    def nrfer(*args, timeout=400):
        out = subprocess.run(
            [str(BIN / "nrfer"), *args],
            cwd=tmp_path,
            env=driver_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out.stdout + out.stderr

    try:
        space = tiny_space(
            "cluster",
            synthetic_root,
            resizer={"enabled": True, "n": 4},
            search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
            scheduler={"max_epochs": 2},  # the shipped rule (adaptive)
            budget={"num_samples": 2, "max_concurrent": 2},
        )
        space["fixed"]["train"]["device"] = "auto"  # a GPU is declared, CUDA is absent
        space["resources"] = {"cpu": 1, "gpu": 0.5}
        space["registered_model"] = "fer-cluster"
        path = tmp_path / "cluster.yaml"
        path.write_text(yaml.safe_dump(space))
        storage = tmp_path / "storage"  # the cluster's shared filesystem
        log = nrfer(
            "sweep",
            "--space",
            str(path),
            "--address",
            stack.address,
            "--tracking-uri",
            server_uri.replace("http://", f"http://nrfer:{SECRET}@"),
            "--storage",
            str(storage),
        )
        assert SECRET not in log and PG_SECRET not in log and S3_SECRET not in log
        assert log.count("CUDA is not available") == 1, log[-3000:]  # said once, not failed

        # PostgreSQL holds every run, its params and each epoch's metrics exactly once
        with psycopg.connect(pg.dsn()) as db:
            (exp_id,) = db.execute(
                "SELECT experiment_id FROM experiments WHERE name = 'cluster'"
            ).fetchone()
            runs = dict(
                db.execute(
                    "SELECT r.run_uuid, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid"
                    " WHERE r.experiment_id = %s AND t.key = 'nrfer.role'",
                    (exp_id,),
                ).fetchall()
            )
            trials = sorted(r for r, role in runs.items() if role == "trial")
            assert sorted(runs.values()) == ["sweep", "trial", "trial"]
            for run_id in trials:
                (status_,) = db.execute(
                    "SELECT status FROM runs WHERE run_uuid = %s", (run_id,)
                ).fetchone()
                assert status_ == "FINISHED"
                params = dict(
                    db.execute(
                        "SELECT key, value FROM params WHERE run_uuid = %s", (run_id,)
                    ).fetchall()
                )
                assert (
                    1e-4 <= float(params["optim.lr"]) <= 1e-2 and params["model.resizer.n"] == "4"
                )
                steps = db.execute(
                    "SELECT step FROM metrics WHERE run_uuid = %s AND key = 'val_acc'"
                    " ORDER BY step",
                    (run_id,),
                ).fetchall()
                assert [s for (s,) in steps] == [0, 1]  # each epoch once
                (node,) = db.execute(
                    "SELECT value FROM tags WHERE run_uuid = %s AND key = 'nrfer.node_ip'",
                    (run_id,),
                ).fetchone()
                runs[run_id] = node
        assert {runs[t] for t in trials} == {"127.0.0.2", "127.0.0.3"}  # one trial per node

        # the artifacts are in the bucket, and readable through the server from the driver
        keys = s3.keys("mlflow/")
        for run_id in trials:
            assert f"mlflow/{exp_id}/{run_id}/artifacts/checkpoint/best.pt" in keys, keys
        client = MlflowClient(server_uri)
        best = client.download_artifacts(trials[0], "checkpoint/best.pt", str(tmp_path / "dl"))
        state = torch.load(best, map_location="cpu", weights_only=True)
        assert state  # a real checkpoint, read back
        parent = next(r for r, role in runs.items() if role == "sweep")
        parent_files = {k.split("/artifacts/", 1)[1] for k in keys if f"/{parent}/" in k}
        assert "report/index.html" in parent_files, sorted(parent_files)
        assert any(f.startswith("previews/") or "preview" in f for f in keys), sorted(keys)

        # nrfer report, nrfer ui and nrfer best against the same stack
        out = nrfer("report", "--sweep", "cluster", "--tracking-uri", server_uri, "--out", "r")
        html = (tmp_path / "r" / "index.html").read_text()
        assert all(t in html for t in trials)
        out = nrfer("ui", "--sweep", "cluster", "--tracking-uri", server_uri)
        link = next(w for w in out.split() if w.startswith(server_uri))
        assert f"/experiments/{exp_id}" in link
        assert urllib.request.urlopen(server_uri, timeout=10).status == 200
        out = nrfer(
            "best",
            "--sweep",
            "cluster",
            "--seeds",
            "1",
            "--tracking-uri",
            server_uri,
            "--out",
            "best",
            "--parallel",
            "no",
            timeout=600,
        )
        report = json.loads((tmp_path / "best" / "report.json").read_text())
        assert report["trial_run_id"] in trials
        with psycopg.connect(pg.dsn()) as db:
            versions = db.execute(
                "SELECT version, source FROM model_versions WHERE name = 'fer-cluster'"
            ).fetchall()
        assert len(versions) == 1, versions
        model_id = versions[0][1].removeprefix("models:/")  # its files are in the bucket
        files = {
            f"mlflow/{exp_id}/models/{model_id}/artifacts/{f}"
            for f in ("MLmodel", "artifacts/best.pt")
        }
        assert files <= set(s3.keys()), sorted(s3.keys())

        # nothing on the driver's disk outside --storage and the folders it was asked for
        # (matplotlib's font cache is the one cache: docs/cluster.md names it)
        cached = [f for f in files_under(home) if not f.startswith(".cache/matplotlib/")]
        assert cached == [] and files_under(tmp) == [], (files_under(home), files_under(tmp))
        written = [p for p in storage.rglob("*") if p.is_file()]
        leaked = [
            p
            for p in written
            if any(s.encode() in p.read_bytes() for s in (SECRET, PG_SECRET, S3_SECRET))
        ]
        assert written and not leaked, leaked
    finally:
        stack.close()
