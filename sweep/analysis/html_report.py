"""The sweep's interactive report: one self-contained `index.html` (plotly's JavaScript inside,
so it opens offline and in MLflow's artifact viewer) with the optimisation history, parallel
coordinates, every trial's learning curve with the trials early stopping ended marked,
parameter importance (explained, and flagged when the trials are too few to trust it),
slices, the leaderboard with each trial's MLflow run, and a study's table.

Built from MLflow alone (each trial run's params, per-epoch metrics and end tags), so a
search and a study, a running sweep and a finished one, read the same way; the driver writes
it to the parent run's `report/` as trials end, and `nrfer report --sweep NAME` anywhere.
The trials' numbers are embedded as JSON (`<script id="nrfer-trials">`): what the plots show.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import optuna

from sweep.analysis.pareto import trial_point
from sweep.analysis.report import IMPORTANCE_METHOD, MIN_TRIALS_FOR_IMPORTANCE, param_importance


@dataclass
class TrialRecord:
    """One trial as its MLflow run has it."""

    trial_id: str
    run_id: str
    name: str
    number: int  # tNN: the order the searcher proposed it
    params: dict[str, Any]
    curve: list[float]  # the sweep's metric per epoch
    value: float | None  # its best value of the metric (None: no epoch reported)
    state: str  # finished | stopped early | failed | running | interrupted
    metrics: dict[str, float] = field(default_factory=dict)  # the run's latest metrics


def _param(value: str) -> Any:
    """An MLflow param (text) as the value it was: numbers as numbers."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(value, value)


def sampled_keys(tags: dict[str, str], searched: list[str]) -> set[str]:
    """The keys the searcher sampled for a trial (its tag nrfer.sampled; all searched keys
    for a run without it)."""
    listed = tags.get("nrfer.sampled")
    return set(listed.split(",")) if listed else set(searched)


def trial_records(client, parent, spec: dict) -> list[TrialRecord]:
    """Every trial of the sweep instance `parent` belongs to, from MLflow."""
    from sweep.tracking.store import INSTANCE, ROLE, STATE_TAG, TRIAL_ID, find_runs

    metric, mode = spec.get("metric") or "val_acc", spec.get("mode") or "max"
    searched = list(spec.get("search") or {})
    tags = {INSTANCE: parent.data.tags[INSTANCE], ROLE: "trial"}
    out: list[TrialRecord] = []
    for run in find_runs(client, parent.info.experiment_id, tags):
        history = client.get_metric_history(run.info.run_id, metric)
        curve = [m.value for m in sorted(history, key=lambda m: m.step)]
        finite = [v for v in curve if math.isfinite(v)]
        value = (max(finite) if mode == "max" else min(finite)) if finite else None
        t = run.data.tags
        if t.get("nrfer.failed") == "true":
            state = "failed"
        elif run.info.status == "RUNNING":
            state = "running"
        elif t.get(STATE_TAG) or run.info.status == "KILLED":
            state = "interrupted"
        elif t.get("nrfer.stopped_early") == "true":
            state = "stopped early"
        else:
            state = "finished"
        name = t.get("mlflow.runName", run.info.run_id)
        number = name.split(" ")[0].lstrip("t")
        out.append(
            TrialRecord(
                trial_id=t.get(TRIAL_ID, run.info.run_id),
                run_id=run.info.run_id,
                name=name,
                number=int(number) if number.isdigit() else len(out) + 1,
                # what was sampled (a conditional key inactive in this trial is in its
                # params too, as the config's unused default: not a sampled value)
                params={
                    k: _param(run.data.params[k])
                    for k in searched
                    if k in run.data.params and k in sampled_keys(t, searched)
                },
                curve=curve,
                value=value,
                state=state,
                metrics=dict(run.data.metrics),
            )
        )
    return sorted(out, key=lambda r: r.number)


