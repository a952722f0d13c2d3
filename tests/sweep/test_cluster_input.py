"""Bad input to the production stack gets one line before Ray starts, the same in the run and
its dry run, and leaves nothing behind: a PostgreSQL store that does not answer, refuses the
password or lacks the database; a tracking server whose S3 artifact store lacks its bucket,
refuses its keys or does not answer; `--storage s3://...`. Real servers on loopback."""

import os
import signal

import pytest

from helpers import assert_same_refusal, both, space_args
from procs import Postgres, SeaweedS3, free_port, mlflow_server_on, stop

pytestmark = pytest.mark.slow
PG_SECRET = "pg-pw-4410"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """PostgreSQL, an S3 server, and two MLflow servers on PostgreSQL whose artifact stores
    are wrong: a bucket that does not exist, keys the S3 server does not know."""
    tmp = tmp_path_factory.mktemp("stack")
    pg = Postgres(PG_SECRET)
    s3 = SeaweedS3(tmp / "s3")
    servers, procs = {}, []
    try:
        base = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3.endpoint}
        cases = {
            "no bucket": ("s3://no-such-bucket/mlflow", s3.env),
            "bad keys": (
                "s3://nrfer/mlflow",
                {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"},
            ),
        }
        # one after the other: two MLflow servers creating the tables of a new PostgreSQL
        # database at once race (seen here: "duplicate key ... alembic_version"), as two
        # processes creating a SQLite store do (docs/cluster.md)
        for case, (dest, keys) in cases.items():
            port = free_port()
            log = tmp / f"{case.replace(' ', '-')}.log"
            procs.append(mlflow_server_on(pg.uri, dest, port, log, {**base, **keys}))
            servers[case] = f"http://127.0.0.1:{port}"
        yield pg, s3, servers
    finally:
        for p in procs:  # nothing of theirs is kept: no graceful shutdown to wait for
            stop(p, signal.SIGKILL)
        s3.stop()
        pg.close()


def test_postgres_store_refusals_name_the_reason_before_ray(
    stack, tmp_path, synthetic_root, capsys
):
    pg, _, _ = stack
    closed = free_port()
    cases = {
        f"postgresql://nrfer:{PG_SECRET}@127.0.0.1:{closed}/mlflow": "Connection refused",
        f"postgresql://nrfer:wrong-pw@127.0.0.1:{pg.port}/mlflow": (
            'password authentication failed for user "nrfer"'
        ),
        f"postgresql+psycopg://nrfer:{PG_SECRET}@127.0.0.1:{pg.port}/nope": (
            'database "nope" does not exist'
        ),
    }
    for uri, reason in cases.items():
        storage = tmp_path / "storage"
        results = both(capsys, space_args(tmp_path, synthetic_root, storage, uri))
        assert_same_refusal(results, "--tracking-uri 'postgresql", "PostgreSQL refused", reason)
        err = results[0][1]
        assert PG_SECRET not in err and "wrong-pw" not in err  # the password shown as ***
        assert "Started a local Ray instance" not in err and not storage.exists()
    # the right database is accepted (the dry run goes through)
    import launch

    args = space_args(tmp_path, synthetic_root, tmp_path / "storage", pg.uri)
    assert launch.main([*args, "--dry-run"]) == 0, capsys.readouterr().err


def test_a_server_whose_s3_artifact_store_is_wrong_is_named_before_ray(
    stack, tmp_path, synthetic_root, capsys
):
    _, s3, servers = stack
    expected = {
        "no bucket": "s3://no-such-bucket/mlflow: The specified bucket does not exist",
        "bad keys": "The access key ID you provided does not exist",
    }
    for case, uri in servers.items():
        storage = tmp_path / "storage"
        results = both(capsys, space_args(tmp_path, synthetic_root, storage, uri))
        assert_same_refusal(results, f"--tracking-uri {uri!r}", "artifact store", expected[case])
        assert not storage.exists()
    s3.stop()  # the S3 endpoint gone: the server answers /health, then 500 on its artifacts
    try:
        results = both(
            capsys, space_args(tmp_path, synthetic_root, tmp_path / "storage", servers["no bucket"])
        )
        assert_same_refusal(results, "failed (HTTP 500) to list its artifact store")
    finally:
        s3.start()


def test_storage_on_an_object_store_is_refused_with_the_reason(tmp_path, synthetic_root, capsys):
    os.chdir(tmp_path)  # nothing may appear here: not an 's3:' folder
    results = both(capsys, space_args(tmp_path, synthetic_root, "s3://bucket/sweeps"))
    assert_same_refusal(
        results, "--storage 's3://bucket/sweeps'", "a folder that every Ray node mounts"
    )
    assert not (tmp_path / "s3:").exists()
