"""One preflight for the run and its dry run: each refusal, run through both, gives the same
one line and exit code 2, before Ray starts and without leaving anything behind. Read-only
and full storage are real tmpfs mounts (skipped where mounting is not permitted)."""

from pathlib import Path

import pytest
import yaml

from helpers import assert_same_refusal, both, space_args


@pytest.fixture
def mounts(tmpfs):
    """mount(name, *options): a 64 KiB tmpfs (conftest's `tmpfs`)."""
    return lambda name, *options: tmpfs(name, "64k", *options)


def test_read_only_storage_is_refused_by_the_run_and_the_dry_run(
    tmp_path, synthetic_root, mounts, capsys
):
    ro = mounts("ro", "ro")
    results = both(capsys, space_args(tmp_path, synthetic_root, ro / "sweeps"))
    assert_same_refusal(results, f"storage path {ro / 'sweeps'} is not writable", "Read-only")
    assert list(ro.iterdir()) == []


def test_a_full_storage_is_refused_by_the_run_and_the_dry_run(
    tmp_path, synthetic_root, mounts, capsys
):
    small = mounts("small")
    (small / "filler").write_bytes(b"x" * 40_000)
    results = both(capsys, space_args(tmp_path, synthetic_root, small / "sweeps"))
    assert_same_refusal(results, f"storage path {small / 'sweeps'} has ", "MiB free")
    assert sorted(p.name for p in small.iterdir()) == ["filler"]  # no probe, no folder left


def test_a_read_only_sqlite_store_is_refused_by_the_run_and_the_dry_run(
    tmp_path, synthetic_root, mounts, capsys
):
    ro = mounts("store", "ro")
    uri = f"sqlite:///{ro / 'mlflow.db'}"
    results = both(capsys, space_args(tmp_path, synthetic_root, tmp_path / "s", uri))
    assert_same_refusal(results, "--tracking-uri", "is read-only")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("case", ["storage is a file", "missing data", "unknown scheme"])
def test_other_refusals_are_the_same_in_the_run_and_the_dry_run(
    case, tmp_path, synthetic_root, capsys
):
    storage, uri = tmp_path / "s", None
    if case == "storage is a file":
        (tmp_path / "f").write_text("x")
        storage = tmp_path / "f" / "sweeps"
        needle = f"storage path {storage}: {tmp_path / 'f'} is a file"
    elif case == "unknown scheme":
        uri, needle = "mysql2://127.0.0.1/x", "unknown scheme 'mysql2'"
    args = space_args(tmp_path, synthetic_root, storage, uri)
    if case == "missing data":
        raw = yaml.safe_load(Path(args[1]).read_text())
        raw["data"] = {"dataset": "ferplus", "root": str(tmp_path / "nope")}
        Path(args[1]).write_text(yaml.safe_dump(raw))
        needle = "data.root"
    assert_same_refusal(both(capsys, args), needle)
