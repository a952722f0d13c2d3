"""`python -m sweep.best`: reproduce-best under the name the Makefile and README use; the
command and its steps (choose, train the seeds, report, register) are in sweep.reproduce.

    python -m sweep.best --sweep demo --seeds 3 --tracking-uri sqlite:///mlflow.db
"""

from sweep.reproduce import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
