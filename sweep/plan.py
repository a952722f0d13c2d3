"""`launch.py --dry-run`: the parameters, the resource plan and a few sampled configs."""

from __future__ import annotations

import json

import optuna

from sweep.space import SweepSpec


def sample_configs(spec: SweepSpec, n: int = 3) -> list[dict]:
    """Sample from the define-by-run space with the sweep's own seeded sampler."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=spec.sampler())
    out = []
    for _ in range(n):
        trial = study.ask()
        spec.define_by_run(trial)
        spec.trial_config(trial.params)  # each sample must build a valid trial config
        out.append(dict(trial.params))
    return out


def print_plan(spec: SweepSpec, n: int = 3) -> None:
    print(f"sweep {spec.name!r} from {spec.source}: {spec.metric} ({spec.mode}), seed {spec.seed}")
    print(f"parameters ({len(spec.params)}):")
    for p in spec.params:
        cond = f"  when {p.when}" if p.when else ""
        print(f"  {p.key:32s} {p.kind:10s} {p.args}{cond}")
    s = spec.early_stopping
    sched = (
        f"ASHA(grace {s['grace_period']}, reduction {s['reduction_factor']}, max {s['max_epochs']} epochs)"
        if s["name"] == "asha"
        else f"FIFO({s['max_epochs']} epochs)"
    )
    print(f"early stopping: {sched}")
    print(
        f"budget: {spec.num_samples} trials, {spec.max_concurrent} at a time, time budget {spec.time_budget_s or 'none'}"
    )
    r = spec.resources
    print(
        f"resources: {r['cpu']} CPU + {r['gpu']} GPU per trial -> {spec.max_concurrent * r['cpu']} CPU + {spec.max_concurrent * r['gpu']} GPU at full concurrency"
    )
    for i, cfg in enumerate(sample_configs(spec, n), start=1):
        print(f"sample {i}: {json.dumps(cfg, sort_keys=True)}")
