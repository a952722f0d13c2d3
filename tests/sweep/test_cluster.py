"""A real two-node Ray cluster and a real MLflow server, both on loopback, one sweep across them."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

from helpers import REPO, tiny_space
from procs import BIN, free_port, mlflow_server, start, stop, wait_for

pytestmark = pytest.mark.slow
SECRET = "s3cr3t-pw-7781"


def test_two_node_cluster_with_mlflow_server(tmp_path, synthetic_root):
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_tmp = tempfile.mkdtemp(
        prefix="nr", dir="/tmp"
    )  # short: Ray's socket paths are length-limited
    ray_port, mlflow_port = free_port(), free_port()
    server_uri = f"http://127.0.0.1:{mlflow_port}"
    procs = []

    def status() -> str:
        cmd = [str(BIN / "ray"), "status", "--address", f"127.0.0.2:{ray_port}"]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30).stdout

    try:
        procs.append(mlflow_server(tmp_path, mlflow_port, env))
        common = ["--num-cpus", "1", "--num-gpus", "0", "--block", "--disable-usage-stats"]
        procs.append(
            start(
                [
                    str(BIN / "ray"),
                    "start",
                    "--head",
                    "--node-ip-address",
                    "127.0.0.2",
                    "--port",
                    str(ray_port),
                    "--include-dashboard",
                    "false",
                    "--temp-dir",
                    ray_tmp,
                    *common,
                ],
                tmp_path / "head.log",
                env,
            )
        )
        wait_for(lambda: "/1.0 CPU" in status(), 60, "Ray head node")
        procs.append(
            start(
                [
                    str(BIN / "ray"),
                    "start",
                    "--address",
                    f"127.0.0.2:{ray_port}",
                    "--node-ip-address",
                    "127.0.0.3",
                    *common,
                ],
                tmp_path / "worker.log",
                env,
            )
        )
        wait_for(lambda: "/2.0 CPU" in status(), 90, "two Ray nodes")

        space = tiny_space(
            "cluster",
            synthetic_root,
            resizer={"enabled": True, "n": 4},
            search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
            scheduler={"name": "fifo", "max_epochs": 2},
            budget={"num_samples": 2, "max_concurrent": 2},
        )
        path = tmp_path / "cluster.yaml"
        path.write_text(yaml.safe_dump(space))
        out = subprocess.run(
            [
                sys.executable,
                "launch.py",
                "--space",
                str(path),
                "--address",
                f"127.0.0.2:{ray_port}",
                "--tracking-uri",  # credentials in the URI: they must end up nowhere
                server_uri.replace("http://", f"http://nrfer:{SECRET}@"),
                "--storage",
                str(tmp_path / "storage"),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert SECRET not in out.stdout + out.stderr and "http://***@" not in out.stdout
        files = [p for p in (tmp_path / "storage").rglob("*") if p.is_file()]
        files += [tmp_path / "server.db", *(tmp_path / "artifacts").rglob("*")]
        assert len(files) > 20
        leaked = [p for p in files if p.is_file() and SECRET.encode() in p.read_bytes()]
        assert not leaked, leaked

        client = MlflowClient(server_uri)
        exp = client.get_experiment_by_name("cluster")
        runs = client.search_runs([exp.experiment_id])
        children = [r for r in runs if r.data.tags.get("nrfer.role") == "trial"]
        parents = [r for r in runs if r.data.tags.get("nrfer.role") == "sweep"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
        for c in children:
            assert len(client.get_metric_history(c.info.run_id, "val_acc")) == 2
            assert "checkpoint/best.pt" in {
                a.path for a in client.list_artifacts(c.info.run_id, "checkpoint")
            }
        # one trial per node: each node has one CPU and both trials ran at once
        assert {c.data.tags["nrfer.node_ip"] for c in children} == {"127.0.0.2", "127.0.0.3"}
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(ray_tmp, ignore_errors=True)
