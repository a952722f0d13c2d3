"""What the MLflow UI shows of a sweep: the experiment's kind, a saved view of the sweep's
trials with their metric and searched values as columns, run names a person can read,
one-line run descriptions, and the data each run trained on as an MLflow dataset input."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag

# MLflow 3's UI opens an experiment on the view its kind names; training work is this one
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
DESCRIPTION = "mlflow.note.content"  # the run's "Description" in the UI
# MLflow 3.17's runs page opened with `?viewStateShareKey=K` takes its columns, filter and
# order from the experiment tag `mlflow.sharedViewState.K` (its saved views are such tags,
# listed by name); URL search facets (searchFilter, orderByKey, ...) beside the key make it
# ignore the view, so the link carries the key alone
SHARED_VIEW = "mlflow.sharedViewState."
DATASET_CONTEXT = "mlflow.data.context"
MAX_NAME = 60
# a timm name reads as its family and size: swin_tiny_patch4_window7_224.ms_in1k -> swin_tiny
_TIMM_TAIL = re.compile(r"(_(patch|window)\d+.*|_\d{3}(_.*)?|\..*)$")
_GENERIC = {"enabled", "name", "method", "scale", "size", "n", "k"}


def trial_number(trial_name: str) -> str | None:
    """`t03` from a Tune trial name made by `tune_trial_name` (`t03_762caea9`)."""
    m = re.match(r"(t\d+)_", trial_name or "")
    return m.group(1) if m else None


def tune_trial_name(trial) -> str:
    """Tune's `trial_name_creator`: `t03_<trial id>`, numbered in the order the searcher
    proposed the trials (Tune's experiment tag starts with that counter)."""
    counter = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    return f"t{int(counter):02d}_{trial.trial_id}" if counter.isdigit() else str(trial.trial_id)


def short_value(v: Any) -> str:
    if isinstance(v, float):
        if v == 0 or not math.isfinite(v):
            return str(v)
        if 1e-2 <= abs(v) < 1e4:  # two significant digits: 0.7, 1.8, 1200
            return f"{float(f'{v:.2g}'):g}"
        mant, exp = f"{v:.1e}".split("e")
        return f"{mant.removesuffix('.0')}e{int(exp)}"  # 3.1e-4, 1e-3
    if isinstance(v, str):
        return _TIMM_TAIL.sub("", v) or v
    return str(v)


def _label(key: str) -> str:
    parts = key.split(".")
    if parts[-1] in _GENERIC and len(parts) > 1:
        return ".".join(parts[-2:]) if parts[-1] != "enabled" else parts[-2]
    return parts[-1]


def run_name(number: str | None, sampled: dict[str, Any], trial_id: str) -> str:
    """`t03 swin_tiny fpdls lr=3.1e-4`: the number and what this trial's sampled values say
    (a chosen name as itself, a true switch by its name, numbers as key=value; a study's
    seed right after the number), at most MAX_NAME characters, cut between words (never
    inside a value) with "…"; the full config stays in the run's params."""
    words = [number or trial_id]
    seeds = {k: v for k, v in sampled.items() if k.split(".")[-1] == "seed"}
    for key, v in {**seeds, **sampled}.items():
        if isinstance(v, bool):
            if v:
                words.append(_label(key))
        elif isinstance(v, str):
            words.append(short_value(v))
        elif v is not None:
            words.append(f"{_label(key)}={short_value(v)}")
    name = " ".join(words)
    if len(name) <= MAX_NAME:
        return name
    kept = words[:1]
    for w in words[1:]:
        if len(" ".join([*kept, w])) + 2 > MAX_NAME:
            break
        kept.append(w)
    return " ".join(kept) + " …"


def trial_description(result: dict, metric: str, max_epochs: int, how: str) -> str:
    """One line on a trial's outcome: `how` is finished | stopped | diverged | failed."""
    epochs = int(result.get("training_iteration") or result.get("epoch") or 0)
    best = result.get(f"best_{metric}", result.get(metric))
    score = f"best {metric} {best:.4f}" if isinstance(best, int | float) else f"no {metric}"
    if how == "stopped":
        return f"{score}; stopped early by the scheduler after {epochs} of {max_epochs} epochs"
    if how == "diverged":
        return f"diverged (non-finite loss) in epoch {epochs} of {max_epochs}"
    if how == "failed":
        return f"failed after {epochs} of {max_epochs} epochs; see the error artifact"
    return f"{score} over {epochs} of {max_epochs} epochs"


def sweep_description(
    name: str, source: str, n_trials: int, best: dict | None, metric: str, counts: dict
) -> str:
    head = f"Sweep {name} ({source}): {n_trials} trials"
    done = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    if best is None:
        return f"{head}{f' ({done})' if done else ''}; no trial reported {metric}"
    who = best.get("name") or best.get("trial_id")
    return f"{head}{f' ({done})' if done else ''}; best {metric} {best[metric]:.4f}: {who}"


def dataset_input(ident: dict, context: str = "training") -> DatasetInput:
    """An MLflow dataset input from `nrfer.data.identity.identity(...)`."""
    return DatasetInput(
        Dataset(
            name=ident["name"],
            digest=ident["digest"],
            source_type="local",
            source=json.dumps({"uri": ident["source"]}),
            profile=json.dumps(ident["profile"]),
        ),
        tags=[InputTag(DATASET_CONTEXT, context)],
    )


def view_key(instance: str) -> str:
    """The saved view of one sweep instance's trials (`?viewStateShareKey=` in its link)."""
    return f"nrfer-{instance[:16]}"


def column(kind: str, key: str) -> str:
    """A runs-table column id as MLflow names it: metrics.`val_acc`, params.`optim.lr`."""
    return f"{kind}.`{key}`"


def trials_view(
    sweep: str,
    instance: str,
    metric: str,
    mode: str,
    searched: list[str],
    study: bool = False,
    created_ms: int = 0,
    objectives: list[str] | None = None,
) -> str:
    """The experiment tag value of the saved view of a sweep's trials: MLflow's envelope
    (name, createdAt, state), its state the runs table's filter (this instance's trials),
    order (best first by the sweep's metric) and columns: that metric at its best epoch
    (best_val_acc), test_acc and the seed in a study, each other objective of a sweep with
    several, each searched key, the front rank tag (several objectives), and the description
    (epochs run, how the trial ended)."""
    order = "best_val_acc" if metric == "val_acc" else metric
    # best_val_acc (the best epoch, what trials are ranked by) without the last epoch's
    # val_acc beside it: two accuracies side by side read as a contradiction
    others = [o for o in objectives or [] if o != metric]  # the metric is `order`'s column
    metrics = list(dict.fromkeys([order, *(["test_acc"] if study else []), *others]))
    name_col, description_col = column("tags", "mlflow.runName"), column("tags", DESCRIPTION)
    keys = list(dict.fromkeys([*(["train.seed"] if study else []), *searched]))
    shown = [column("metrics", m) for m in metrics] + [column("params", k) for k in keys]
    if objectives:  # 1 on the Pareto front (set when the sweep ends)
        shown.append(column("tags", "nrfer.front_rank"))
    state = {
        "searchFilter": f"tags.`nrfer.role` = 'trial' and tags.`nrfer.sweep_instance` = '{instance}'",
        "orderByKey": column("metrics", order),
        "orderByAsc": mode == "min",
        "selectedColumns": [*shown, column("attributes", "Description")],
        # widths apply to the columns the order names (MLflow's runs table): the names whole,
        # the values readable, the description last
        "columnOrder": [name_col, *shown, description_col],
        "columnWidths": {name_col: 320, **{c: 120 for c in shown}, description_col: 420},
    }
    name = f"{sweep}: trials by {order}"
    return json.dumps({"name": name, "createdAt": created_ms, "state": json.dumps(state)})


def runs_link(base_url: str, experiment_id: str, view: str | None = None, **legacy: Any) -> str:
    """The experiment's runs table, model-training view, opened on the sweep's saved view
    (`view`: sweep.tracking.ui.view_key; MLflow 3.17 reads the experiment tag
    `mlflow.sharedViewState.<view>`: the sweep's trials, best first, its metric and searched
    values as columns). Without a view (a sweep from before it), the filter and order ride in
    the URL as search facets (`legacy`: instance, order_by, ascending), columns as MLflow's
    defaults."""
    query = {"workflowType": "machine_learning", "compareRunsMode": "TABLE"}
    if view:
        query["viewStateShareKey"] = view
    else:
        trials = "tags.`nrfer.role` = 'trial'"
        if legacy.get("instance"):
            trials += f" and tags.`nrfer.sweep_instance` = '{legacy['instance']}'"
        query |= {
            "searchFilter": trials,
            "orderByKey": f"metrics.`{legacy.get('order_by', 'best_val_acc')}`",
            "orderByAsc": str(bool(legacy.get("ascending"))).lower(),
        }
    encoded = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{encoded}"
