"""python -m nrfer.sr --root DATA --scale 4|8 --method bicubic|lanczos|model [--weights FILE]
--out CACHE: super-resolve every split of a dataset into a cache folder (see nrfer.sr.cache).
An up-to-date cache is reused; one whose manifest does not match its sources is rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

from nrfer.cli import check_out_dir, run_command
from nrfer.parsers import sr_parser


def read_data(args):
    from nrfer.config import ConfigError, DataConfig
    from nrfer.data import load_data

    dataset = args.dataset or ("ferplus" if args.root else "synthetic")
    try:
        cfg = DataConfig(dataset=dataset, root=args.root, label_mode=args.label_mode)
    except Exception as e:
        raise ConfigError(f"--dataset/--root: {e}") from None
    return load_data(cfg)


def main(argv: list[str] | None = None) -> int:
    return run_command(sr_parser(__doc__), _build, argv)


def _build(args) -> int:
    from nrfer.sr.cache import ensure_cache

    check_out_dir(Path(args.out), "--out")
    data = read_data(args)
    folder, manifest, built = ensure_cache(
        data, args.method, args.scale, args.out, args.weights, args.device, args.batch_size
    )
    summary = {
        "cache": str(folder),
        "built": built,
        "build_id": manifest["build_id"],
        "shapes": {s: o["shape"] for s, o in manifest["outputs"].items()},
        "images_per_s": manifest["images_per_s"],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
