"""One summary for every dataset kind: split sizes and class counts as one JSON object.

python -m nrfer.data --dataset ferplus --root data/ferplus --mode crossentropy --summary
python -m nrfer.data --dataset folders --root data/paper --label-file fer2013new_jin2.csv --summary
python -m nrfer.data --dataset synthetic --summary

The same face twice, within and across splits (docs/data.md, "Leakage audit"):
nrfer data audit --dataset ferplus --root data/ferplus --out audit/
"""

from __future__ import annotations

import json
import sys

from nrfer.cli import run_command
from nrfer.config import make_config
from nrfer.data import load_data
from nrfer.parsers import data_parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["audit"]:
        from nrfer.data.audit_cli import main as audit_main

        return audit_main(argv[1:])
    parser = data_parser(__doc__)
    return run_command(parser, _summary, argv)


def _summary(args) -> int:
    data_cfg = {"dataset": args.dataset, "root": args.root, "label_mode": args.mode}
    if args.label_file:
        data_cfg["label_file"] = args.label_file
    data = load_data(make_config({"data": data_cfg}, "command line").data, sr=False)
    print(json.dumps(data.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
