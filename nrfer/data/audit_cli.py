"""`nrfer data audit`: the same face more than once, within a split and across splits
(exact copies, near copies, mirrored, shifted), counted by split pair with both labels.

    nrfer data audit --dataset ferplus --root data/ferplus --out audit/
    nrfer data audit --dataset synthetic --out audit/ --json

Writes into --out: audit.csv (one row per pair: both faces as split:index, their splits,
labels and pixel SHA-1s, the hash distances, the correlation, the kind), contact_sheet.png
(the closest cross-split pairs) and summary.json; prints a one-screen summary. The faces
of val and test with a twin in an earlier split are what `nrfer evaluate --exclude
audit/audit.csv` leaves out of the score. How it works: nrfer/data/audit.py; docs/data.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from nrfer.cli import run_command
from nrfer.parsers import audit_parser


def parser():
    return audit_parser(__doc__)


def main(argv: list[str] | None = None) -> int:
    return run_command(parser(), _audit, argv)


def _audit(args) -> int:
    from nrfer.config import make_config
    from nrfer.data import SPLITS, load_data
    from nrfer.data import audit as A
    from nrfer.files import save_image, write_atomic

    data_cfg = {"dataset": args.dataset, "root": args.root}
    if args.label_file:
        data_cfg["label_file"] = args.label_file
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a folder; name a folder for the audit")
    start = time.perf_counter()
    data = load_data(make_config({"data": data_cfg}, "command line").data, sr=False)
    faces = A.Faces.of(
        {s: data.split(s).images for s in SPLITS},
        {s: data.split(s).labels for s in SPLITS},
        data.class_names,
    )
    result = A.audit(faces)
    summary = A.summary(result)
    summary.update(
        dataset=args.dataset, data=data.source, seconds_total=round(time.perf_counter() - start, 1)
    )
    out.mkdir(parents=True, exist_ok=True)
    A.write_csv(out / "audit.csv", result)
    save_image(A.contact_sheet(result, args.sheet), out / "contact_sheet.png")
    write_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    if args.json:
        print(json.dumps(summary))
    else:
        print(A.screen(summary, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
