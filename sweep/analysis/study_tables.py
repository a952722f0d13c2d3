"""A study's table rendered (sweep.analysis.study gathers its cells from the MLflow store):
a row per cell (val and test mean +- std over seeds, mean class accuracy, macro-F1,
calibration, extra evaluation sets), then a block of comparisons per baseline (each cell
against its baseline cell), and the paper's layout (rows: one axis; columns: the others), as
Markdown, LaTeX and CSV, with the degradation plot; written with `write_tables`."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from nrfer.files import save_image, write_atomic
from sweep.analysis.comparisons import Comparison, family_size, plan_text
from sweep.analysis.study import CALIBRATION, METRICS, UNLEAKED, Cell, degraded_metric


def short(key: str) -> str:
    """A parameter's column name: its last two parts (model.resizer.n -> resizer.n)."""
    return ".".join(key.split(".")[-2:])


def value_text(v: Any) -> str:
    return "–" if v is None else ("on" if v is True else "off" if v is False else str(v))


def baseline_text(base: dict[str, Any]) -> str:
    return ", ".join(f"{short(k)}={value_text(v)}" for k, v in base.items())


def axes(spec) -> list[str]:
    return [p.key for p in spec.params]


def calibration_columns(cells: list[Cell]) -> list[tuple[str, str, float, int]]:
    """The calibration columns some finished run has (older runs logged none)."""
    return [c for c in CALIBRATION if any(cell.values.get(c[1]) for cell in cells)]


def cell_rows(spec, cells: list[Cell]) -> tuple[list[str], list[list[str]]]:
    """The per-cell table as header + rows of text."""
    evals = [ev.name for ev in spec.study.eval_sets]
    degraded = spec.study.degradations
    calib = calibration_columns(cells)
    header = [short(k) for k in axes(spec)]
    unleaked = [UNLEAKED] if any(c.values.get(UNLEAKED) for c in cells) else []
    header += ["n", *METRICS]
    header += [f"test w/o {max(c.leaked for c in cells)} leaked" for _ in unleaked]
    header += [*(c[0] for c in calib), *evals, *(d.label for d in degraded)]
    rows = []
    for c in cells:
        row = [value_text(c.cell.get(k)) for k in axes(spec)]
        row += [f"{c.n}/{c.expected}", *(c.shown(m) for m in (*METRICS.values(), *unleaked))]
        row += [c.shown(m, scale, digits) for _, m, scale, digits in calib]
        row += [c.shown(f"eval_{e}_acc") for e in evals]
        row += [c.shown(degraded_metric(d)) for d in degraded]
        rows.append(row + [c.status])
    header.append("status")
    return header, rows


def points(x: float) -> str:
    return f"{100 * x:+.2f}"


def interval_text(iv) -> str:
    return "" if iv is None else f"{points(iv.estimate)} [{points(iv.low)}, {points(iv.high)}]"


def p_text(p: float | None) -> str:
    return "" if p is None else f"{p:.2g}"


def per_seed_text(comp: Comparison) -> str:
    """'s0 +15.52 p=1.9e-05; s1 -3.10 p=0.45': each seed's difference (points) and its
    McNemar p (that trained pair on these faces only)."""
    return "; ".join(f"s{s} {points(v['diff'])} p={v['p']:.2g}" for s, v in comp.per_seed.items())


def comparison_rows(spec, comps: list[Comparison]) -> tuple[list[str], list[list[str]]]:
    """One block's comparisons as header + rows of text (differences in points)."""
    keys = axes(spec)
    header = [short(k) for k in keys]
    header += [
        "seeds",
        "Δ test, 95% CI (seeds × faces)",
        "p",
        "p Holm",
        "p BH",
        "verdict",
        "per-seed Δ, McNemar p",
        "direction",
    ]
    rows = []
    for comp in comps:
        row = [value_text(comp.cell.get(k)) for k in keys]
        if comp.missing:
            rows.append(row + [f"0 ({comp.missing})", *[""] * 7])
            continue
        headline = interval_text(comp.interval) or (
            f"{points(comp.diffs[0])} (1 seed: no interval)" if comp.seeds else ""
        )
        row += [
            str(len(comp.seeds)),
            headline,
            p_text(comp.p) or "n/a (< 2 seeds)",
            p_text(comp.p_holm),
            p_text(comp.p_bh),
            comp.verdict,
            per_seed_text(comp),
            comp.agreement,
        ]
        rows.append(row)
    return header, rows


