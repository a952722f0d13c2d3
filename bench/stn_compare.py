"""Our STN vs the paper's (model.stn: true vs paper), and none, side by side in one run.

    python bench/stn_compare.py                     # demo CNN, synthetic FER+ x2 SR, CPU
    python bench/stn_compare.py --seeds 0 1 2 --epochs 8

Same data, seeds, epochs and everything else; reported per variant: best val accuracy
(mean +- std over seeds), seconds per epoch, parameters of the STN. This is a measurement
on the synthetic faces, not on FER+: it says whether the two nets behave alike, not which
wins on real faces. Rows go to bench/results.json (section stn_compare).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, record  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--n-train", type=int, default=1500)
    args = parser.parse_args()

    from nrfer.config import make_config
    from nrfer.data import load_data
    from nrfer.train import fit

    synthetic = {"seed": 0, "n_train": args.n_train, "n_val": 300, "n_test": 300}
    data_cfg = {
        "dataset": "synthetic",
        "synthetic": synthetic,
        "sr": {"method": "bicubic", "scale": 2},
    }
    data = load_data(make_config({"data": data_cfg}).data)  # 96 px faces, read once
    rows = []
    for stn in (False, True, "paper"):
        accs, secs, params = [], [], 0
        for seed in args.seeds:
            cfg = make_config(
                {
                    "data": data_cfg,
                    "model": {
                        "backbone": "resnet10t",
                        "input_size": 64,
                        "stn": stn,
                        "resizer": {"n": 8},
                    },
                    "augment": {"erase": 0.0},
                    "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05},
                    "train": {
                        "epochs": args.epochs,
                        "batch_size": 64,
                        "seed": seed,
                        "device": "cpu",
                    },
                }
            )
            t0 = time.perf_counter()
            result = fit(cfg, data=data, evaluate_test=False)
            secs.append((time.perf_counter() - t0) / args.epochs)
            accs.append(result.best_val_acc)
            if stn:
                from nrfer.models import build_model

                model = build_model(cfg.model, data.num_classes, data.train.image_size)
                params = sum(p.numel() for p in model.stn.parameters())
        rows.append(
            {
                "stn": str(stn).lower(),
                "best_val_acc": float(np.mean(accs)),
                "std": float(np.std(accs)),
                "s_per_epoch": float(np.mean(secs)),
                "stn_params": params,
                "seeds": len(args.seeds),
            }
        )
        print_table("STN comparison (so far)", rows)
    record(
        "stn_compare",
        rows,
        {"epochs": args.epochs, "n_train": args.n_train, "input": "96 px (x2 bicubic)"},
    )


if __name__ == "__main__":
    main()
