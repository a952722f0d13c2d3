# nrfer-sweep: `make test` on a fresh clone sets up .venv and runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch/torchvision: the CUDA build on this machine's disk (also runs on the CPU).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
# the suite runs in two workers, one per core here (pytest-xdist; each has its own Ray temp folder and
# ports); TEST_WORKERS=0 runs it in one process
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist load --maxschedchunk 1)

.PHONY: help setup demo-pareto demo-study study-table test test-fast lint train-demo demo sweep ui ui-shots dashboard reproduce-best bench bench-search bench-search-long bench-pareto bench-lcbench bench-audit bench-onnx load-test clean

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

setup: $(STAMP)  ## .venv with the project (editable) and its dev extras

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup  ## the whole suite (the README's test command)
	$(BIN)/python -m pytest -m "not cluster" $(XDIST) $(PYTEST_ARGS)

test-fast: setup  ## the suite without the slow end-to-end tests
	$(BIN)/python -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

test-cluster: setup  ## faults injected into the production stack (PostgreSQL, S3, MLflow server, 2 Ray nodes; ~10 min)
	$(BIN)/python -m pytest -m cluster $(PYTEST_ARGS)

lint: setup  ## ruff check + format check + mypy (nrfer/ and sweep/, pyproject's [tool.mypy])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

train-demo: setup  ## train one demo model (nrfer train)
	$(BIN)/nrfer train --config nrfer/configs/demo.yaml --out runs/train-demo

SPACE ?= demo.yaml
SWEEP_ARGS ?=
demo: setup  ## the demo sweep: 8 tiny trials on synthetic FER+, adaptive early stopping, MLflow in ./mlflow.db
	$(BIN)/nrfer sweep --space demo $(SWEEP_ARGS)

demo-pareto: setup  ## accuracy against latency: 10 trials, two objectives, the Pareto front (a few minutes)
	$(BIN)/nrfer sweep --space demo_pareto $(SWEEP_ARGS)

sweep: setup  ## a sweep of SPACE=... (SWEEP_ARGS=... for more options)
	$(BIN)/nrfer sweep --space $(SPACE) $(SWEEP_ARGS)

# The demo study: 2 backbones x resizer on/off x 2 losses x 2 seeds, test once per run, the
# table with CIs and McNemar vs the resizer-off cells (search_spaces/demo_study.yaml).
demo-study: setup  ## the demo study: 8 cells x 2 seeds, test once each, the table
	$(BIN)/nrfer sweep --space demo_study $(SWEEP_ARGS)

STUDY ?= demo-study
FORMAT ?= md
study-table: setup  ## a study's table (STUDY=..., FORMAT=md|latex|csv)
	$(BIN)/nrfer study table --sweep $(STUDY) --format $(FORMAT) $(if $(TRACKING_URI),--tracking-uri $(TRACKING_URI))

SEEDS ?= 3
reproduce-best: setup  ## retrain the best trial with SEEDS seeds (SWEEP=, TOP=), test once, register
	$(BIN)/nrfer best --seeds $(SEEDS) $(if $(TOP),--top $(TOP)) $(if $(SWEEP),--sweep $(SWEEP)) $(if $(TRACKING_URI),--tracking-uri $(TRACKING_URI))

# Benchmarks (not tests): each prints a table and merges its rows into bench/results.json.
bench: setup  ## the benchmarks (bench/NOTES.md)
	$(BIN)/python bench/input_pipeline.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/train_step.py --models demo_vit --channels-last
	$(BIN)/python bench/sweep_bench.py all
	$(BIN)/python bench/disk.py
	$(BIN)/python bench/overhead.py --trials 10 40 160

# Search strategies on recorded learning curves (bench/search_replay.py; record once, replay).
bench-scale: setup  ## 1,000 trials on PostgreSQL + S3 and on a SQLite-backed server, ours vs plain Tune (an hour or more)
	$(BIN)/python bench/scale.py

bench-search: setup  ## search strategies replayed on recorded curves
	test -f bench/search_replay_curves.json || $(BIN)/python bench/search_replay.py record
	$(BIN)/python bench/search_replay.py run

