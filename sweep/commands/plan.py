"""`launch.py --dry-run`: the parameters, the resource plan and a few sampled configs."""

from __future__ import annotations

import json

import optuna

from nrfer.data import DATASETS
from nrfer.errors import first_line
from sweep.runtime import rule_for
from sweep.spec.space import SpaceError, SweepSpec


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


def input_shape(cfg) -> tuple[int, int, int]:
    """The (C, H, W) a trial's model will see, without reading the data: the dataset's
    channels (its registry entry; image folders as FER+'s, 1) x 48x48 (`data.image_size`
    when set), times the SR scale."""
    d = cfg.data
    side = d.image_size or 48
    if d.sr.method != "none":
        side *= d.sr.scale
    return DATASETS.props(d.dataset)["channels"] or 1, side, side


def tensor_bytes(state) -> int:
    """The bytes of every tensor in a (nested) state dict: what torch.save writes, give or
    take its small header."""
    import torch

    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(tensor_bytes(v) for v in state.values())
    if isinstance(state, list | tuple):
        return sum(tensor_bytes(v) for v in state)
    return 0


def checkpoint_bytes(model, cfg) -> tuple[int, int]:
    """(best.pt, last.pt) bytes of one trial of `cfg`: the weights, and the weights plus
    the optimiser's state after a step (AdamW: two slots per parameter, SGD: one)."""
    import torch

    from nrfer.optim import build_optimizer

    optimizer = build_optimizer(model, cfg.optim)
    shape = input_shape(cfg)
    model.train()
    model(torch.rand(2, *shape)).sum().backward()
    optimizer.step()
    weights = tensor_bytes(model.state_dict())
    return weights, weights + tensor_bytes(optimizer.state_dict())


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def disk_plan(spec: SweepSpec, sizes: list[tuple[int, int]]) -> list[str]:
    """What the sweep will keep on disk, from the largest model's checkpoints
    (sweep.runtime.retention): per running trial in --storage, and best.pt of the top K in MLflow."""
    best, last = max(b for b, _ in sizes), max(la for _, la in sizes)
    running = min(spec.budget.max_concurrent, spec.budget.num_samples)
    # steady: Tune's two last checkpoints + best.pt; while one is written, the new last.pt
    # (moved to Tune's copy) and Tune's third copy until it deletes the oldest
    steady, peak = 2 * last + best, 4 * last + best
    keep = spec.tracking.keep_checkpoints
    kept = spec.budget.num_samples if keep is None else min(keep, spec.budget.num_samples)
    return [
        f"disk (largest model): best.pt {gib(best)}, last.pt {gib(last)} (weights + "
        "optimiser state)",
        f"  --storage: per running trial {gib(steady)} (peak {gib(peak)} while it "
        f"checkpoints) x {running} at a time = {gib(running * peak)} at most; an ended trial "
        f"keeps nothing, an errored one {gib(steady)} until --resume retries it",
        f"  MLflow: best.pt of the top {kept} trial(s) = {gib(kept * best)} "
        "(tracking.keep_checkpoints), plus each run's config, curves and previews (< 1 MiB)",
    ]


def check_models(spec: SweepSpec, samples: list[dict]) -> tuple[list[str], list[tuple[int, int]]]:
    """Build each distinct model of `samples` (random init: weights are checked apart) and
    push one batch of two dummy images through it; a model that cannot is a SpaceError
    naming the sample. Returns one line per model checked, and each one's
    (best.pt, last.pt) bytes."""
    import torch

    from nrfer.models import build_model

    seen, lines, sizes = set(), [], []
    for i, params in enumerate(samples, start=1):
        cfg = spec.trial_config(params)
        cfg.model.pretrained = None
        shape = input_shape(cfg)
        key = json.dumps([cfg.model.model_dump(), shape], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        classes = len(DATASETS.props(cfg.data.dataset)["class_names"])
        try:
            model = build_model(cfg.model, classes, shape[1:]).eval()
            with torch.no_grad():
                out = model(torch.rand(2, *shape))
            if tuple(out.shape) != (2, classes):
                raise ValueError(f"the model answered with shape {tuple(out.shape)}")
        except Exception as e:  # shape mismatches, junk backbone_args, ...
            first = first_line(e, 300)
            raise SpaceError(
                f"{spec.source}: sample {i} ({json.dumps(params, sort_keys=True)}) builds a model "
                f"that fails on a {shape[0]}x{shape[1]}x{shape[2]} input: {first}"
            ) from None
        n_params = sum(p.numel() for p in model.parameters())
        sizes.append(checkpoint_bytes(model, cfg))
        m = cfg.model
        resizer = f"resizer n={m.resizer.n}" if m.resizer.enabled else "no resizer"
        lines.append(
            f"  {m.backbone}, {resizer}, stn {m.stn or 'off'}, head {m.head}, on "
            f"{shape[0]}x{shape[1]}x{shape[2]}: ok "
            f"({n_params / 1e6:.1f} M parameters)"
        )
    return lines, sizes


def print_plan(spec: SweepSpec, n: int = 3) -> None:
    print(f"sweep {spec.name!r} from {spec.source}: {spec.metric} ({spec.mode}), seed {spec.seed}")
    print(f"parameters ({len(spec.params)}):")
    for p in spec.params:
        cond = f"  when {p.when}" if p.when else ""
        print(f"  {p.key:32s} {p.kind:10s} {p.args}{cond}")
    sched = rule_for(spec).describe()
    print(f"early stopping: {sched}")
    if spec.multi_objective and spec.cost is not None:
        c = spec.cost
        print(
            f"objectives: {', '.join(f'{k} ({v})' for k, v in spec.senses.items())}; searcher "
            f"{spec.searcher} proposes along their Pareto front. Each architecture's cost is "
            f"measured once, on the trial's device: params, GFLOPs, latency at batch "
            f"{', '.join(map(str, c.batch_sizes))} (median of {c.repeats} calls after {c.warmup})"
        )
    print(
        f"budget: {spec.budget.num_samples} trials, {spec.budget.max_concurrent} at a time, time budget {spec.budget.time_budget_s or 'none'}"
    )
    r, n_max = spec.resources, spec.budget.max_concurrent
    print(
        f"resources: {r.cpu} CPU + {r.gpu} GPU per trial -> {n_max * r.cpu} CPU + "
        f"{n_max * r.gpu} GPU at full concurrency"
    )
    if spec.is_study:  # every cell is run: every cell's model is checked
        study, samples = spec.study_section, spec.cells()
        print(
            f"study: {len(samples)} cells x {len(study.seeds)} seeds {study.seeds} = "
            f"{spec.budget.num_samples} runs, each tested once; table rows {study.rows}, "
            f"compared with {' and with '.join(map(str, study.baselines)) or 'no baseline'}"
            + (
                f", extra evaluation sets {[e.name for e in study.eval_sets]}"
                if study.eval_sets
                else ""
            )
        )
        label = "cell"
    else:
        samples, label = sample_configs(spec, max(n, 12)), "sample"
    for i, cfg in enumerate(samples[:n], start=1):
        print(f"{label} {i}: {json.dumps(cfg, sort_keys=True)}")
    print(f"models of {len(samples)} {label}s, each built and run on a dummy batch:")
    lines, sizes = check_models(spec, samples)
    for line in lines + disk_plan(spec, sizes):
        print(line)
