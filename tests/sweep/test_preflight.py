"""One preflight for the run and its dry run: each refusal, run through both, gives the same
one line and exit code 2, before Ray starts and without leaving anything behind. Read-only
and full storage are real tmpfs mounts (skipped where mounting is not permitted)."""

import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from helpers import tiny_space


def mount_tmpfs(where: Path, *options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    opts = ",".join(("size=64k", *options))
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)]).returncode == 0


@pytest.fixture
def mounts(tmp_path):
    made: list[Path] = []

    def mount(name: str, *options: str) -> Path:
        where = tmp_path / name
        if not mount_tmpfs(where, *options):
            pytest.skip("mounting a tmpfs is not permitted here")
        made.append(where)
        return where

    yield mount
    for where in made:
        subprocess.run(["umount", "-l", str(where)], check=False)


def both(capsys, args: list[str]) -> list[tuple[int, str]]:
    """(exit code, stderr) of the run and of its dry run."""
    import launch

    out = []
    for extra in ([], ["--dry-run"]):
        rc = launch.main([*args, *extra])
        out.append((rc, capsys.readouterr().err))
    return out


def space_args(tmp_path, synthetic_root, storage, uri=None) -> list[str]:
    space = tmp_path / f"s-{uuid.uuid4().hex[:6]}.yaml"
    raw = tiny_space(
        "pre",
        synthetic_root,
        search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
        scheduler={"name": "asha", "max_epochs": 2, "grace_period": 1},
        budget={"num_samples": 2, "max_concurrent": 1},
    )
    space.write_text(yaml.safe_dump(raw))
    uri = uri or f"sqlite:///{tmp_path / 'mlflow.db'}"
    return ["--space", str(space), "--storage", str(storage), "--tracking-uri", uri]


def assert_same_refusal(results, *needles: str) -> None:
    (rc_run, err_run), (rc_dry, err_dry) = results
    assert rc_run == rc_dry == 2, results
    assert err_run == err_dry, results
    for needle in needles:
        assert needle in err_run, err_run
    assert "Traceback" not in err_run


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
