"""Early stopping with two objectives (val_acc max, latency_ms min), replayed on the recorded
learning curves of bench/search_replay.py with each recorded config's measured latency.

    python bench/pareto_replay.py costs   # each recorded config's params, GFLOPs, latency
    python bench/pareto_replay.py run     # every arm x seeds; prints the table, writes results

`costs` builds each recorded config's model (random init: cost depends on the architecture)
and measures it as a sweep's trial does (nrfer.cost: batch 1, warm median of 30 calls, one
thread) into bench/pareto_replay_costs.json. `run` replays, per seed, a sweep of every
recorded config in a seeded random order, 2 at a time in simulated time (each epoch lasting
its recorded wall time), through the product's scheduler (sweep.runtime.stopping.adaptive, the
dominance rule of sweep.runtime.stopping.dominance) and reports, per arm, with 95% bootstrap CIs over
seeds:
  - the fraction of the final Pareto front's trials it stopped early (the final front: every
    config run to its last epoch, its best val_acc against its latency);
  - the epochs it saved (of every config's full run);
  - the hypervolume of the front it found (the trials' best val over the epochs they ran),
    as a fraction of the final front's.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parent
RECORDINGS = {
    "4ep": HERE / "search_replay_curves.json",
    "24ep": HERE / "search_replay_curves_24ep.json",
}
COSTS = HERE / "pareto_replay_costs.json"
SENSES = {"val_acc": "max", "latency_ms": "min"}
ADAPTIVE = {"min_trials": 8, "threshold": 0.8, "reduction_factor": 2}

# name: (objectives the rungs compare (None: ASHA on val_acc), min_dominating, fraction of
# the trials at the rung that must dominate (None: ASHA's 1 - 1/rf), rank-correlation
# threshold (None: no early stopping; -1 forces the first rung to epoch 1))
ARMS: dict[str, tuple[dict | None, int, float | None, float | None]] = {
    "FIFO (no early stopping)": (None, 0, None, None),
    "adaptive, ASHA on val_acc": (None, 0, None, ADAPTIVE["threshold"]),
    "adaptive, dominance (ASHA's fraction; default)": (SENSES, 1, None, ADAPTIVE["threshold"]),
    "adaptive, dominance by any 2": (SENSES, 2, 0.0, ADAPTIVE["threshold"]),
    "rung forced to epoch 1, ASHA on val_acc": (None, 0, None, -1.0),
    "rung forced to epoch 1, dominance (ASHA's fraction)": (SENSES, 1, None, -1.0),
    "rung forced to epoch 1, dominance by any 2": (SENSES, 2, 0.0, -1.0),
}
LATENCY = {"mode": "architecture"}  # run --latency: per architecture (as a sweep measures)


# -- costs -----------------------------------------------------------------------------------


def costs() -> None:
    import torch

    from nrfer.cost import config_cost
    from nrfer.data.types import NUM_CLASSES
    from sweep.spec.space import load_space

    torch.set_num_threads(1)
    out: dict = {"method": "nrfer.cost.config_cost, batch 1, 30 warm calls (median), 1 thread"}
    t0 = time.perf_counter()
    for name, path in RECORDINGS.items():
        recorded = json.loads(path.read_text())
        spec = load_space(recorded["space"])
        rows = []
        for c in recorded["configs"]:
            cfg = spec.trial_config(c["params"])
            cost = config_cost(cfg.model, NUM_CLASSES, (1, 48, 48), "cpu", (1,), 30, 5)
            rows.append(cost.to_metrics())
        out[name] = rows
        lat = [r["latency_ms"] for r in rows]
        print(f"{name}: {len(rows)} configs, latency_ms {min(lat):.2f} .. {max(lat):.2f}")
    out["wall_s"] = time.perf_counter() - t0
    COSTS.write_text(json.dumps(out, indent=1))
    print(f"wrote {COSTS}")


# -- replay ----------------------------------------------------------------------------------


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def scheduler_for(arm: str, epochs: int, folder: Path):
    from ray.tune.schedulers import FIFOScheduler

    from sweep.runtime.stopping.adaptive import AdaptiveStopping

    senses, k, fraction, threshold = ARMS[arm]
    if threshold is None:
        return FIFOScheduler()
    s = AdaptiveStopping(
        folder,
        max_t=epochs,
        reduction_factor=ADAPTIVE["reduction_factor"],
        min_trials=ADAPTIVE["min_trials"],
        threshold=threshold,
        senses=senses,
        min_dominating=k or None,
        dominance_fraction=fraction,
    )
    s.set_search_properties("val_acc", "max")
    return s


def simulate(curves: list[list[dict]], latency: list[float], order, arm: str) -> list[int]:
    """One sweep of the configs in `order`, 2 at a time; returns each config's epochs run."""
    from ray.tune.schedulers import TrialScheduler

    epochs = len(curves[0])
    ran = [0] * len(curves)
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as d:
        scheduler = scheduler_for(arm, epochs, Path(d))
        queue, running, now = list(order), [], 0.0
        trials: dict[int, _Trial] = {}

        def start() -> None:
            while len(running) < 2 and queue:
                i = queue.pop(0)
                trials[i] = _Trial(f"c{i}")
                scheduler.on_trial_add(None, trials[i])
                heapq.heappush(running, (now + curves[i][0]["epoch_time_s"], i))

        start()
        while running:
            now, i = heapq.heappop(running)
            ran[i] += 1
            row = curves[i][ran[i] - 1]
            result = {"training_iteration": ran[i], "val_acc": row["val_acc"]}
            result["latency_ms"] = latency[i]
            action = scheduler.on_trial_result(None, trials[i], result)
            if action == TrialScheduler.STOP or ran[i] >= epochs:
                scheduler.on_trial_complete(None, trials[i], result)
                start()
            else:
                heapq.heappush(running, (now + curves[i][ran[i]]["epoch_time_s"], i))
    return ran


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """The area dominated by (acc, latency) points (acc max, latency min) above ref's acc and
    below its latency."""
    pts = sorted((lat, acc) for acc, lat in points if acc > ref[0] and lat < ref[1])
    area, best = 0.0, ref[0]
    for k, (lat, acc) in enumerate(pts):
        best = max(best, acc)
        nxt = pts[k + 1][0] if k + 1 < len(pts) else ref[1]
        area += (nxt - lat) * (best - ref[0])
    return area


