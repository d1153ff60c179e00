# The two commands: `make demo` runs the demo, `make test` runs the tests. Each does all
# set-up on a fresh machine (virtualenv, pinned installs, services for integration tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Helm's engine (the `helm` extra, about 240 MB): for the chart tests only, so `make demo`
# does without it.
HELM_STAMP := $(VENV)/.installed-helm
DEMO_HOME ?= $(CURDIR)/var/demo

.PHONY: demo test lint services ui bench clean venv constraints

$(STAMP): pyproject.toml constraints.txt examples/chai/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,fits]' -e examples/chai
	touch $(STAMP)

$(HELM_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,helm]'
	touch $(HELM_STAMP)

# Everything the tests need (what `make test` installs).
venv: $(STAMP) $(HELM_STAMP)

# Re-resolve the pins after a change of dependencies in pyproject.toml, examples/chai or
# constraints.in. Versions already in constraints.txt are kept where they still fit; add
# --upgrade (or --upgrade-package NAME) to move them. The header of constraints.txt repeats
# the exact command.
constraints: $(STAMP)
	$(BIN)/pip-compile --quiet --all-extras --no-emit-find-links --no-emit-index-url \
	  --output-file=constraints.txt --strip-extras \
	  constraints.in examples/chai/pyproject.toml pyproject.toml

services:
	@if [ "$$(id -u)" = "0" ]; then bash scripts/services/up.sh; \
	else echo "not root: skipping SLURM/sshd set-up (integration tests will skip)"; fi

# ruff, and the layers of docs/architecture.md: an upward import fails.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: $(HELM_STAMP) services lint
	. scripts/services/env.sh 2>/dev/null || true; \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m examples.demo --home $(DEMO_HOME)

# The UI on the demo's state, with the demo's settings: webserver and daemon together
# (`dagster dev`), so sensors, schedules, the run queue and backfills work; Ctrl-C stops both.
ui: $(STAMP)
	@test -d $(DEMO_HOME)/dagster || { echo "no demo state in $(DEMO_HOME): run make demo first"; exit 1; }
	PATH="$(CURDIR)/$(BIN):$$PATH" DAGSTER_HOME=$(DEMO_HOME)/dagster \
	CCAT_WORKFLOW_MANAGER_HOME=$(DEMO_HOME) \
	CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID=local-processing \
	CCAT_WORKFLOW_MANAGER_SENSOR_INTERVAL_SECONDS=5 \
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Benchmarks print JSON; PostgreSQL ones use CCAT_TEST_DATABASE_URL (default: the local server).
# Each writes bench/results/<name>.json (kept as it was if the benchmark fails), then
# bench/report.py writes bench/results/REPORT.md. `make bench BENCHES=overhead` runs a subset.
# inflight needs the loopback SLURM cluster and sshd (`make services`). partitions (100k and
# 400k scans, about half an hour) is run on its own: `make bench BENCHES=partitions`.
BENCHES ?= grouping gap_sensor collect check overhead batch_profile definitions_load poll_logs \
	inflight retirement
bench: export CCAT_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
bench: $(STAMP)
	mkdir -p bench/results
	. scripts/services/env.sh 2>/dev/null || true; \
	for b in $(BENCHES); do \
	  PYTHONPATH=$(CURDIR) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/$$b.py \
	    > bench/results/$$b.json.partial || exit 1; \
	  mv bench/results/$$b.json.partial bench/results/$$b.json; done
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/report.py

clean:
	rm -rf var .pytest_cache
