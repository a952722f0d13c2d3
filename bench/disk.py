"""What a sweep leaves on disk: the demo sweep (8 trials, ASHA) run for real in a fresh
folder, then the bytes in Tune storage, MLflow's artifacts and the temp folder counted.

    python bench/disk.py                          # this checkout
    python bench/disk.py --repo /path/to/older    # another checkout, same venv (before/after)
    python bench/disk.py --kill-after 40          # SIGKILL the driver after 40 s, then --resume

Each process of the sweep gets TMPDIR=<folder>/tmp, so what is left there was leaked (Ray's
lock files and torch's compile-cache folder aside: they are reused, not per trial). The
checkout's own code runs (PYTHONPATH), in the driver and in Ray's workers.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, record  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TOOLS = {"_ray_lockfiles", f"torchinductor_{getpass.getuser()}"}


def size(path: Path) -> tuple[int, int]:
    """(bytes, files) under `path`."""
    if not path.exists():
        return 0, 0
    if path.is_file():
        return path.stat().st_size, 1
    files = [f for f in path.rglob("*") if f.is_file() and not f.is_symlink()]
    return sum(f.stat().st_size for f in files), len(files)


def launch(repo: Path, folder: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        "TMPDIR": str(folder / "tmp"),
        "NRFER_RAY_TMP": f"/tmp/nrfer-ray-{os.getuid()}",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable,
        str(repo / "launch.py"),
        "--space",
        str(repo / "search_spaces" / "demo.yaml"),
        "--storage",
        str(folder / "storage"),
        "--tracking-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        *extra,
    ]
    log = open(folder / f"log-{len(list(folder.glob('log-*')))}.txt", "w")
    return subprocess.Popen(
        cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def measure(repo: Path, kill_after: float | None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="nrfer-disk-"))
    (folder / "tmp").mkdir()
    t0 = time.perf_counter()
    proc = launch(repo, folder)
    row: dict = {"repo": str(repo), "commit": commit(repo)}
    if kill_after:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        left = [p.name for p in (folder / "tmp").iterdir() if p.name not in TOOLS]
        row["tmp_after_kill_bytes"] = sum(size(folder / "tmp" / n)[0] for n in left)
        row["tmp_after_kill_folders"] = len(left)
        proc = launch(repo, folder, "--resume")
    rc = proc.wait()
    row["rc"], row["wall_s"] = rc, time.perf_counter() - t0
    storage, _ = size(folder / "storage")
    row["storage_bytes"] = storage
    row["storage_pt_files"] = len(list((folder / "storage").rglob("*.pt")))
    row["storage_checkpoint_dirs"] = len(list((folder / "storage").rglob("checkpoint_*")))
    art = [folder / "mlruns", folder / "mlflow-artifacts"]
    row["mlflow_artifact_bytes"] = sum(size(p)[0] for p in art)
    row["mlflow_best_pt_files"] = sum(len(list(p.rglob("best.pt"))) for p in art if p.exists())
    row["mlflow_db_bytes"] = size(folder / "mlflow.db")[0]
    left = [p for p in (folder / "tmp").iterdir() if p.name not in TOOLS]
    row["tmp_left_bytes"] = sum(size(p)[0] for p in left)
    row["tmp_left_folders"] = len(left)
    row["folder"] = str(folder)
    return row


def commit(repo: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True)
    return out.stdout.decode().strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", action="append", type=Path, help="checkout(s) to measure")
    parser.add_argument("--kill-after", type=float, help="SIGKILL the driver after S s, resume")
    parser.add_argument("--name", default="disk", help="the results.json key")
    args = parser.parse_args()
    rows = [measure(r.resolve(), args.kill_after) for r in (args.repo or [REPO])]
    mib = [
        {
            "commit": r["commit"],
            "rc": r["rc"],
            "storage MiB": round(r["storage_bytes"] / 2**20, 1),
            ".pt in storage": r["storage_pt_files"],
            "MLflow artifacts MiB": round(r["mlflow_artifact_bytes"] / 2**20, 1),
            "best.pt in MLflow": r["mlflow_best_pt_files"],
            "temp left MiB": round(r["tmp_left_bytes"] / 2**20, 1),
            "temp folders left": r["tmp_left_folders"],
            **(
                {"temp after kill MiB": round(r["tmp_after_kill_bytes"] / 2**20, 1)}
                if "tmp_after_kill_bytes" in r
                else {}
            ),
            "wall s": round(r["wall_s"], 1),
        }
        for r in rows
    ]
    print_table("what the demo sweep leaves on disk", mib)
    record(args.name, rows)
    print(json.dumps(rows, indent=1))
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
