"""Pretrained weights, fetched once before a sweep: `nrfer weights fetch --space NAME`
downloads timm's weights for every backbone the space can sample (or each `--backbone`)
into the local Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`, else ~/.cache/huggingface/hub),
with a progress bar, skipping what is there. Trials only read that cache (`model.pretrained:
hub`) and never download: many trials starting at once would race on the hub. `HF_ENDPOINT`
names a mirror. Without internet it fails naming what is missing and how to copy a cache
from a machine that has it."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from nrfer.cli import run_command
    from sweep.commands.parsers import weights_parser

    return run_command(weights_parser(__doc__), run, argv)


def wanted(args) -> list[str]:
    """The backbones named by --backbone and by each --space, in order, once each."""
    from sweep.spec.space import load_space

    names = list(args.backbone)
    for space in args.space:
        names += load_space(space).backbones()
    if not names:
        raise ValueError("nrfer weights fetch: name a --space or a --backbone")
    return list(dict.fromkeys(names))


def run(args) -> int:
    from nrfer.models.pretrained import (
        HubUnreachable,
        PretrainedError,
        copy_cache_recipe,
        fetch_hub,
        hub_cache_dir,
    )

    backbones = wanted(args)
    print(f"timm weights for {len(backbones)} backbone(s), into {hub_cache_dir()}")
    errors: list[str] = []
    unreachable: list[str] = []
    reason = ""
    for backbone in backbones:
        try:
            path, fetched = fetch_hub(backbone)
        except HubUnreachable as e:
            unreachable.append(backbone)
            reason = reason or e.reason
        except PretrainedError as e:
            errors.append(str(e))
        else:
            print(f"  {backbone:40s} {'downloaded' if fetched else 'already here'}: {path}")
            continue
        print(f"  {backbone:40s} missing", flush=True)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if unreachable:
        flags = " ".join(
            [*(f"--space {s}" for s in args.space)]
            + [f"--backbone {b}" for b in args.backbone if b in unreachable]
        )
        print(
            f"error: the Hugging Face hub could not be reached ({reason}); missing: "
            f"{', '.join(unreachable)}\n  {copy_cache_recipe(flags)}",
            file=sys.stderr,
        )
    return 1 if errors or unreachable else 0
