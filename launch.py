"""Run a sweep or a study: `python launch.py --space ferplus_vit.yaml` is `nrfer sweep
--space ferplus_vit.yaml` (sweep/commands/sweep.py; `nrfer sweep --help` lists every option)."""

import sys

from sweep.commands.sweep import exit_code, main
from sweep.runtime import check_data, check_pretrained

__all__ = ["check_data", "check_pretrained", "exit_code", "main"]

if __name__ == "__main__":
    sys.exit(main())