# LCBench's 34 public tasks (bench/lcbench.py, the YAHPO Gym surrogate): every arm, in simulated
# time; LCBENCH_SEEDS=100 for the issue's full count (about 20x the time of the default 5).
LCBENCH_SEEDS ?= 5
bench-lcbench: setup  ## search strategies on LCBench's public learning curves (~60 min at 5 seeds on 2 cores)
	$(BIN)/python bench/lcbench_replay.py run --fresh --seeds $(LCBENCH_SEEDS) --out bench/lcbench_results.json
	$(BIN)/python bench/pareto_replay.py run --reps $(LCBENCH_SEEDS) --lcbench \
		--arms "FIFO (no early stopping)" "adaptive, ASHA on val_acc" "adaptive, dominance (ASHA's fraction; default)"

# The long curves (24 epochs, bench/replay_long.yaml), where successive halving can pay.
bench-search-long: setup  ## search strategies on 24-epoch curves, 100 seeds, with CIs
	test -f bench/search_replay_curves_24ep.json || $(BIN)/python bench/search_replay.py record \
		--space bench/replay_long.yaml --n 48 --epochs 24 --seed 123 --out bench/search_replay_curves_24ep.json
	$(BIN)/python bench/search_replay.py run --curves bench/search_replay_curves_24ep.json \
		--reps 100 --grace 2 --rf 2 --name search_replay_24ep --plot bench/search_replay_24ep.png

# Two objectives (val_acc, latency_ms): early stopping by dominance vs ASHA on the recorded
# curves, each config's latency measured (bench/pareto_replay_costs.json), 100 seeds.
bench-pareto: setup  ## multi-objective early stopping replayed: final-front trials stopped, epochs saved
	test -f bench/pareto_replay_costs.json || $(BIN)/python bench/pareto_replay.py costs
	$(BIN)/python bench/pareto_replay.py run
	$(BIN)/python bench/pareto_replay.py run --latency config

# The leakage audit at FER2013's size: 35,887 synthetic faces with twins planted across splits.
bench-audit: setup  ## nrfer data audit on 35,887 faces: time, recall per transformation, all-pairs ratio
	$(BIN)/python bench/audit.py --json bench/results.json

# Inference: onnxruntime against torch eager on the exported graph (nrfer export), batch 1 and 64.
bench-onnx: setup  ## ONNX export latency: onnxruntime vs torch eager, as a ratio
	$(BIN)/python bench/onnx_latency.py

# 50 one-epoch trials, 2 at a time: no run lost, driver memory; vs a new worker per trial.
load-test: setup  ## 50 one-epoch trials: no run lost, driver memory
	$(BIN)/python bench/load_test.py --compare

# The MLflow UI on loopback only; see the README before exposing it.
UI_PORT ?= 5000
ui: setup  ## the MLflow UI on ./mlflow.db (TRACKING_URI=, SWEEP=), opened on the trials
	$(BIN)/nrfer ui --port $(UI_PORT) $(if $(TRACKING_URI),--tracking-uri $(TRACKING_URI)) $(if $(SWEEP),--sweep $(SWEEP))

# Screenshots of the MLflow UI on the latest sweep (headless chromium: apt-get install chromium).
ui-shots: setup  ## screenshots of the MLflow UI (headless chromium)
	$(BIN)/python docs/ui_shots.py --tracking-uri $(or $(TRACKING_URI),sqlite:///mlflow.db) $(if $(SWEEP),--sweep $(SWEEP))

# The Optuna studies of the sweeps (one per sweep name), on loopback only.
DASHBOARD_PORT ?= 8080
OPTUNA_STORAGE ?= sqlite:///optuna.db
dashboard: setup  ## optuna-dashboard on the sweeps' studies
	$(BIN)/python -c "import optuna_dashboard" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[dashboard]'
	$(BIN)/nrfer dashboard --optuna-storage $(OPTUNA_STORAGE) --port $(DASHBOARD_PORT)

clean:  ## remove runs/ and pytest's cache
	rm -rf runs .pytest_cache