def _study(records: list[TrialRecord], spec: dict) -> optuna.Study:
    """An in-memory Optuna study of the trials with a value (each its best value of the
    metric, as the leaderboard ranks them), for Optuna's own plots."""
    maximize = (spec.get("mode") or "max") == "max"
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    for r in records:
        if r.value is None or not r.params:
            continue
        dists = {k: _distribution(v, records, k) for k, v in r.params.items()}
        study.add_trial(
            optuna.trial.create_trial(
                params=r.params,
                distributions=dists,
                value=r.value,
                intermediate_values=dict(enumerate(r.curve, start=1)),
                user_attrs={"name": r.name, "state": r.state},
            )
        )
    return study


def _distribution(value: Any, records: list[TrialRecord], key: str):
    seen = [r.params[key] for r in records if key in r.params]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen)
    if numeric and len(set(seen)) > 1:
        low, high = min(seen), max(seen)
        if all(isinstance(v, int) for v in seen):
            return optuna.distributions.IntDistribution(int(low), int(high))
        log = low > 0 and high / low >= 20
        return optuna.distributions.FloatDistribution(float(low), float(high), log=log)
    choices = sorted({json.dumps(v) for v in seen})
    return optuna.distributions.CategoricalDistribution([json.loads(c) for c in choices])


