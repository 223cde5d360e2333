# ablate — developer entry points. `make quickstart` and `make test` are the README's two commands;
# `make test-fast` is the inner loop (after `make setup`): the suite without the tests marked slow
# (those that start Ray, run a sweep, start an MLflow server or train for more than a few seconds).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: setup quickstart test test-fast coverage lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned first: the CPU build on disk. A torch *range* in a fresh venv pulls a CUDA build.
setup: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q -e plugins/ablate-scalenorm --no-deps

quickstart: setup
	$(BIN)/ablate run experiments/quickstart.yaml

TESTS := tests plugins/ablate-scalenorm/tests

# Two pytest-xdist workers, a test module per worker at a time (module fixtures are built once; the longest
# modules go first, in the order tests/conftest.py gives, which --no-loadscope-reorder keeps): one process
# alone left a core idle while its tests waited on subprocesses and servers, two keep both busy (more do not
# help: benchmarks/README.md). Coverage costs about a fifth more CPU in-process and is its own target.
WORKERS := -n 2 --dist loadfile --no-loadscope-reorder

test: setup
	$(BIN)/python -m pytest $(TESTS) $(WORKERS)

test-fast:
	$(BIN)/python -m pytest $(TESTS) -m "not slow" $(WORKERS)

# coverage of the package, files at 100% left out; Ray workers and subprocesses are not measured
coverage: setup
	$(BIN)/python -m pytest $(TESTS) $(WORKERS) --cov=ablate --cov-report=term:skip-covered

lint:
	$(BIN)/ruff check ablate tests benchmarks plugins
	$(BIN)/mypy ablate

bench:
	$(BIN)/python benchmarks/bench_norms.py
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_probes.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_quickstart.py --check
	$(BIN)/python benchmarks/bench_dashboard.py

clean:
	rm -rf .ablate .pytest_cache .coverage
