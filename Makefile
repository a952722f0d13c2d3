# nrfer-sweep: `make test` on a fresh clone sets up .venv and runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch/torchvision: the CUDA build on this machine's disk (also runs on the CPU).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: setup demo-study study-table test test-fast lint train-demo demo sweep ui ui-shots dashboard reproduce-best bench bench-search load-test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

train-demo: setup
	$(BIN)/python -m nrfer.train --config nrfer/configs/demo.yaml --out runs/train-demo

SPACE ?= demo.yaml
SWEEP_ARGS ?=
demo: setup
	$(BIN)/python launch.py --space demo.yaml $(SWEEP_ARGS)

sweep: setup
	$(BIN)/python launch.py --space $(SPACE) $(SWEEP_ARGS)

# The demo study: 2 backbones x resizer on/off x 2 losses x 2 seeds, test once per run, the
# table with CIs and McNemar vs the resizer-off cells (search_spaces/demo_study.yaml).
demo-study: setup
	$(BIN)/python launch.py --space demo_study.yaml $(SWEEP_ARGS)

STUDY ?= demo-study
FORMAT ?= md
study-table: setup
	$(BIN)/python -m sweep.study table --sweep $(STUDY) --format $(FORMAT) $(if $(TRACKING_URI),--tracking-uri $(TRACKING_URI))

SEEDS ?= 3
reproduce-best: setup
	$(BIN)/python -m sweep.best --seeds $(SEEDS) $(if $(TOP),--top $(TOP)) $(if $(SWEEP),--sweep $(SWEEP)) $(if $(TRACKING_URI),--tracking-uri $(TRACKING_URI))

# Benchmarks (not tests): each prints a table and merges its rows into bench/results.json.
bench: setup
	$(BIN)/python bench/input_pipeline.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/train_step.py --models demo_vit --channels-last
	$(BIN)/python bench/sweep_bench.py all

# Search strategies on recorded learning curves (bench/search_replay.py; record once, replay).
bench-search: setup
	test -f bench/search_replay_curves.json || $(BIN)/python bench/search_replay.py record
	$(BIN)/python bench/search_replay.py run

# 50 one-epoch trials, 2 at a time: no run lost, driver memory; vs a new worker per trial.
load-test: setup
	$(BIN)/python bench/load_test.py --compare

# The MLflow UI on loopback only; see the README before exposing it.
UI_PORT ?= 5000
ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(UI_PORT)

# Screenshots of the MLflow UI on the latest sweep (headless chromium: apt-get install chromium).
ui-shots: setup
	$(BIN)/python docs/ui_shots.py --tracking-uri sqlite:///mlflow.db $(if $(SWEEP),--sweep $(SWEEP))

# The Optuna studies of the sweeps (one per sweep name), on loopback only.
DASHBOARD_PORT ?= 8080
OPTUNA_STORAGE ?= sqlite:///optuna.db
dashboard: setup
	$(BIN)/python -c "import optuna_dashboard" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[dashboard]'
	$(BIN)/optuna-dashboard $(OPTUNA_STORAGE) --host 127.0.0.1 --port $(DASHBOARD_PORT)

clean:
	rm -rf runs .pytest_cache
