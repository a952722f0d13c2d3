"""Wall time of `nrfer --help` and every `nrfer COMMAND --help` (a new process each, the
median of --repeat runs), against `python -c pass` run the same way: the issue's bar is
under a second each.

    python bench/cli_help.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from sweep.cli import COMMANDS

    base = wall([sys.executable, "-c", "pass"], args.repeat)
    print(f"{'command':28s} {'wall s':>7s} {'vs python -c pass':>18s}")
    print(f"{'python -c pass':28s} {base:7.3f} {1.0:17.1f}x")
    worst = 0.0
    for name in ["", *COMMANDS]:
        cmd = [sys.executable, "-m", "sweep.cli", *([name] if name else []), "--help"]
        t = wall(cmd, args.repeat)
        worst = max(worst, t)
        print(f"{('nrfer ' + name + ' --help'):28s} {t:7.3f} {t / base:17.1f}x")
    print(f"slowest: {worst:.3f} s ({'under' if worst < 1 else 'OVER'} the 1 s bar)")
    return 0 if worst < 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
