"""LCBench's learning curves, read from the YAHPO Gym surrogate with onnxruntime alone.

    python bench/lcbench.py query --task 3945 --epoch 52 \
        --config '{"batch_size": 91, "learning_rate": 0.00316, "max_dropout": 0.5,
                   "max_units": 256, "momentum": 0.545, "num_layers": 3, "weight_decay": 0.05}'
    python bench/lcbench.py tasks      # the 34 OpenML task ids, numerically sorted

The surrogate (bench/lcbench_data/: model.onnx, config_space.json, encoding.json, unchanged
copies of slds-lmu/yahpo_data commit efdab90, folder lcbench/, Apache-2.0) maps an OpenML task,
a configuration of a funnel-shaped MLP and an epoch (1..52) to LCBench's outputs. This reader
feeds the network what `yahpo-gym` 1.0.2's `objective_function` feeds it (the task's integer
code; epoch, batch_size, learning_rate, momentum, weight_decay, num_layers, max_units,
max_dropout as float32, in that order) and names the outputs as yahpo-gym does. It does not
depend on yahpo-gym (which pins numpy<2): tests/bench/test_lcbench.py checks it against
bench/lcbench_data/reference.json, made by bench/lcbench_reference.py in a throwaway venv.

`time` is the training time in seconds up to and including the epoch (cumulative), so one
epoch's cost is the difference of consecutive epochs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from functools import cached_property
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("NRFER_LCBENCH", Path(__file__).with_name("lcbench_data")))
Y_NAMES = (
    "time",
    "val_accuracy",
    "val_cross_entropy",
    "val_balanced_accuracy",
    "test_cross_entropy",
    "test_balanced_accuracy",
)
# the network's continuous inputs, in its order (yahpo-gym's cont_names for lcbench)
X_NAMES = (
    "epoch",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
)
PARAMS = X_NAMES[1:]  # a configuration: everything but the task and the epoch
EPOCHS = 52


class LCBench:
    """The surrogate of one folder; `query` for single points, `curves` for whole runs."""

    def __init__(self, folder: str | Path = DATA, threads: int = 1) -> None:
        self.folder = Path(folder)
        model = self.folder / "model.onnx"
        if not model.is_file():
            raise FileNotFoundError(
                f"{model}: the LCBench surrogate is missing (bench/lcbench_data/ holds it; "
                "or set NRFER_LCBENCH to a folder with model.onnx, encoding.json, config_space.json)"
            )
        import onnxruntime as rt

        options = rt.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        self.session = rt.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        codes = json.loads((self.folder / "encoding.json").read_text())["OpenML_task_id"]
        self.codes = {int(k): v for k, v in codes.items() if k != "#na#"}
        self.space = {
            h["name"]: h
            for h in json.loads((self.folder / "config_space.json").read_text())["hyperparameters"]
        }

    @cached_property
    def tasks(self) -> list[int]:
        """The 34 tasks the space offers, numerically sorted."""
        return sorted(int(t) for t in self.space["OpenML_task_id"]["choices"])

    def check(self, task: int, config: dict, epoch: int | None = None) -> None:
        if int(task) not in self.tasks:
            raise ValueError(f"task {task}: not an LCBench task; allowed: {self.tasks}")
        missing = [p for p in PARAMS if p not in config]
        unknown = [k for k in config if k not in PARAMS]
        if missing or unknown:
            raise ValueError(
                f"config: missing {missing}, unknown {unknown}; the keys are {list(PARAMS)}"
            )
        for name, value in list(config.items()) + ([("epoch", epoch)] if epoch else []):
            h = self.space[name]
            if not h["lower"] <= value <= h["upper"]:
                raise ValueError(f"{name} = {value}: outside [{h['lower']}, {h['upper']}]")

    def predict(self, task: int, x: np.ndarray) -> np.ndarray:
        """Raw outputs [n, 6] for inputs x [n, 8] (X_NAMES order) of one task."""
        x = np.asarray(x, dtype=np.float32).reshape(-1, len(X_NAMES))
        cat = np.full((len(x), 1), self.codes[int(task)], dtype=np.int32)
        return self.session.run(None, {"x_cat": cat, "x_cont": x})[0]

    def query(self, task: int, config: dict, epoch: int) -> dict[str, float]:
        """yahpo-gym's `objective_function` for one configuration at one epoch."""
        self.check(task, config, epoch)
        x = [float(epoch)] + [float(config[p]) for p in PARAMS]
        return {
            k: float(v) for k, v in zip(Y_NAMES, self.predict(task, np.array([x]))[0], strict=True)
        }

    def curves(self, task: int, configs: list[dict], epochs: int = EPOCHS) -> np.ndarray:
        """Every epoch 1..epochs of every configuration in one call: [n, epochs, 6]."""
        rows = [
            [float(e)] + [float(c[p]) for p in PARAMS]
            for c in configs
            for e in range(1, epochs + 1)
        ]
        return self.predict(task, np.array(rows)).reshape(len(configs), epochs, len(Y_NAMES))

    def sample(self, rng: np.random.Generator, n: int) -> list[dict]:
        """n configurations drawn uniformly from the space (log scale where it says log)."""
        out: list[dict] = [{} for _ in range(n)]
        for name in PARAMS:
            h = self.space[name]
            lo, hi = float(h["lower"]), float(h["upper"])
            if h["type"] == "uniform_int":  # ConfigSpace widens by half a step, then rounds
                lo, hi = lo - 0.4999, hi + 0.4999
            u = rng.uniform(math.log(lo), math.log(hi), n) if h["log"] else rng.uniform(lo, hi, n)
            v = np.exp(u) if h["log"] else u
            for row, x in zip(out, v, strict=True):
                row[name] = int(round(x)) if h["type"] == "uniform_int" else float(x)
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA), help="the surrogate's folder")
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("query", help="one configuration at one epoch: the outputs as JSON")
    q.add_argument("--task", type=int, required=True)
    q.add_argument("--epoch", type=int, required=True)
    q.add_argument("--config", required=True, help="JSON object with " + ", ".join(PARAMS))
    sub.add_parser("tasks", help="the task ids, numerically sorted")
    args = ap.parse_args(argv)
    try:
        bench = LCBench(args.data)
        if args.cmd == "tasks":
            print(" ".join(map(str, bench.tasks)))
            return 0
        try:
            config = json.loads(args.config)
        except json.JSONDecodeError as e:
            raise ValueError(f"--config: not JSON ({e})") from None
        if not isinstance(config, dict):
            raise ValueError("--config: give a JSON object")
        print(json.dumps(bench.query(args.task, config, args.epoch)))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