def _curves_figure(records: list[TrialRecord], metric: str):
    """Every trial's metric per epoch (its intermediate values); a trial early stopping
    ended is dashed, with an x at the epoch it was stopped after; a failed one dotted."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in records:
        if not r.curve:
            continue
        dash = {"stopped early": "dash", "failed": "dot"}.get(r.state, "solid")
        epochs = list(range(1, len(r.curve) + 1))
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=r.curve,
                mode="lines+markers",
                name=r.name.split(" ")[0],
                line={"dash": dash},
                hovertext=f"{r.name} ({r.state})",
            )
        )
        if r.state == "stopped early":
            fig.add_trace(
                go.Scatter(
                    x=[epochs[-1]],
                    y=[r.curve[-1]],
                    mode="markers",
                    marker={"symbol": "x", "size": 12, "color": "black"},
                    name=f"{r.name.split(' ')[0]} stopped (pruned)",
                    showlegend=False,
                    hovertext=f"{r.name}: stopped early after epoch {epochs[-1]}",
                )
            )
    fig.update_layout(
        title=f"{metric} per epoch (dashed, x: stopped early, i.e. pruned; dotted: failed)",
        xaxis_title="epoch",
        xaxis={"dtick": 1},
        yaxis_title=metric,
    )
    return fig


def _senses(spec: dict) -> dict[str, str]:
    """objective -> max | min of a sweep with several objectives, its metric first ({} for
    one objective)."""
    objectives = dict(spec.get("objectives") or {})
    if len(objectives) < 2:
        return {}
    metric = spec.get("metric") or "val_acc"
    return {metric: objectives[metric], **objectives}


def pareto_points(records: list[TrialRecord], senses: dict[str, str]) -> list[tuple]:
    """(record, its objectives) of the trials with every objective measured and not failed:
    the metric at its best epoch, the others (costs) as logged."""
    metric = next(iter(senses))
    out = []
    for r in records:
        if r.value is None or r.state == "failed":
            continue
        point = trial_point(metric, r.value, r.metrics, list(senses))
        if len(point) == len(senses):
            out.append((r, point))
    return out


def _pareto_figure(points: list[tuple], senses: dict[str, str]):
    """Every measured trial (`pareto_points`) over the first two objectives, the Pareto
    front joined."""
    import plotly.graph_objects as go

    from sweep.analysis.pareto import pareto_front

    front = set(pareto_front([p for _, p in points], senses))
    y, x = list(senses)[:2]
    fig = go.Figure()
    for on, name in ((False, "trial"), (True, "Pareto front")):
        chosen = sorted(
            (points[i] for i in range(len(points)) if (i in front) == on), key=lambda rp: rp[1][x]
        )
        fig.add_trace(
            go.Scatter(
                x=[p[x] for _, p in chosen],
                y=[p[y] for _, p in chosen],
                mode="lines+markers" if on else "markers",
                name=name,
                marker={"size": 10 if on else 8, "color": "#d62728" if on else "#999"},
                hovertext=[
                    f"{r.name} ({r.state}): " + ", ".join(f"{k} {v:.4g}" for k, v in p.items())
                    for r, p in chosen
                ],
            )
        )
    fig.update_layout(
        title=f"{len(front)} of {len(points)} trials on the Pareto front",
        xaxis_title=f"{x} ({senses[x]})",
        yaxis_title=f"{y} ({senses[y]}, best epoch)",
    )
    return fig


def _tag(r: TrialRecord) -> str:
    return f"t{r.number:02d}"


def _history_figure(records: list[TrialRecord], metric: str, mode: str):
    """Each trial's best value in the order the searcher proposed it (tNN, as everywhere
    else in the report and in MLflow), and the best so far."""
    import plotly.graph_objects as go

    valued = [r for r in records if r.value is not None]
    best, running = [], None
    for r in valued:
        assert r.value is not None
        better = running is None or (r.value > running if mode == "max" else r.value < running)
        running = r.value if better else running
        best.append(running)
    x = [_tag(r) for r in valued]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r.value for r in valued],
            mode="markers",
            name=f"trial's best {metric}",
            hovertext=[f"{r.name} ({r.state})" for r in valued],
        )
    )
    fig.add_trace(go.Scatter(x=x, y=best, mode="lines", name="best so far"))
    fig.update_layout(
        title=f"best {metric} per trial", xaxis_title="trial", yaxis_title=metric,
        xaxis={"type": "category"},
    )  # fmt: skip
    return fig


SLICE_COLUMNS = 3  # slice panels per row: the page stays 1200 px wide whatever the keys


def _slice_figure(records: list[TrialRecord], metric: str, keys: list[str]):
    """One panel per searched key, SLICE_COLUMNS to a row: each trial's best value against
    the value it sampled (a trial where the key was inactive has no point there)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = max(1, math.ceil(len(keys) / SLICE_COLUMNS))
    fig = make_subplots(rows=rows, cols=SLICE_COLUMNS, subplot_titles=keys)
    for i, key in enumerate(keys):
        shown = [r for r in records if r.value is not None and key in r.params]
        values = [r.params[key] for r in shown]
        fig.add_trace(
            go.Scatter(
                x=[str(v) if isinstance(v, bool | str) else v for v in values],
                y=[r.value for r in shown],
                mode="markers",
                marker={"size": 8},
                hovertext=[f"{r.name} ({r.state})" for r in shown],
                showlegend=False,
            ),
            row=i // SLICE_COLUMNS + 1,
            col=i % SLICE_COLUMNS + 1,
        )
    fig.update_yaxes(title_text=metric, col=1)
    fig.update_layout(title=f"best {metric} against each searched key", height=60 + 280 * rows)
    return fig


def study_table_html(md: str) -> str:
    """The study table's Markdown (sweep.analysis.study_tables.render: headings, pipe tables,
    bullet notes, paragraphs) as HTML: tables that scroll on their own, notes that wrap."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            head, body = (
                block[0],
                [r for r in block[1:] if not all(set(c) <= {"-", ":"} for c in r)],
            )
            out.append(
                '<div class="wide"><table><thead><tr>'
                + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                + "</tr></thead><tbody>"
                + "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                    for r in body
                )
                + "</tbody></table></div>"
            )
            continue
        if line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")))
            out.append(
                f"<h{max(level, 3)}>{html.escape(line.lstrip('#').strip())}</h{max(level, 3)}>"
            )
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{html.escape(lines[i][2:].strip())}</li>")
                i += 1
            out.append(f"<ul class='notes'>{''.join(items)}</ul>")
            continue
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
        i += 1
    return "\n".join(out)


def _objective_columns(records: list[TrialRecord], spec: dict) -> tuple[list[str], dict[str, int]]:
    """With several objectives: the objectives other than the metric, and each measured
    trial's front rank (1: on the Pareto front, 2: on it once the first is left out ...)."""
    from sweep.analysis.pareto import fronts

    senses = _senses(spec)
    if not senses:
        return [], {}
    points = pareto_points(records, senses)
    rank = {}
    for k, front in enumerate(fronts([p for _, p in points], senses), start=1):
        for i in front:
            rank[points[i][0].run_id] = k
    return [k for k in senses if k != next(iter(senses))], rank


