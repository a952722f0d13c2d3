"""What several test files share (imported as `from helpers import ...`; fixtures stay in
conftest.py): the repository's paths and a tiny sweep space that runs in seconds."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_VOTES = REPO.parent / "shared" / "data" / "ferplus" / "fer2013new.csv"

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


def tiny_space(
    name: str,
    root,
    *,
    search: dict,
    scheduler: dict,
    budget: dict,
    resizer: dict | None = None,
    seed: int = 0,
) -> dict:
    """A sweep space over a one-block ViT at 32 px on the small synthetic set: seconds per trial."""
    model = {"backbone": "vit_tiny_patch16_224", "backbone_args": dict(TINY_VIT)}
    if resizer is not None:
        model["resizer"] = resizer
    return {
        "name": name,
        "seed": seed,
        "data": {"dataset": "synthetic", "root": str(root)},
        "fixed": {"model": model, "train": {"batch_size": 64, "device": "cpu"}},
        "search": search,
        "early_stopping": scheduler,
        "budget": budget,
        "resources": {"cpu": 1},
    }


def fake_curves(
    scheduler, qs: list[float], epochs: int, storage, callbacks=(), concurrent: int = 1
) -> list[int]:
    """Real Ray Tune over fast fake trials: one per q (in order, `concurrent` at a time),
    whose val_acc at epoch e is q * e / epochs; `scheduler` stops them or not. Returns the
    epochs each trial ran, in the order of `qs`."""
    import ray
    from ray import tune

    from sweep.runtime.local_ray import init_ray

    def curve(config):
        for e in range(1, epochs + 1):
            tune.report({"val_acc": config["q"] * e / epochs})

    started = init_ray(verbose=0, num_cpus=concurrent)
    try:
        results = tune.Tuner(
            tune.with_resources(curve, {"cpu": 1}),
            param_space={"q": tune.grid_search(list(qs))},
            tune_config=tune.TuneConfig(
                scheduler=scheduler, metric="val_acc", mode="max", reuse_actors=True
            ),
            run_config=tune.RunConfig(
                storage_path=str(storage), name="fake", callbacks=list(callbacks), verbose=0
            ),
        ).fit()
    finally:
        if started:
            ray.shutdown()
    ran = {r.config["q"]: int(r.metrics["training_iteration"]) for r in results}
    return [ran[q] for q in qs]


def write_rafdb(root, n_per_class: int = 3):
    """RAF-DB's released layout: EmoLabel/list_patition_label.txt + Image/aligned/*.jpg."""
    import numpy as np
    from PIL import Image

    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    rng = np.random.default_rng(1)
    lines = []
    for split in ("train", "test"):
        for label in range(1, 8):  # RAF-DB's 1..7
            for i in range(n_per_class):
                name = f"{split}_{label}{i:04d}.jpg"
                face = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
                aligned = root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")
                Image.fromarray(face).save(aligned)
                lines.append(f"{name} {label}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


# A sweep folder's trials as the checkpoint retention sees them (test_retention, test_ledger)
def trial_files(exp, trial_id: str) -> tuple:
    """A trial as a sweep leaves it: its work folder with best.pt, two Tune checkpoints."""
    from sweep.runtime.retention import work_dir

    work = work_dir(exp, trial_id)
    (work / "checkpoint").mkdir(parents=True)
    (work / "checkpoint" / "best.pt").write_bytes(b"w" * 100)
    (work / "previews").mkdir()
    tune_dir = exp / f"trial_{trial_id}"
    for i in (3, 4):
        (tune_dir / f"checkpoint_00000{i}").mkdir(parents=True)
        (tune_dir / f"checkpoint_00000{i}" / "last.pt").write_bytes(b"s" * 300)
    (tune_dir / "result.json").write_text("{}")
    return work, tune_dir


class Store:
    """A CheckpointStore over a folder standing in for the runs' artifacts: what each trial
    has uploaded, its tag, and switches that make a call fail as an MLflow outage does."""

    def __init__(self, root) -> None:
        self.root, self.tags, self.down = root / "artifacts", {}, set()

    def upload(self, trial_id, best) -> bool:
        assert best == self.root.parent / "work" / trial_id / "checkpoint" / "best.pt"
        if "upload" in self.down:
            return False
        (self.root / trial_id).mkdir(parents=True, exist_ok=True)
        (self.root / trial_id / "best.pt").write_bytes(best.read_bytes())
        return True

    def drop(self, trial_id) -> bool:
        if "drop" in self.down:
            return False
        (self.root / trial_id / "best.pt").unlink(missing_ok=True)
        return self.tag(trial_id, False)

    def tag(self, trial_id, kept) -> bool:
        if "tag" in self.down:
            return False
        self.tags[trial_id] = kept
        return True

    def held(self) -> set:
        return {p.parent.name for p in self.root.glob("*/best.pt")}


# --- a sweep's refusals, the run and its dry run side by side -------------------------


def both(capsys, args: list[str]) -> list[tuple[int, str]]:
    """(exit code, stderr) of the run and of its dry run."""
    import launch

    out = []
    for extra in ([], ["--dry-run"]):
        rc = launch.main([*args, *extra])
        out.append((rc, capsys.readouterr().err))
    return out


def space_args(tmp_path, synthetic_root, storage, uri=None) -> list[str]:
    import uuid

    import yaml

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


def leak_audit(root, path, twins: dict[int, int]):
    """An audit.csv naming test faces (keys) as twins of train faces (values) of the FER+
    files at `root`, as `nrfer data audit` writes it."""
    from nrfer.data import audit as A
    from nrfer.data.ferplus import read_ferplus

    data = read_ferplus(root)
    faces = A.Faces.of({s: data.split(s).images for s in ("train", "val", "test")})
    n_train, n_val = len(data.train), len(data.val)
    pairs = [A.Pair(t, n_train + n_val + k, "near", 1, 1, 0.995) for k, t in twins.items()]
    A.write_csv(path, A.Audit(faces, pairs, len(pairs), {}))
    return path
