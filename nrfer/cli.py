"""One error path for every command: `error: <file/key/value>: <what is wrong>` and exit 2
for bad input, exit 1 with one line for a failure of ours, `--debug` for the traceback."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

# Bad input, as the user gave it: a file, a key, a value (our own errors are ValueErrors).
USER_ERRORS = (ValueError, OSError, yaml.YAMLError, RecursionError, OverflowError)


def one_line(e: BaseException, limit: int = 2000) -> str:
    """The message of `e`, without torch's advice to load with weights_only=False (the unsafe
    option) and cut to `limit` characters."""
    text = str(e)
    if isinstance(e, RecursionError):
        text = "nested too deep to read (recursion limit)"
    text = "\n".join(ln for ln in text.splitlines() if "weights_only=False" not in ln)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} chars)"


def run_command(
    parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int], argv=None
) -> int:
    """Parse `argv` (adding --debug) and run `body(args)` behind the one error path."""
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    args = parser.parse_args(argv)
    try:
        return body(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if args.debug:
            raise
        print(
            f"error: {type(e).__name__}: {one_line(e)} (an unexpected failure; run again with "
            "--debug for the traceback and report it)",
            file=sys.stderr,
        )
        return 1


def int_at_least(low: int):
    """argparse type: an integer >= `low` (its error names the bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"  # argparse names the type by it in some errors
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def output_file(text: str) -> str:
    """argparse type: a file to write: not empty, not an existing folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file name")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name in it")
    return text


def float_in(low: float, high: float, closed_high: bool = False):
    """argparse type: a number in (low, high), or (low, high] with `closed_high`."""
    shown = f"({low:g}, {high:g}{']' if closed_high else ')'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (low < value < high or (closed_high and value == high)):
            raise argparse.ArgumentTypeError(f"expected a number in {shown}, got {text!r}")
        return value

    return parse


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def check_out_dir(path: Path, where: str) -> Path:
    """An output folder: absent (it is created) or a folder; never a file."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{where} {path}: is a file; give a folder (it is created if missing)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{where} {path}: {parent} is a file, not a folder")
            break
    return path


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every command's --help: the description as written, and each option's default after
    its help (unless the help already says it, or there is none to say)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, [], argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


if __name__ == "__main__":  # an old entry point: say where the command went
    print(
        "error: nrfer.cli holds the commands' error path, not a command; the command line "
        "is `nrfer` (nrfer --help lists sweep, train, best, study, ...; python -m sweep.cli "
        "without the installed script)",
        file=sys.stderr,
    )
    raise SystemExit(2)