def _summary(records: list[TrialRecord], spec: dict, run_url) -> str:
    """The top of the page: the winner by validation (its run, value and config), the data
    and the metric."""
    metric, mode = spec.get("metric") or "val_acc", spec.get("mode") or "max"
    valued = [r for r in records if r.value is not None]
    data = spec.get("data") or (spec.get("fixed") or {}).get("data") or {}
    where = ", ".join(f"{k} {v}" for k, v in data.items() if k in ("dataset", "root", "label_mode"))
    about = (
        f"Metric: best <b>{html.escape(metric)}</b> over each trial's epochs ({mode}imised), on "
        f"the validation split; test is never used to choose. Data: {html.escape(where or 'as the spec says')}."
    )
    if not valued:
        return f"<p>{about} No trial has reported yet.</p>"
    if spec.get("searcher") == "grid":  # a study: its table is the result, not a winner
        return (
            f'<p class="winner">A study: {len(records)} runs (its grid of cells x seeds), each '
            'run to its last epoch and tested once; the <a href="#study-table">study table</a> '
            f"at the end of this page holds the comparisons.</p><p>{about}</p>"
        )
    win = (max if mode == "max" else min)(valued, key=lambda r: r.value or 0.0)
    url = run_url(win.run_id)
    name = (
        f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{html.escape(win.name)}</a>'
        if url
        else html.escape(win.name)
    )
    config = ", ".join(f"{k} = {v}" for k, v in win.params.items()) or "(nothing searched)"
    return (
        f'<p class="winner">Best so far: {name} with {html.escape(metric)} '
        f"<b>{win.value:.4f}</b> ({html.escape(win.state)}, {len(win.curve)} epochs). Its "
        f"searched values: <code>{html.escape(config)}</code>. Retrain it with seeds: "
        f"<code>nrfer best --sweep {html.escape(str(spec.get('name', 'NAME')))}</code>.</p>"
        f"<p>{about}</p>"
    )


def _importance_figure(importance: dict[str, float]):
    import plotly.graph_objects as go

    names = list(importance)[::-1]
    fig = go.Figure(go.Bar(x=[importance[n] for n in names], y=names, orientation="h"))
    fig.update_layout(title="parameter importance (fANOVA)", xaxis_title="share of variance")
    return fig


def _rows_for_importance(records: list[TrialRecord]) -> list[dict]:
    return [
        {"params": r.params, "value": r.value, "error": r.state == "failed"}
        for r in records
        if r.value is not None
    ]


