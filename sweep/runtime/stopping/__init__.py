"""Early-stopping rules, one module each behind one interface (`base.StoppingRule`):

- `fifo`: none; every trial runs its epochs;
- `asha`: ASHA, its rung records kept in the ledger for a resume;
- `adaptive` (the default): FIFO for the first trials, then ASHA's rungs from the first epoch
  the sweep's own curves say ranks the final value, or none; with several objectives its
  rungs stop by dominance (`dominance`);
- `median`: the median rule, the worked example of adding one (docs/sweeps.md).

A new rule is a module here with a `StoppingRule` subclass, a line in `RULES`, and its keys
in `sweep.spec.sections.EARLY_STOPPING_KEYS` (with its defaults in `EarlyStopping`).
"""

from __future__ import annotations

from typing import Any

from sweep.runtime.stopping.adaptive import Adaptive
from sweep.runtime.stopping.asha import Asha
from sweep.runtime.stopping.base import StoppingRule
from sweep.runtime.stopping.fifo import Fifo
from sweep.runtime.stopping.median import Median

RULES: dict[str, type[StoppingRule]] = {r.name: r for r in (Fifo, Asha, Adaptive, Median)}


def rule_for(spec: Any) -> StoppingRule:
    """The rule a space file names (`early_stopping.name`, checked against the same names
    when the file is read)."""
    return RULES[spec.early_stopping.name](spec)