VERDICT_MARK = {"cell better": " ▲", "baseline better": " ▼"}


def condition_text(comp: Comparison | None) -> str:
    """'+3.10 [-0.52, +6.40] p_Holm=0.041 ▲': Δ with its crossed interval, Holm-adjusted p
    and the verdict's mark (▲ cell better, ▼ baseline better); why there is none."""
    if comp is None:
        return "–"
    if comp.missing or comp.interval is None:
        return comp.missing or "n/a"
    p = f" p_Holm={comp.p_holm:.2g}" if comp.p_holm is not None else ""
    return interval_text(comp.interval) + p + VERDICT_MARK.get(comp.verdict, "")


def degradation_rows(spec, cells: list[Cell], block: int) -> tuple[list[str], list[list[str]]]:
    """One baseline block under each degradation: a row per comparison, a column per
    condition (clean first), each Δ [crossed CI] with its Holm p over that column."""
    labels = [d.label for d in spec.study.degradations]
    keys = axes(spec)
    header = [short(k) for k in keys] + ["clean", *labels]
    rows = []
    for c in cells:
        clean = [x for x in c.comparisons if x.block == block]
        if not clean:
            continue
        row = [value_text(c.cell.get(k)) for k in keys] + [condition_text(clean[0])]
        for label in labels:
            under = [x for x in c.degraded.get(label, []) if x.block == block]
            row.append(condition_text(under[0] if under else None))
        rows.append(row)
    return header, rows


def degradation_note(spec, cells: list[Cell]) -> str:
    d = spec.study.degradations
    family = {family_size([x for c in cells for x in c.degraded.get(e.label, [])]) for e in d}
    return (
        "Each run's best weights tested on its test faces degraded as `nrfer.degrade` says "
        f"({', '.join(x.label for x in d)}; seed {spec.study.degradation_seed}: the same faces "
        "and the same degradation in every run, so the comparison stays paired). Each column "
        "is its own family: the crossed seeds x faces interval, its p and p_Holm, the p Holm-"
        f"adjusted over that column's {'/'.join(map(str, sorted(family)))} comparisons, as the clean "
        "table. ▲: the cell is better (Holm p < 0.05 and the interval above 0); ▼: the "
        "baseline is."
    )


def comparison_notes(spec, cells: list[Cell], comps: list[Comparison]) -> list[str]:
    """What the comparison columns are, the family they are corrected over, why intervals
    are wide, and the seeds a claim needs."""
    m = family_size(comps)
    notes = [
        "Δ test: the cell's mean test accuracy minus its baseline's over the seeds both ran, "
        "in points, with a 95% interval over seeds x faces (both cells tested on the same "
        "faces): the spread of the per-seed differences (t on seeds - 1 df) and the part "
        "the faces share across seeds (t on faces - 1 df), summed in quadrature; it holds "
        "95% in simulated studies at 2 to 10 seeds, also when the cells differ face by face.",
        "p: where that interval touches 0 (p < 0.05 exactly when the 95% interval excludes "
        "0); needs 2 paired seeds. "
        f"Multiplicity: Holm (family-wise) and Benjamini-Hochberg (false discovery rate) over "
        f"all {m} comparisons of this table. Verdict: Holm p < 0.05.",
        "Per-seed McNemar: one trained pair on these faces only (test-set noise, not seed "
        "noise); direction: whether the seeds' differences share a sign.",
    ]
    finished = [c.n for c in cells if c.n]
    if finished and min(finished) < 3:
        few = min(finished)
        notes.append(
            f"With {few} seed{'s' if few > 1 else ''} in some cells, intervals are wide "
            + (
                f"(the t quantile with {few - 1} df is {t_quantile(few - 1):.1f}): they "
                "bound what these seeds can show, not the effect."
                if few > 1
                else "or absent: one seed has no spread to measure."
            )
        )
    line = plan_text(comps, len(spec.study.seeds))
    if line:
        notes.append(line)
    return notes