def _leaderboard(records: list[TrialRecord], spec: dict, run_url) -> str:
    metric, mode = spec.get("metric") or "val_acc", spec.get("mode") or "max"
    ranked = sorted(
        (r for r in records if r.value is not None),
        key=lambda r: r.value if r.value is not None else 0.0,
        reverse=mode == "max",
    )
    keys = list(spec.get("search") or {})
    others, front = _objective_columns(records, spec)
    extra = [*others, "front rank"] if others else []
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in ["rank", f"best {metric}", *extra, "epochs", "state", "run", *keys]
    )
    rows = []
    for i, r in enumerate(ranked, start=1):
        url = run_url(r.run_id)
        link = (
            f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{html.escape(r.name)}</a>'
            if url
            else html.escape(r.name)
        )
        measured = [f"{r.metrics[k]:.4g}" if k in r.metrics else "" for k in others]
        ranked_front = [str(front.get(r.run_id, ""))] if others else []
        cells = [str(i), f"{r.value:.4f}", *measured, *ranked_front, str(len(r.curve)), r.state]
        values = [html.escape(str(r.params.get(k, ""))) for k in keys]
        rows.append(
            "<tr>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + f"<td>{link}<br><code>{r.run_id}</code></td>"
            + "".join(f"<td>{v}</td>" for v in values)
            + "</tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def build_html(
    records: list[TrialRecord],
    spec: dict,
    *,
    title: str,
    run_url=lambda run_id: "",
    study_table: str | None = None,
    note: str = "",
    ui_note: str = "",
) -> str:
    """The report page (see the module's text). `run_url(run_id)`: a trial run's page in the
    MLflow UI ("" when no UI address is known)."""
    import plotly.io as pio
    from optuna import visualization as vis

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its "study created" lines
    metric, mode = spec.get("metric") or "val_acc", spec.get("mode") or "max"
    study = _study(records, spec)
    sections: list[tuple[str, str, Any]] = []  # (heading, text above, figure)
    valued = [t for t in study.trials if t.value is not None]
    if valued:
        sections.append(
            (
                "Optimisation history",
                f"Each trial's best {metric} in the order the searcher proposed it, and the "
                "best so far.",
                _history_figure(records, metric, mode),
            )
        )
    senses = _senses(spec)
    points = pareto_points(records, senses) if senses else []
    if points:
        sections.append(
            (
                "Pareto front",
                f"Several objectives ({', '.join(f'{k} {v}' for k, v in senses.items())}): "
                "each trial's best metric against what its model costs; the trials no other "
                "trial beats on every objective are joined. `nrfer best --pick` retrains one.",
                _pareto_figure(points, senses),
            )
        )
    sections.append(
        (
            "Learning curves (intermediate values)",
            "What early stopping saw: a trial it stopped is dashed and ends in an x (Optuna "
            "calls such a trial pruned).",
            _curves_figure(records, metric),
        )
    )
    searched = [k for k in (spec.get("search") or {}) if any(k in t.params for t in valued)]
    always = [k for k in searched if all(k in t.params for t in valued)]
    conditional = [k for k in searched if k not in always]
    if len(valued) >= 2 and always:
        left_out = (
            f" Conditional keys (active in only some trials) are left out, since an axis "
            f"has no place for 'inactive': {', '.join(conditional)}; see their slices."
            if conditional
            else ""
        )
        sections.append(
            (
                "Parallel coordinates",
                f"One line per trial across its searched values, coloured by its best "
                f"{metric}.{html.escape(left_out)}",
                vis.plot_parallel_coordinate(study, params=always, target_name=metric),
            )
        )
    if len(valued) >= 2 and searched:
        sections.append(
            (
                "Slices",
                f"Each searched key against the best {metric}, one point per trial where the "
                "key was active (hover for the trial).",
                _slice_figure(records, metric, searched),
            )
        )
    importance = _importance(records, spec)
    if importance:
        n = len(valued)
        warning = (
            f" <strong>Only {n} trials: fANOVA's split of the variance over so few is mostly "
            f"noise (read it as a hint under {MIN_TRIALS_FOR_IMPORTANCE} trials).</strong>"
            if n < MIN_TRIALS_FOR_IMPORTANCE
            else ""
        )
        sections.append(
            (
                "Parameter importance",
                f"The share of the variance of best {metric} fANOVA attributes to each "
                f"searched key ({html.escape(IMPORTANCE_METHOD)}). The always-active keys "
                "share 1 between them; a conditional key (n/N trials) is estimated "
                "separately over the trials where it is active, so the bars together can "
                f"exceed 1.{warning}",
                _importance_figure(importance),
            )
        )
    parts = []
    first = True
    for heading, text, fig in sections:
        height = fig.layout.height if heading == "Slices" else 420
        fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 70, "b": 50})
        div = pio.to_html(fig, include_plotlyjs=first, full_html=False, config={"responsive": True})
        first = False
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{text}</p>{div}")
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    data = [
        {
            "trial_id": r.trial_id,
            "run_id": r.run_id,
            "name": r.name,
            "state": r.state,
            "value": r.value,
            "curve": r.curve,
            "params": r.params,
        }
        for r in records
    ]
    table = (
        f'<h2 id="study-table">Study table</h2>{study_table_html(study_table)}'
        if study_table
        else ""
    )
    objectives_note = (
        "; with several objectives each trial's other objectives as measured and its front "
        "rank (1: on the Pareto front; 2: on it once the first front is set aside ...)"
        if _senses(spec)
        else ""
    )
    links_note = f" {ui_note}" if ui_note else ""
    built = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; max-width: 1200px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }}
