"""At cluster scale: many trials on the production stack, ours against plain Ray Tune.

    python bench/scale.py                                  # 1,000 trials, both backends
    python bench/scale.py --trials 200 --backends postgres
    make bench-scale

For each backend, a fresh stack of the kind docs/cluster.md describes, on loopback
(tests/procs.py `Stack`: an MLflow server on PostgreSQL, or on a SQLite file, with its
artifacts on SeaweedFS S3; a Ray head and a worker node of `--cpus-per-node` CPUs each),
and one driver process joined to it running, side by side, the same tiny trials
(bench/overhead.py: `nrfer.train.fit` of a one-block ViT on 64 synthetic faces):
- anchor: `tune.Tuner` + `OptunaSearch` + `ASHAScheduler` + `MLflowLoggerCallback` to the server;
- ours: `sweep.runtime.driver.run_sweep` to the same server (parent and nested runs, params,
  tags, dataset, previews, system metrics, checkpoints, retention, the ledger).
Reported per arm: s/trial over Tune's fit and in its first and last quarter, the server's
5xx answers and "database is locked" lines while the arm ran (its log), the driver's RSS
peak; for ours also the interactive report's rebuild from the store (`nrfer report`), the
choosing step of `nrfer best` (which trial, from the store) and the terminal lines it printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from common import print_table, record  # noqa: E402
from overhead import Rss, run_anchor, run_ours, space  # noqa: E402

LOCKED = re.compile(r"database is locked", re.I)
SERVER_ERROR = re.compile(r'HTTP/1\.1" 5\d\d ')


def server_errors(log: Path, since: int) -> dict:
    text = log.read_text(errors="replace")[since:] if log.is_file() else ""
    return {"server_5xx": len(SERVER_ERROR.findall(text)), "locked": len(LOCKED.findall(text))}


def report_and_best(name: str, uri: str, tmp: Path) -> dict:
    """Seconds to rebuild the interactive report from the store, and to choose the best."""
    from mlflow.tracking import MlflowClient

    from sweep.commands.best import best_trials
    from sweep.commands.report import main as report_main

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = report_main(["--sweep", name, "--tracking-uri", uri, "--out", str(tmp / "report")])
    report_s = time.perf_counter() - t0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    parent = client.search_runs([exp.experiment_id], "tags.`nrfer.role` = 'sweep'")[0]
    t0 = time.perf_counter()
    best_trials(client, parent, k=1)
    return {
        "report_s": report_s if rc == 0 else float("nan"),
        "best_choose_s": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    # 16 at a time (8 per node) is the goal on a real cluster; on one 24 GiB machine it ran
    # out of memory (each trial worker holds ~1.4 GiB: torch, timm, MLflow, Ray), so 8 here
    ap.add_argument("--concurrent", type=int, default=8)
    ap.add_argument("--cpus-per-node", type=int, default=4)
    ap.add_argument("--backends", nargs="+", default=["postgres", "sqlite"])
    ap.add_argument("--name", default="scale")
    args = ap.parse_args(argv)

    import ray

    from nrfer.config import make_config
    from nrfer.data import load_data
    from nrfer.data.synthetic import write_ferplus
    from procs import Stack

    tmp = Path(tempfile.mkdtemp(prefix="nrfer-scale-"))
    root = str(write_ferplus(tmp / "ferplus", seed=3, n_train=64, n_val=32, n_test=32))
    spec = space(1, args.epochs, args.concurrent, root)
    train = {**spec["fixed"]["train"], "epochs": args.epochs}
    base = make_config({"data": spec["data"], **spec["fixed"], "train": train}).to_dict()
    data = load_data(make_config(base).data)
    rss = Rss()
    rss.start()
    rows = []
    n = args.trials
    for backend in args.backends:
        stack = Stack(tmp / backend, "scale-pw", backend=backend, cpus_per_node=args.cpus_per_node)
        log = stack.folder / "mlflow.log"
        try:
            ray.init(address=stack.address, log_to_driver=False)
            pair = []
            for arm in ("anchor", "ours"):
                t0, since = time.time(), len(log.read_text(errors="replace"))
                out = io.StringIO()
                if arm == "anchor":
                    row = run_anchor(
                        n, args.epochs, args.concurrent, base, data, tmp / f"a-{backend}", stack.uri
                    )
                else:
                    with contextlib.redirect_stdout(out):
                        row = run_ours(
                            n, args.epochs, args.concurrent, root, tmp / f"o-{backend}", stack.uri
                        )
                    row["terminal_lines"] = out.getvalue().count("\n")
                    row.update(report_and_best(f"ours-{n}", stack.uri, tmp / f"o-{backend}"))
                row.update(rss.window(t0, time.time()), backend=backend)
                row.update(server_errors(log, since))
                pair.append(row)
                rows.append(row)
                print(
                    {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()},
                    flush=True,
                )
            a, o = pair
            o["ratio_vs_anchor"] = o["s_per_trial"] / a["s_per_trial"]
            print(
                f"{backend}, N={n}: ours {o['s_per_trial']:.3f} s/trial, anchor "
                f"{a['s_per_trial']:.3f}: {o['ratio_vs_anchor']:.2f}x",
                flush=True,
            )
        finally:
            ray.shutdown()
            stack.close()
    rss.done.set()
    shutil.rmtree(tmp, ignore_errors=True)  # the stacks' data and the runs: ~300 MB at N=1,000
    print_table(f"at scale ({n} trials x {args.epochs} epochs, {args.concurrent} at a time)", rows)
    meta = {
        "epochs": args.epochs,
        "concurrent": args.concurrent,
        "cpus_per_node": args.cpus_per_node,
    }
    record(args.name, rows, meta)
    return 0 if all(r["errors"] == 0 and r["runs"] == r["trials"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