def t_quantile(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def paper_layout(spec, cells: list[Cell]) -> tuple[list[str], list[list[str]]]:
    """Test accuracy laid out as the paper: a row per value of study.rows, a column per
    combination of the other axes (in grid order)."""
    rows_key = spec.study.rows
    columns: list[str] = []
    table: dict[str, dict[str, str]] = {}
    for c in cells:
        col = (
            ", ".join(f"{short(k)}={value_text(v)}" for k, v in c.cell.items() if k != rows_key)
            or "test"
        )
        if col not in columns:
            columns.append(col)
        table.setdefault(value_text(c.cell.get(rows_key)), {})[col] = c.shown("test_acc")
    header = [short(rows_key), *columns]
    return header, [[r, *(vals.get(col, "–") for col in columns)] for r, vals in table.items()]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def latex(header: list[str], rows: list[list[str]], caption: str) -> str:
    def esc(text: str) -> str:
        for a, b in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"), ("&", "\\&")):
            text = text.replace(a, b)
        for a, b in (("±", "$\\pm$"), ("–", "--"), ("Δ", "$\\Delta$"), ("α", "$\\alpha$")):
            text = text.replace(a, b)
        return text

    spec = "l" + "c" * (len(header) - 1)
    body = [" & ".join(esc(h) for h in header) + " \\\\", "\\midrule"]
    body += [" & ".join(esc(v) for v in r) + " \\\\" for r in rows]
    return "\n".join(
        [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{esc(caption)}}}",
            f"\\begin{{tabular}}{{{spec}}}",
            "\\toprule",
            *body,
            "\\bottomrule",
            "\\end{tabular}",
            "\\end{table}",
        ]
    )


