"""The interactive report's page from hand-made trial records: the winner named at the top
with its config, the data and the metric; trials numbered t01.. in every plot; slices in a
grid that stays on the page; parallel coordinates over the keys every trial has, the
conditional ones named; a study table as HTML tables with wrapped notes, never raw Markdown;
with several objectives the leaderboard shows them and each trial's front rank; run links
at the UI address given."""

import json
import re

from sweep.analysis.html_report import TrialRecord, build_html, study_table_html

SEARCH = {f"k{i}": {"uniform": [0, 1]} for i in range(14)} | {
    "loss.alpha": {"uniform": [0.5, 1.0], "when": {"loss.name": "fpdls"}}
}


def records(n: int = 6) -> list[TrialRecord]:
    out = []
    for i in range(1, n + 1):
        params = {f"k{j}": (i * 7 + j) % 10 / 10 for j in range(14)}
        if i % 2:
            params["loss.alpha"] = 0.5 + i / 20  # active in odd trials only
        out.append(
            TrialRecord(
                trial_id=f"id{i}",
                run_id=f"run{i}",
                name=f"t{i:02d} lr={i}e-3",
                number=i,
                params=params,
                curve=[0.1 * i, 0.1 * i + 0.05],
                value=0.1 * i + 0.05,
                state="finished",
                metrics={"latency_ms": 10.0 * (7 - i) if i != 3 else 99.0, "params": 1e5},
            )
        )
    return out


def figure_data(page: str) -> list[list[dict]]:
    """The data arrays of every plotly figure on the page."""
    out = []
    for m in re.finditer(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*", page):
        data, _ = json.JSONDecoder().raw_decode(page, m.end())
        out.append(data)
    return out


def test_the_page_names_the_winner_and_numbers_trials_as_tnn():
    spec = {
        "name": "demo",
        "metric": "val_acc",
        "mode": "max",
        "search": SEARCH,
        "data": {"dataset": "synthetic"},
    }
    page = build_html(
        records(), spec, title="Sweep demo", run_url=lambda r: f"http://127.0.0.1:5123/#/r/{r}"
    )
    top = page[: page.index("<h2>")]
    assert "Best so far:" in top and "t06 lr=6e-3" in top and "0.6500" in top
    assert "http://127.0.0.1:5123/#/r/run6" in top and "k0 = " in top
    assert "val_acc" in top and "synthetic" in top and "nrfer best --sweep demo" in top
    traces = [t for fig in figure_data(page) for t in fig]
    history = next(t for t in traces if t.get("name") == "best so far")
    assert history["x"] == [f"t{i:02d}" for i in range(1, 7)]  # never 0-5
    # parallel coordinates: the always-active keys only, the conditional one named
    par = figure_data(page[page.index("<h2>Parallel") :])[0]
    labels = {c[0] for t in par for c in t.get("customdata") or [] if isinstance(c, list)}
    labels |= {tick for t in par for tick in json.dumps(t).split('"') if tick.startswith("k")}
    assert "k0" in labels and "loss.alpha" not in json.dumps(par)
    assert "Conditional keys (active in only some trials) are left out" in page
    # slices: 15 keys in rows of 3, one point per trial where the key was active
    m = re.search(r'"height":(\d+)', page[page.index("<h2>Slices") :])
    assert m and int(m.group(1)) <= 60 + 280 * 5
    alpha = [t for t in traces if t.get("type") == "scatter" and len(t.get("x", [])) == 3]
    assert alpha, "loss.alpha's panel has its 3 active trials"


def test_study_tables_are_html_and_objectives_are_in_the_leaderboard():
    md = (
        "#### demo-study: test accuracy (%)\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "- a note that is long " + "and wraps " * 40 + "\n- another\n"
    )
    html_text = study_table_html(md)
    assert "<pre>" not in html_text and "|---|" not in html_text
    assert '<div class="wide"><table>' in html_text and "<td>1</td><td>2</td>" in html_text
    assert html_text.count("<li>") == 2 and "<h4>" in html_text
    spec = {
        "name": "p",
        "metric": "val_acc",
        "mode": "max",
        "objectives": {"val_acc": "max", "latency_ms": "min"},
        "search": {"k0": {"uniform": [0, 1]}},
    }
    page = build_html(records(), spec, title="p", study_table=md)
    board = page[page.index("<h2>Leaderboard") :]
    head = re.search(r"<thead><tr>(.*?)</tr>", board).group(1)
    assert "<th>latency_ms</th><th>front rank</th>" in head
    # t06 (0.65, 10 ms) dominates everything: front 1; t03 (99 ms) is dominated by all later
    rows = re.findall(r"<tr><td>(\d+)</td><td>([\d.]+)</td><td>([\d.]+)</td><td>(\d*)</td>", board)
    by_value = {v: (lat, rank) for _, v, lat, rank in rows}
    assert by_value["0.6500"] == ("10", "1")
    assert int(by_value["0.3500"][1]) > 1
    assert "<pre>" not in page
