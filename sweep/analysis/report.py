"""The end of a sweep: leaderboard, optimisation history, learning curves, parameter importance."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from nrfer.files import atomic_file, atomic_path  # noqa: E402
from sweep.analysis.pareto import fronts, trial_point  # noqa: E402
from sweep.spec.space import SweepSpec  # noqa: E402

log = logging.getLogger("nrfer.sweep")


def trial_rows(results, spec: SweepSpec) -> list[dict]:
    """One row per trial with its best value of the sweep metric over its epochs."""
    better = max if spec.mode == "max" else min
    rows = []
    for r in results:
        df = r.metrics_dataframe
        if df is None or spec.metric not in df:
            continue
        rows.append(
            {
                "trial_id": (r.metrics or {}).get("trial_id") or df["trial_id"].iloc[-1],
                spec.metric: float(better(df[spec.metric])),
                "epochs": int(df["training_iteration"].max()),
                "error": r.error is not None,
                "curve": df[spec.metric].tolist(),
                "params": dict(r.config),
            }
        )
        # the objectives: the metric's best, the others' (cost: the same every epoch) last
        measured = {
            k: float(df[k].dropna().iloc[-1])
            for k in spec.senses
            if k in df and df[k].notna().any()
        }
        rows[-1]["objectives"] = trial_point(
            spec.metric, rows[-1][spec.metric], measured, list(spec.senses)
        )
    mark_fronts(rows, spec)
    return rows


def mark_fronts(rows: list[dict], spec: SweepSpec) -> None:
    """Each row's `front`: 1 on the Pareto front of the objectives, 2 on the front of what is
    left, ... (None: an objective missing, or an errored trial); only with several
    objectives."""
    if not spec.multi_objective:
        return
    ok = [r for r in rows if not r["error"]]
    for i, front in enumerate(fronts([r["objectives"] for r in ok], spec.senses), start=1):
        for k in front:
            ok[k]["front"] = i
    for r in rows:
        r.setdefault("front", None)


def pareto_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("front") == 1]


def write_pareto(rows: list[dict], spec: SweepSpec, run_ids: dict[str, str], folder: Path) -> None:
    """pareto_front.csv (the front, best `metric` first) and pareto_front.png (every trial
    over the first two objectives, the front joined)."""
    front = rank(pareto_rows(rows), spec)
    names = list(spec.senses)
    keys = sorted({k for r in front for k in r["params"]})
    with atomic_file(folder / "pareto_front.csv") as f:
        w = csv.writer(f)
        w.writerow(["trial_id", "run_id", "run_name", *names, "epochs", *keys])
        for r in front:
            w.writerow(
                [r["trial_id"], run_ids.get(r["trial_id"], ""), r.get("name", "")]
                + [f"{r['objectives'][n]:.6g}" for n in names]
                + [r["epochs"], *[r["params"].get(k, "") for k in keys]]
            )
    x, y = names[1], names[0]  # a cost across, the metric up
    shown = [r for r in rows if r.get("front") is not None]
    if not shown:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = {id(r): r["objectives"][x] for r in shown}
    ys = {id(r): r["objectives"][y] for r in shown}
    ax.scatter(list(xs.values()), list(ys.values()), c="0.6", label="trial")
    line = sorted(front, key=lambda r: xs[id(r)])
    ax.plot(
        [xs[id(r)] for r in line], [ys[id(r)] for r in line], "o-", c="C3", label="Pareto front"
    )
    for r in line:
        label = (r.get("name") or r["trial_id"]).split()[0]
        point = (xs[id(r)], ys[id(r)])
        ax.annotate(label, point, fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{x} ({spec.senses[x]})")
    ax.set_ylabel(f"{y} ({spec.senses[y]})")
    ax.set_title(f"{spec.name}: {len(front)} of {len(shown)} trials on the front")
    ax.legend()
    fig.tight_layout()
    with atomic_path(folder / "pareto_front.png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def rank(rows: list[dict], spec: SweepSpec) -> list[dict]:
    return sorted(rows, key=lambda x: x[spec.metric], reverse=spec.mode == "max")


def write_leaderboard_csv(
    rows: list[dict], spec: SweepSpec, run_ids: dict[str, str], path: Path
) -> None:
    keys = sorted({k for r in rows for k in r["params"]})
    others = [k for k in spec.senses if k != spec.metric]  # with several objectives
    front = ["front_rank"] if spec.multi_objective else []
    with atomic_file(path) as f:
        w = csv.writer(f)
        w.writerow(
            ["rank", "trial_id", "run_id", "run_name", spec.metric, *others, *front, "epochs"]
            + keys
        )
        for i, r in enumerate(rows, start=1):
            w.writerow(
                [
                    i,
                    r["trial_id"],
                    run_ids.get(r["trial_id"], ""),
                    r.get("name", ""),
                    f"{r[spec.metric]:.6f}",
                    *[f"{r['objectives'][k]:.6g}" if k in r["objectives"] else "" for k in others],
                    *(["" if r.get("front") is None else r["front"]] if front else []),
                    r["epochs"],
                    *[r["params"].get(k, "") for k in keys],
                ]
            )


def plot_history(rows_in_order: list[dict], spec: SweepSpec, path: Path) -> None:
    values = [r[spec.metric] for r in rows_in_order]
    best, cur = [], None
    for v in values:
        cur = v if cur is None else (max(cur, v) if spec.mode == "max" else min(cur, v))
        best.append(cur)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(values) + 1), values, "o", label=f"trial's best {spec.metric}")
    ax.plot(range(1, len(best) + 1), best, "-", label="best so far")
    ax.set_xlabel("trial (in order)")
    ax.set_ylabel(spec.metric)
    ax.set_title(f"optimisation history: {spec.name}")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def plot_curves(rows: list[dict], spec: SweepSpec, path: Path) -> None:
    """Every trial's metric per epoch, each line labelled by its run's number (t05): the
    same name the MLflow runs table shows."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in sorted(rows, key=lambda r: r.get("name") or r["trial_id"]):
        label = (r.get("name") or r["trial_id"]).split()[0]
        ax.plot(range(1, len(r["curve"]) + 1), r["curve"], marker=".", alpha=0.8, label=label)
    cast(MaxNLocator, ax.xaxis.get_major_locator()).set_params(integer=True)
    if len(rows) <= 20:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel(spec.metric)
    ax.set_title(f"learning curves ({len(rows)} trials)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)


MIN_TRIALS_FOR_IMPORTANCE = 20  # under this, fANOVA's split of the variance is mostly noise
IMPORTANCE_METHOD = (
    "fANOVA (optuna FanovaImportanceEvaluator, seed 0); a conditional parameter (one with "
    "when:) is estimated over the trials where it is active, with the always-active ones"
)


def _fanova(rows: list[dict], dists: dict, spec: SweepSpec) -> dict[str, float]:
    study = optuna.create_study(direction="maximize" if spec.mode == "max" else "minimize")
    for r in rows:
        study.add_trial(
            optuna.trial.create_trial(
                params={k: r["params"][k] for k in dists}, distributions=dists, value=r[spec.metric]
            )
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.get_param_importances(study, evaluator=evaluator)


def param_importance(rows: list[dict], spec: SweepSpec) -> dict[str, float]:
    """fANOVA importance of each parameter (see IMPORTANCE_METHOD). fANOVA needs every trial
    to have every parameter, so conditional parameters are never silently dropped: each is
    estimated on the trials where it was active; its key then reads `key (n/N trials)`."""
    ok = [r for r in rows if not r["error"]]
    if len(ok) < 3:
        return {}
    always = {p.key: p.distribution() for p in spec.params if all(p.key in r["params"] for r in ok)}
    out: dict[str, float] = {}
    try:
        if always:
            out.update(_fanova(ok, always, spec))
        for p in spec.params:
            if p.key in always:
                continue
            active = [r for r in ok if p.key in r["params"]]
            if len(active) < 3 or len({str(r["params"][p.key]) for r in active}) < 2:
                continue
            share = _fanova(active, {**always, p.key: p.distribution()}, spec)[p.key]
            out[f"{p.key} ({len(active)}/{len(ok)} trials)"] = share
    except Exception as e:  # too few distinct values, a constant metric ...
        log.warning("parameter importance unavailable: %s", e)
        return out
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def plot_importance(importance: dict[str, float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(1, len(importance))))
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names])
    ax.set_xlabel("importance (fANOVA)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def write_report(
    results,
    spec: SweepSpec,
    run_ids: dict[str, str],
    folder: Path,
    names: dict[str, str] | None = None,
) -> tuple[list[dict], dict[str, float]]:
    """Writes leaderboard.csv and the PNGs into `folder`; returns (ranked rows, importance).
    `names`: trial id -> its MLflow run name (shown in the table, the plots and the CSV)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(results, spec)
    for r in rows:
        r["name"] = (names or {}).get(r["trial_id"], r["trial_id"])
    ranked = rank(rows, spec)
    write_leaderboard_csv(ranked, spec, run_ids, folder / "leaderboard.csv")
    if spec.multi_objective:
        write_pareto(ranked, spec, run_ids, folder)
    if rows:
        plot_history(rows, spec, folder / "optimization_history.png")
        plot_curves(rows, spec, folder / "learning_curves.png")
    importance = param_importance(rows, spec)
    if importance:
        plot_importance(importance, folder / "param_importance.png")
    return ranked, importance


def print_pareto(summary: Any, senses: dict[str, str]) -> None:
    """The Pareto front of a sweep with several objectives, best first metric first."""
    front = summary.pareto
    names = list(senses)
    print(
        f"Pareto front ({', '.join(f'{n} {s}' for n, s in senses.items())}): {len(front)} of "
        f"{summary.pareto_of} trials"
    )
    print("  " + "  ".join(f"{n:>14}" for n in names) + f"  {'epochs':>6}  run name")
    for r in front:
        values = "  ".join(f"{r['objectives'][n]:>14.6g}" for n in names)
        print(f"  {values}  {r['epochs']:>6}  {r.get('name', r['trial_id'])}")
    if front:
        print(
            f"  reproduce a point: nrfer best --sweep {summary.sweep} --pick {pick_hint(front, senses)!r}"
        )


def pick_hint(front: list[dict], senses: dict[str, str]) -> str:
    """A --pick for the front's middle point: the first objective's best under a bound on
    the second just past that point's value."""
    first, second = list(senses)[:2]
    mid = sorted(r["objectives"][second] for r in front)[len(front) // 2]
    op, bound = ("<=", float(f"{mid:.2g}")) if senses[second] == "min" else (">=", mid)
    if senses[second] == "min" and bound < mid:
        bound = float(f"{mid * 1.05:.2g}")
    return f"{senses[first]} {first} where {second} {op} {bound:g}"


def print_leaderboard(summary: Any, metric: str) -> None:
    state = (
        f", {summary.unfinished} unfinished (continue with --resume)" if summary.unfinished else ""
    )
    print(
        f"\nsweep {summary.sweep}: {summary.num_trials} trials, {summary.num_errors} errors{state}, "
        f"{summary.elapsed_s:.0f} s from launch ({summary.wall_s:.0f} s of trials); "
        f"MLflow parent run {summary.parent_run_id} at {summary.tracking_uri}"
    )
    print(f"{'rank':>4}  {metric:>10}  {'epochs':>6}  {'trial':9}  run name / config")
    for i, row in enumerate(summary.leaderboard, start=1):
        print(
            f"{i:>4}  {row[metric]:>10.4f}  {row['epochs']:>6}  {row['trial_id']:9}  "
            f"{row.get('name', '')}\n{'':35}{json.dumps(row['params'], sort_keys=True)}"
        )
    if summary.importance:
        shares = ", ".join(f"{k} {v:.2f}" for k, v in summary.importance.items())
        print(f"parameter importance (shares of the variance of {metric}): {shares}")
        always = sum(v for k, v in summary.importance.items() if "trials)" not in k)
        conditional = len(summary.importance) - sum("trials)" not in k for k in summary.importance)
        notes = [f"Optuna's fANOVA, seed 0; the always-active keys sum to {always:.2f}"]
        if conditional:
            notes.append(
                f"each conditional one (n/N trials: where it is active) is a share of its own "
                f"fANOVA, so all together sum to {sum(summary.importance.values()):.2f}"
            )
        n = summary.num_trials - summary.num_errors
        if n < MIN_TRIALS_FOR_IMPORTANCE:
            notes.append(
                f"only {n} trials: fANOVA over so few is mostly noise, read it as a hint "
                f"(under {MIN_TRIALS_FOR_IMPORTANCE} trials)"
            )
        print(f"  ({'; '.join(notes)})")