def _num(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


def csv_text(spec, cells: list[Cell]) -> str:
    """Every number of every cell, one row per cell (fractions, not percent; std empty
    under 2 seeds)."""
    evals = [ev.name for ev in spec.study.eval_sets]
    out = io.StringIO()
    w = csv.writer(out)
    stats = [
        *METRICS.values(),
        *(m for _, m, _, _ in CALIBRATION),
        *(f"eval_{e}_acc" for e in evals),
        *(degraded_metric(d) for d in spec.study.degradations),
    ]
    w.writerow(
        [
            *axes(spec),
            "n_seeds",
            "seeds",
            *(f"{m}_{s}" for m in stats for s in ("mean", "std")),
            "failed",
            "status",
        ]
    )
    for c in cells:
        nums = [x for m in stats for x in c.stat(m)]
        w.writerow(
            [
                *(c.cell.get(k, "") for k in axes(spec)),
                c.n,
                ";".join(map(str, c.seeds)),
                *("" if math.isnan(x) else f"{x:.6f}" for x in nums),
                c.failed,
                c.status,
            ]
        )
    return out.getvalue()


def compare_csv_text(spec, cells: list[Cell]) -> str:
    """Every number of every comparison, one row per comparison (fractions)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            "baseline",
            *axes(spec),
            "paired_seeds",
            "diff",
            "crossed_low",
            "crossed_high",
            "crossed_seed_var",
            "crossed_face_var",
            "paired_mean",
            "paired_t_low_seeds_only",
            "paired_t_high_seeds_only",
            "p_crossed",
            "p_holm",
            "p_bh",
            "verdict",
            "per_seed_diff",
            "per_seed_mcnemar_p",
            "mcnemar_pooled_test_noise_only",
            "direction",
            "missing",
            "condition",
        ]
    )
    conditions = ["", *(d.label for d in spec.study.degradations)]
    every = [
        (cond, x)
        for cond in conditions
        for c in cells
        for x in (c.degraded.get(cond, []) if cond else c.comparisons)
    ]
    for cond, comp in sorted(every, key=lambda t: (conditions.index(t[0]), t[1].block)):
        crossed, paired = comp.interval, comp.paired
        w.writerow(
            [
                baseline_text(comp.base),
                *(comp.cell.get(k, "") for k in axes(spec)),
                len(comp.seeds),
                *(_num(getattr(crossed, a, None)) for a in ("estimate", "low", "high")),
                *(_num(getattr(comp.crossed, a, None)) for a in ("seed_var", "face_var")),
                *(_num(getattr(paired, a, None)) for a in ("estimate", "low", "high")),
                _num(comp.p),
                _num(comp.p_holm),
                _num(comp.p_bh),
                comp.verdict,
                ";".join(f"{s}:{v['diff']:.6f}" for s, v in comp.per_seed.items()),
                ";".join(f"{s}:{v['p']:.6g}" for s, v in comp.per_seed.items()),
                _num(comp.pooled_mcnemar),
                comp.agreement,
                comp.missing,
                cond or "clean",
            ]
        )
    return out.getvalue()


def blocks(spec, cells: list[Cell]) -> list[tuple[dict, list[Comparison]]]:
    """(baseline, its comparisons in grid order) per entry of study.baselines."""
    comps = [x for c in cells for x in c.comparisons]
    return [
        (base, [x for x in comps if x.block == i]) for i, base in enumerate(spec.study.baselines)
    ]


def render(spec, cells: list[Cell]) -> dict[str, str]:
    """The table in every format: md (per-cell table, a comparison table per baseline with
    its notes, the paper layout), latex (the paper layout and each comparison block,
    booktabs), csv (every number of every cell), compare-csv (of every comparison)."""
    seeds = len(spec.study.seeds)
    caption = (
        f"{spec.name}: test accuracy (%), mean ± std over {seeds} seeds; "
        "epoch chosen on validation, test evaluated once"
    )
    parts = [f"### {caption}", markdown(*cell_rows(spec, cells))]
    tex = []
    paper = paper_layout(spec, cells)
    for base, comps in blocks(spec, cells):
        title = f"vs {baseline_text(base)}: Δ test accuracy (points), cell minus baseline"
        parts += [f"#### {title}", markdown(*comparison_rows(spec, comps))]
        tex.append(latex(*comparison_rows(spec, comps)[:2], f"{spec.name}, {title}"))
    for i, base in enumerate(spec.study.baselines if spec.study.degradations else []):
        title = f"vs {baseline_text(base)} under degradation: Δ test accuracy (points)"
        parts += [f"#### {title}", markdown(*degradation_rows(spec, cells, i))]
        tex.append(latex(*degradation_rows(spec, cells, i), f"{spec.name}, {title}"))
    if spec.study.degradations:
        parts.append(f"- {degradation_note(spec, cells)}")
    all_comps = [x for c in cells for x in c.comparisons]
    if all_comps:
        parts.append("\n".join(f"- {n}" for n in comparison_notes(spec, cells, all_comps)))
    elif cells and min(c.n for c in cells) == 1:
        parts.append("- One seed per cell: no spread, no interval.")
    if any(c.interrupted for c in cells):
        parts.append(
            "Interrupted runs continue with `nrfer sweep --space "
            f"{spec.source} --sweep {spec.name} --resume` (with the same --storage and "
            "--tracking-uri)."
        )
    parts += [f"#### By {short(spec.study.rows)}", markdown(*paper)]
    md = "\n\n".join(parts) + "\n"
    return {
        "md": md,
        "latex": "\n\n".join([latex(*paper, caption), *tex]) + "\n",
        "csv": csv_text(spec, cells),
        "compare-csv": compare_csv_text(spec, cells),
    }


def degradation_plot(spec, cells: list[Cell]):
    """Test accuracy against each degradation's severity, a line per cell (mean over its
    seeds, its clean accuracy dashed): a PIL image, or None without degradations."""
    from nrfer.viz import degradation_image

    degradations = spec.study.degradations
    shown = [
        c for c in cells if c.n and all(c.values.get(degraded_metric(d)) for d in degradations)
    ]
    if not degradations or not shown:
        return None
    rows, clean = {}, {}
    for c in shown:
        name = ", ".join(f"{short(k)}={value_text(v)}" for k, v in c.cell.items())
        rows[name] = [
            {"kind": d.kind, "severity": d.severity, "acc": c.stat(degraded_metric(d))[0]}
            for d in degradations
        ]
        clean[name] = {"acc": c.stat("test_acc")[0]}
    from nrfer.config import make_config
    from nrfer.data import face_size

    side = face_size(make_config({"data": spec.data}, spec.source).data) or 48
    return degradation_image(rows, clean, f"{spec.name}: test accuracy under degradation", side)


def write_tables(out: Path, tables: dict[str, str], plot=None) -> dict[str, Path]:
    """The tables in `out`, and `plot` (degradation_plot) as study_degradations.png."""
    out.mkdir(parents=True, exist_ok=True)
    names = {
        "md": "study_table.md",
        "latex": "study_table.tex",
        "csv": "study_table.csv",
        "compare-csv": "study_comparisons.csv",
    }
    paths = {}
    for fmt, text in tables.items():
        paths[fmt] = out / names[fmt]
        write_atomic(paths[fmt], text)
    if plot is not None:
        paths["degradations"] = out / "study_degradations.png"
        save_image(plot, paths["degradations"])
    return paths
