"""The command-line parsers of the sweep layer's commands (best, study, ui, dashboard),
apart from the code they run: building one imports argparse only, so `nrfer X --help`
answers at once. The sweep command's own parser is in sweep.commands.sweep (as light)."""

from __future__ import annotations

import argparse

from nrfer.cli import HelpFormatter, float_in, positive_int

URI_HELP = "the MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"


def _parser(doc: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter)


def best_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    parser.add_argument(
        "--sweep", help="the sweep's name (its MLflow experiment); default: the most recent sweep"
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=3,
        help="seeds per retrained trial, each trained from scratch and tested once",
    )
    parser.add_argument(
        "--top",
        type=positive_int,
        default=1,
        help="retrain the K best trials (by val) with --seeds seeds each; the winner is the best "
        "mean val accuracy",
    )
    parser.add_argument(
        "--pick",
        metavar="EXPR",
        help="retrain the trial this chooses among the finished ones, e.g. 'max val_acc where "
        "latency_ms < 5' (a sweep with several objectives: a point of its Pareto front; "
        "constraints on any logged metric, joined by 'and')",
    )
    parser.add_argument("--tracking-uri", help=URI_HELP)
    parser.add_argument(
        "--out", default=None, help="output folder (default runs/reproduce-<sweep>)"
    )
    parser.add_argument(
        "--parallel",
        choices=("auto", "yes", "no"),
        default="auto",
        help="train the seeds at once through Ray: auto when the CPUs allow it",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also MLflow's download bars and warnings (hidden by default)",
    )
    parser.add_argument(
        "--model-name",
        help="registered model name (default: the space's registered_model, else nrfer-<sweep>)",
    )
    parser.add_argument(
        "--exclude",
        metavar="AUDIT_CSV",
        help="also report test accuracy without the test faces that have a twin in train or "
        "val (the audit.csv of `nrfer data audit`)",
    )
    return parser


def study_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="print (and write) a study's table")
    table.add_argument("--sweep", required=True, help="the study's name (its space file's name)")
    table.add_argument("--tracking-uri", help=URI_HELP)
    table.add_argument(
        "--format",
        choices=("md", "latex", "csv", "compare-csv"),
        default="md",
        help="md: cells, comparisons and notes; latex: booktabs; csv: every number of every "
        "cell; compare-csv: of every comparison (default md)",
    )
    table.add_argument(
        "--out",
        help="also write study_table.md/.tex/.csv and study_comparisons.csv into this folder",
    )
    table.add_argument(
        "--exclude",
        metavar="AUDIT_CSV",
        help="also test accuracy without the test faces that have a twin in train or val "
        "(`nrfer data audit`; default: the study's study.exclude_leaked)",
    )
    plan = sub.add_parser(
        "plan",
        help="seeds a comparison needs to detect a difference, from the study's measured spread",
    )
    plan.add_argument("--sweep", required=True, help="the study's name (its space file's name)")
    plan.add_argument("--tracking-uri", help=URI_HELP)
    plan.add_argument(
        "--delta",
        type=float_in(0, 100, closed_high=True),
        default=1.0,
        help="the difference to detect, in points of accuracy (default 1.0)",
    )
    plan.add_argument("--power", type=float_in(0, 1), default=0.8, help="default 0.8")
    plan.add_argument("--alpha", type=float_in(0, 1), default=0.05, help="two-sided; default 0.05")
    return parser


def weights_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser(
        "fetch",
        help="download timm's weights into the Hugging Face cache, once, before any trial",
        formatter_class=HelpFormatter,
    )
    fetch.add_argument(
        "--space",
        action="append",
        default=[],
        help="a space file or shipped space name: every backbone it can sample (repeatable)",
    )
    fetch.add_argument(
        "--backbone",
        action="append",
        default=[],
        help="a timm backbone name (name or name.tag; repeatable)",
    )
    return parser


def ui_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    parser.add_argument("--tracking-uri", help=URI_HELP)
    parser.add_argument("--sweep", help="the sweep to open (default: the most recent sweep)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=positive_int, default=5000, help="the UI's port")
    parser.add_argument(
        "--no-browser", action="store_true", help="print the link only, open no browser"
    )
    return parser


def dashboard_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    parser.add_argument(
        "--optuna-storage",
        default="sqlite:///optuna.db",
        help="the studies' RDB URL (default sqlite:///optuna.db, next to ./mlflow.db)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=positive_int, default=8080, help="the dashboard's port")
    return parser


def report_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    parser.add_argument("--sweep", help="the sweep's name; default: the most recent sweep")
    parser.add_argument("--tracking-uri", help=URI_HELP)
    parser.add_argument("--out", help="the folder for index.html; default: runs/report-<sweep>")
    parser.add_argument("--open", action="store_true", help="open it in the browser")
    parser.add_argument(
        "--ui-url",
        help="where the MLflow UI the run links open is (default: a tracking server itself; "
        "for a local store http://127.0.0.1:5000, where `nrfer ui` serves it)",
    )
    return parser
