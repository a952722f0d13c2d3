"""Real processes for tests: free loopback ports, process groups, an `mlflow server`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, log, env=None):
    # a session of its own: teardown kills exactly this process group, nothing broader
    return subprocess.Popen(
        cmd,
        stdout=open(log, "a"),
        stderr=subprocess.STDOUT,
        env=env or dict(os.environ),
        start_new_session=True,
    )


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_for(check, timeout, what, every=1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(every)
    raise TimeoutError(what)


def mlflow_server(folder: Path, port: int, env=None):
    """A real MLflow tracking server on 127.0.0.1 (SQLite store, proxied artifacts); waits
    until it answers /health."""
    return mlflow_server_on(
        f"sqlite:///{folder / 'server.db'}",
        str(folder / "artifacts"),
        port,
        folder / "mlflow.log",
        env or dict(os.environ),
    )


# --- the production stack: PostgreSQL, an S3 server, an MLflow server on both ---------------

S3_KEY, S3_SECRET = "nrfer-key", "nrfer-s3-secret-5521"


def postgres_bin() -> Path:
    """The PostgreSQL server binaries: Debian's layout, or wherever pg_config says."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


class Postgres:
    """A real PostgreSQL server on 127.0.0.1 with password authentication, in a data folder
    of its own; run as the `postgres` user when this process is root (PostgreSQL refuses to
    run as root). `uri` names its `mlflow` database with the credentials."""

    def __init__(self, password: str, user: str = "nrfer") -> None:
        import pwd
        import tempfile

        self.port, self.user, self.password = free_port(), user, password
        self.dir = Path(tempfile.mkdtemp(prefix="nrpg", dir="/tmp"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        pwfile = self.dir / "pw"
        pwfile.write_text(password)
        if self.as_user:
            uid = pwd.getpwnam("postgres").pw_uid
            os.chown(self.dir, uid, -1)
            os.chown(pwfile, uid, -1)
        subprocess.run(
            [*self.as_user, str(postgres_bin() / "initdb"), "-D", str(self.dir / "data")]
            + ["-U", user, "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        pwfile.unlink()
        self.proc = None
        self.start()
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE mlflow")
        self.uri = f"postgresql://{user}:{password}@127.0.0.1:{self.port}/mlflow"

    def dsn(self, db: str = "mlflow") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        import psycopg

        cmd = [*self.as_user, str(postgres_bin() / "postgres"), "-D", str(self.dir / "data")]
        cmd += ["-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.dir)]
        self.proc = start(cmd, self.dir / "server.log")
        wait_for(lambda: psycopg.connect(self.dsn("postgres")).close() is None, 60, "postgres")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGINT)  # PostgreSQL's fast shutdown

    def close(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SeaweedS3:
    """A real S3 server (SeaweedFS's `weed mini`) on 127.0.0.1 with one access key and one
    bucket; every port chosen free (none of its defaults, so servers can run side by side)."""

    def __init__(self, folder: Path, bucket: str = "nrfer") -> None:
        self.folder, self.bucket = folder, bucket
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        ports = {"s3.port": self.port}
        for name in ("s3.port.grpc", "master.port", "master.port.grpc", "volume.port"):
            ports[name] = free_port()
        for name in ("volume.port.grpc", "filer.port", "filer.port.grpc", "admin.port"):
            ports[name] = free_port()
        ports["admin.port.grpc"] = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.cmd = [str(BIN / "weed"), "mini", f"-dir={folder}", "-ip=127.0.0.1"]
        self.cmd += ["-ip.bind=127.0.0.1", "-s3.port.iceberg=0", "-s3.port.lance=0"]
        self.cmd += ["-webdav=false", "-admin.ui=false", f"-bucket={bucket}"]
        self.cmd += [f"-{k}={v}" for k, v in ports.items()]
        self.proc = None
        self.start()

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2")
        return [
            o["Key"]
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix)
            for o in page.get("Contents", [])
        ]

    def start(self) -> None:
        self.proc = start(self.cmd, self.folder / "weed.log", {**os.environ, **self.env})
        wait_for(lambda: self.client().head_bucket(Bucket=self.bucket), 60, "seaweedfs s3")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


def mlflow_server_on(backend: str, artifacts: str, port: int, log: Path, env: dict):
    """`mlflow server` on a given backend store and artifact destination, on 127.0.0.1;
    waits until it answers /health."""
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", backend, "--artifacts-destination", artifacts]
    proc = start([*cmd, "--workers", "1"], log, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: urllib.request.urlopen(f"{url}/health", timeout=2).status == 200,
            90,
            "mlflow server",
            every=0.5,
        )
    except TimeoutError:
        stop(proc)
        raise
    return proc


class Stack:
    """The production stack of docs/cluster.md on loopback: PostgreSQL (password auth), an S3
    server, an MLflow server on both (artifacts proxied to the bucket), and a two-node Ray
    cluster (head 127.0.0.2, worker 127.0.0.3; one CPU and one declared GPU each). Each part
    can be restarted or killed, as a cluster's parts are."""

    def __init__(
        self, folder: Path, pg_password: str, backend: str = "postgres", cpus_per_node: int = 1
    ) -> None:
        """`backend`: the MLflow server's store, "postgres" or "sqlite" (a file in
        `folder`; the artifacts go to S3 either way)."""
        import tempfile

        self.folder = folder
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
            self.env.pop(key, None)  # drivers and trials reach artifacts through the server
        self.ray_tmp = tempfile.mkdtemp(prefix="nr", dir="/tmp")  # short: Ray's socket paths
        self.ray_port, self.mlflow_port = free_port(), free_port()
        self.uri = f"http://127.0.0.1:{self.mlflow_port}"
        self.address = f"127.0.0.2:{self.ray_port}"
        self.pg: Postgres | None = None
        self.s3: SeaweedS3 | None = None
        self.mlflow = self.head = self.worker = None
        try:
            self.pg = Postgres(pg_password)
            self.backend = (
                self.pg.uri if backend == "postgres" else f"sqlite:///{folder / 'server.db'}"
            )
            self.s3 = SeaweedS3(folder / "s3")
            self.start_mlflow()
            common = ["--num-cpus", str(cpus_per_node), "--num-gpus", "1", "--block"]
            common += ["--disable-usage-stats"]
            head = [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.2"]
            head += ["--port", str(self.ray_port), "--include-dashboard", "false"]
            head += ["--temp-dir", self.ray_tmp, *common]
            self.head = start(head, folder / "head.log", self.env)
            wait_for(lambda: f"/{cpus_per_node}.0 CPU" in self.ray_status(), 60, "Ray head")
            self.worker_cmd = [str(BIN / "ray"), "start", "--address", self.address]
            self.worker_cmd += ["--node-ip-address", "127.0.0.3", *common]
            self.worker = start(self.worker_cmd, folder / "worker.log", self.env)
            both = f"/{2 * cpus_per_node}.0 CPU"
            wait_for(lambda: both in self.ray_status(), 90, "two Ray nodes")
        except BaseException:
            self.close()
            raise

    def ray_status(self) -> str:
        cmd = [str(BIN / "ray"), "status", "--address", self.address]
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=30).stdout

    def start_mlflow(self) -> None:
        assert self.pg is not None and self.s3 is not None
        env = {**self.env, **self.s3.env, "MLFLOW_S3_ENDPOINT_URL": self.s3.endpoint}
        self.mlflow = mlflow_server_on(
            self.backend, "s3://nrfer/mlflow", self.mlflow_port, self.folder / "mlflow.log", env
        )

    def kill_worker_node(self) -> None:
        """SIGKILL the worker node's raylet (the node is lost, as a machine that dies)."""
        out = subprocess.run(["pgrep", "-f", "raylet.*127.0.0.3"], capture_output=True, text=True)
        for pid in out.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        assert out.stdout.split(), "no raylet of the worker node"

    def close(self) -> None:
        import shutil

        for proc in (self.worker, self.head, self.mlflow):
            if proc is not None:
                stop(proc)
        if self.s3 is not None:
            self.s3.stop()
        if self.pg is not None:
            self.pg.close()
        logs = Path(self.ray_tmp) / "session_latest" / "logs"
        if logs.is_dir():  # the workers' logs, kept beside the test's other logs
            shutil.copytree(logs, self.folder / "ray-logs", dirs_exist_ok=True, symlinks=False)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