code {{ font-size: 11px; color: #555; }}
pre {{ font-size: 12px; overflow-x: auto; }}
div.wide {{ overflow-x: auto; max-width: 100%; margin-bottom: 1em; }}
ul.notes {{ font-size: 13px; }}
p.winner {{ font-size: 16px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{_summary(records, spec, run_url)}
<p>{len(records)} trials: {html.escape(summary) or "none yet"}. Built {built}{html.escape(note)}.
Everything here works offline (plotly's JavaScript is inside this file); hover for values,
drag to zoom, double-click to reset.</p>
{"".join(parts)}
<h2>Leaderboard</h2>
<p>Ranked by each trial's best {html.escape(metric)} on validation (test is never used to
choose){html.escape(objectives_note)}. In MLflow's artifact viewer the links open with a
right-click, in a new tab (the viewer's frame may not open windows).{html.escape(links_note)}</p>
<div class="wide">{_leaderboard(records, spec, run_url)}</div>
{table}
<script type="application/json" id="nrfer-trials">{html.escape(json.dumps(data), quote=False)}</script>
</body></html>
"""


def _importance(records: list[TrialRecord], spec: dict) -> dict[str, float]:
    """The leaderboard's fANOVA importance (sweep.analysis.report.param_importance)."""
    from sweep.spec.space import parse_space

    try:
        parsed = parse_space(spec, "the sweep's spec")
    except Exception:  # a spec this version cannot read: no importance
        return {}
    metric = parsed.metric
    rows = [
        {"params": r["params"], metric: r["value"], "error": r["error"]}
        for r in _rows_for_importance(records)
    ]
    return param_importance(rows, parsed)


def mlflow_run_url(base_url: str | None, experiment_id: str):
    """run id -> its page in the MLflow UI at `base_url` ("" without one)."""

    def url(run_id: str) -> str:
        if not base_url:
            return ""
        return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    return url


DEFAULT_UI = "http://127.0.0.1:5000"  # what `nrfer ui` serves a local store at by default


def ui_base(uri: str, ui_url: str | None = None) -> str:
    """Where a person opens the MLflow UI of store `uri`: the address given (`--ui-url`), a
    tracking server itself, else what `nrfer ui` serves a local store at by default."""
    if ui_url:
        return ui_url.rstrip("/")
    return uri if uri.startswith(("http://", "https://")) else DEFAULT_UI


def sweep_page(
    client, parent, spec: dict, uri: str, study_table: str | None = None, ui_url: str | None = None
) -> str:
    """The report page of the sweep whose parent run is `parent`, in store `uri`; its run
    links point at `ui_url` (default: `ui_base`)."""
    records = trial_records(client, parent, spec)
    base = ui_base(uri, ui_url)
    local = not uri.startswith(("http://", "https://"))
    return build_html(
        records,
        spec,
        title=f"Sweep {parent.data.tags.get('mlflow.runName', spec.get('name', ''))}",
        run_url=mlflow_run_url(base, parent.info.experiment_id),
        study_table=study_table,
        ui_note=(
            f"The run links open the MLflow UI at {base} (`nrfer ui` serves this local store "
            "there); a UI on another address: `nrfer report --ui-url URL`."
            if local
            else ""
        ),
    )