def recording(name: str) -> tuple[list, list[float]]:
    """A recording's curves and each config's latency (per architecture or per config)."""
    recorded = json.loads(RECORDINGS[name].read_text())
    cost_rows = json.loads(COSTS.read_text())[name]
    curves = [c["curve"] for c in recorded["configs"]]
    latency = [r["latency_ms"] for r in cost_rows]
    if LATENCY["mode"] == "architecture":  # equal models, equal latency: the group's median
        arch = [
            json.dumps(
                {k: v for k, v in c["params"].items() if k.startswith("model.")}, sort_keys=True
            )
            for c in recorded["configs"]
        ]
        groups = {
            a: float(np.median([t for t, b in zip(latency, arch, strict=True) if b == a]))
            for a in arch
        }
        latency = [groups[a] for a in arch]
    return curves, latency


def lcbench_recording(task: int, n: int = 64, seed: int = 0) -> tuple[list, list[float]]:
    """n seeded random configurations of an LCBench task (bench/lcbench.py), every epoch:
    val_accuracy as `val_acc` (in %), each epoch's own time as `epoch_time_s`, and the cost
    objective (in the `latency_ms` slot) the configuration's mean seconds per epoch."""
    from lcbench import LCBench

    bench = LCBench()
    out = bench.curves(task, bench.sample(np.random.default_rng(seed), n))
    curves, cost = [], []
    for c in out:
        per_epoch = np.maximum(np.diff(np.concatenate([[0.0], c[:, 0]])), 1e-3)
        curves.append(
            [
                {"val_acc": float(a), "epoch_time_s": float(t)}
                for a, t in zip(c[:, 1], per_epoch, strict=True)
            ]
        )
        cost.append(float(per_epoch.mean()))
    return curves, cost


def replay(name: str, reps: int, arms: list[str], source: tuple | None = None) -> dict:
    """Every arm x `reps` seeds on a recording (or on `source`: its curves and costs)."""
    from sweep.analysis.pareto import pareto_front

    curves, latency = source or recording(name)
    epochs, n = len(curves[0]), len(curves)
    final = [
        {"val_acc": max(r["val_acc"] for r in c), "latency_ms": lat}
        for c, lat in zip(curves, latency, strict=True)
    ]
    front = set(pareto_front(final, SENSES))
    ref = (min(p["val_acc"] for p in final), max(p["latency_ms"] for p in final) * 1.01)
    true_hv = hypervolume([(p["val_acc"], p["latency_ms"]) for p in final], ref)
    print(
        f"\n{name}: {n} configs x {epochs} epochs; final Pareto front: {len(front)} configs "
        f"(latency_ms {min(latency):.2f} .. {max(latency):.2f}); {reps} seeds per arm"
    )
    rows = []
    for arm in arms:
        t0 = time.perf_counter()
        stopped_front, saved, hv = [], [], []
        for seed in range(reps):
            order = np.random.default_rng(2000 + seed).permutation(n).tolist()
            ran = simulate(curves, latency, order, arm)
            stopped_front.append(sum(ran[i] < epochs for i in front) / len(front))
            saved.append(1 - sum(ran) / (n * epochs))
            found = [
                (max(r["val_acc"] for r in c[: ran[i]]), latency[i]) for i, c in enumerate(curves)
            ]
            hv.append(hypervolume(found, ref) / true_hv)
        row = {"arm": arm, "seeds": reps, "wall_s": round(time.perf_counter() - t0, 1)}
        for key, values in (
            ("front_stopped", stopped_front),
            ("epochs_saved", saved),
            ("hypervolume", hv),
        ):
            row[key] = float(np.mean(values))
            row[f"{key}_ci95"] = list(boot_ci(values))
        rows.append(row)
    print("| arm | final-front trials stopped | epochs saved | hypervolume found / final |")
    print("|---|---|---|---|")
    for r in rows:
        cells = [
            f"{r[k]:.3f} [{r[k + '_ci95'][0]:.3f}, {r[k + '_ci95'][1]:.3f}]"
            for k in ("front_stopped", "epochs_saved", "hypervolume")
        ]
        print(f"| {r['arm']} | " + " | ".join(cells) + " |")
    return {
        "recording": RECORDINGS[name].name if name in RECORDINGS else name,
        "epochs": epochs,
        "configs": n,
        "front": sorted(front),
        "rows": rows,
    }


def boot_ci(values: list[float], n: int = 1000) -> tuple[float, float]:
    """95% percentile bootstrap of the mean over seeds."""
    rng = np.random.default_rng(0)
    v = np.asarray(values, dtype=float)
    means = v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("costs")
    rp = sub.add_parser("run")
    rp.add_argument("--reps", type=int, default=100)
    rp.add_argument("--recordings", nargs="*", default=list(RECORDINGS))
    rp.add_argument("--arms", nargs="*", default=list(ARMS))
    rp.add_argument(
        "--lcbench",
        type=int,
        nargs="*",
        help="LCBench tasks instead of the recordings: 64 random configs each, val_accuracy "
        "against seconds per epoch (bench/lcbench.py)",
    )
    rp.add_argument(
        "--latency",
        choices=("architecture", "config"),
        default="architecture",
        help="architecture: each architecture's median measurement (what a sweep measures: "
        "once per architecture); config: each config's own measurement (latency varying "
        "continuously, a proxy for a space with many architectures)",
    )
    args = ap.parse_args()
    LATENCY["mode"] = args.latency
    if args.cmd == "costs":
        costs()
        return 0
    from bench.common import record

    t0 = time.perf_counter()
    if args.lcbench is not None:
        sys.path.insert(0, str(HERE))
        results = {
            f"lcbench-{t}": replay(f"lcbench-{t}", args.reps, args.arms, lcbench_recording(t))
            for t in (args.lcbench or __import__("lcbench").LCBench().tasks)
        }
    else:
        results = {name: replay(name, args.reps, args.arms) for name in args.recordings}
    meta = {
        "adaptive": ADAPTIVE,
        "senses": SENSES,
        "latency": args.latency,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    section = "pareto_replay" + ("" if args.latency == "architecture" else "_per_config")
    if args.lcbench is not None:
        section, meta["cost"] = "pareto_replay_lcbench", "seconds per epoch (in latency_ms)"
    record(section, [{"recording": k, **v} for k, v in results.items()], meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
