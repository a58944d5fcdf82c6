# Two commands from a fresh clone:  make run   and   make test
# Both bootstrap .venv (reinstalled only when pyproject.toml changes).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export DBT_PROFILES_DIR := profiles
export WAREHOUSE_PATH ?= data/warehouse.duckdb

.PHONY: run test lint docs format venv sample dbt-build monitor report-shot clean bench bench-10m

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "installing $(VENV): the project and its tools (about a minute; again only when pyproject.toml changes)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -qq --upgrade pip
	@$(PY) -m pip install -qq -e ".[dev,serving,redis]"
	@touch $@

## make run: sample data (if missing) -> demo orders API -> python -m pipeline run:
## ingest -> dbt build -> monitor -> publish data/analytics.duckdb (only when every gate passed)
run: venv
	$(PY) -m demo

## make test: lint, the docs (--strict), then every test (what CI runs first), one worker per core
test: lint docs
	$(PY) -m pytest -n auto --dist load

## make test-loaded: make test's tests with two CPU-bound processes beside them: none may fail
## because the machine is busy (they wait for events, not for time)
.PHONY: test-loaded
test-loaded: venv
	@$(PY) -c 'while True: pass' & one=$$!; $(PY) -c 'while True: pass' & two=$$!; \
	trap 'kill $$one $$two' EXIT; $(PY) -m pytest -n auto --dist load

## make test-bench: the benchmark scripts end to end at 10k rows and two small scale sizes
.PHONY: test-bench
test-bench: venv
	$(PY) -m pytest tests/benchmarks -m bench

## make test-package: the tool's wheel installed into a fresh virtualenv outside the repository,
## a project of its own made by init, run, then upgraded (~1 min)
.PHONY: test-package
test-package: venv
	$(PY) -m pytest tests/structure -m package

## make test-stress: two ingestions and a pipeline run started together, 20 times (~10 min)
.PHONY: test-stress
test-stress: venv
	$(PY) -m pytest tests/reliability -m stress

## make docs: the reference pages in docs/ as a static site in site/ (mkdocs, offline)
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

lint: venv
	$(VENV)/bin/lint-imports --no-logo --no-cache
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# two processes; the warning filter hides multiprocessing's leaked-semaphore notice at exit
	PYTHONWARNINGS=ignore::UserWarning:multiprocessing.resource_tracker \
	  $(VENV)/bin/sqlfluff lint models macros warehouse/dbt/macros --disable-progress-bar --nocolor --processes 2

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/sqlfluff fix models macros warehouse/dbt/macros --disable-progress-bar --nocolor

sample: venv
	$(PY) -m demo.generator --out data/inbox --users 1000 --seed 42

dbt-build: venv
	$(PY) -m pipeline deps
	$(VENV)/bin/dbt build

monitor: venv
	$(PY) -m monitoring

## make bench: benchmarks at 1M rows vs DuckDB/pandas baselines (table + benchmarks/results/*.json)
bench: venv
	$(PY) benchmarks/run.py --rows 1000000

## make bench-10m: the targets stated at 10M rows (CSV and JSONL ingest, memory, full and
## incremental pipeline), one repetition each, ~15 min
bench-10m: venv
	$(PY) benchmarks/run.py --rows 10000000 --repeat 1 --only csv,jsonl,pipeline

## make bench-users: the users chain (ingest + dbt build of its models) at 3.5M users rows vs pandas
.PHONY: bench-users
bench-users: venv
	$(PY) benchmarks/run.py --rows 3000000 --repeat 1 --only users

## make bench-fresh: the speed layer, XADD -> first API answer counting the event, at 1k and 10k/s
.PHONY: bench-fresh
bench-fresh: venv
	$(PY) -m benchmarks.fresh --json benchmarks/results/$$(date -u +%F)-fresh.json

## make bench-scale: full + 1% incremental runs at 1M, 3M, 10M, 30M events (~15 min, 10 GB disk)
.PHONY: bench-scale
bench-scale: venv
	$(PY) -m benchmarks.scale

## make report-shot: screenshot target/quality_report.html with headless Chromium, when installed
report-shot:
	@test -f target/quality_report.html || { echo "no target/quality_report.html: run make monitor first"; exit 2; }
	@if command -v chromium >/dev/null 2>&1; then \
		chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
			--disable-component-update --disable-sync --no-first-run --hide-scrollbars \
			--window-size=1280,4000 --screenshot=$(CURDIR)/target/quality_report.png \
			file://$(CURDIR)/target/quality_report.html \
		&& echo "wrote target/quality_report.png"; \
	else echo "chromium is not installed (apt-get install chromium): open target/quality_report.html in a browser"; fi

clean:
	rm -rf data target logs site .pytest_cache

## Scale-out (docs/scale-out.md): the same dbt project on PostgreSQL and
## on Spark, each in its own venv so .venv stays lean; marts compared with the DuckDB build.
.PHONY: test-postgres test-spark
VENV_POSTGRES := .venv-postgres
VENV_SPARK := .venv-spark

$(VENV_POSTGRES)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_POSTGRES)
	$(VENV_POSTGRES)/bin/python -m pip install -qq --upgrade pip
	$(VENV_POSTGRES)/bin/python -m pip install -qq -e ".[dev,postgres]"
	touch $@

$(VENV_SPARK)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_SPARK)
	$(VENV_SPARK)/bin/python -m pip install -qq --upgrade pip
	$(VENV_SPARK)/bin/python -m pip install -qq -e ".[dev,spark]"
	touch $@

## make test-postgres: throwaway PostgreSQL cluster (Debian postgresql), dlt -> raw, dbt build, compare
test-postgres: $(VENV_POSTGRES)/.installed
	$(VENV_POSTGRES)/bin/python -m pytest tests/engines -m postgres

## make test-spark: in-process Spark (Java 17), dlt -> Parquet lake, dbt build, compare
test-spark: $(VENV_SPARK)/.installed
	$(VENV_SPARK)/bin/python -m pytest tests/engines -m spark

## Dagster (docs/dagster.md): the pipeline as assets, in its own venv (.venv-dagster).
.PHONY: dagster test-dagster
VENV_DAGSTER := .venv-dagster
DAGSTER_HOME ?= $(CURDIR)/data/dagster

$(VENV_DAGSTER)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_DAGSTER)
	$(VENV_DAGSTER)/bin/python -m pip install -qq --upgrade pip
	$(VENV_DAGSTER)/bin/python -m pip install -qq -e ".[dev,dagster]"
	touch $@

## make dagster: the Dagster UI on http://127.0.0.1:3000 over the sample (its data and orders API
## as make run has them); Ctrl-C stops both. Your own project: docs/dagster.md.
dagster: $(VENV_DAGSTER)/.installed
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || cp orchestration/dagster.yaml $(DAGSTER_HOME)/
	@test -f data/inbox/manifest.json || $(VENV_DAGSTER)/bin/python -m demo.generator \
		--out data/inbox --users 1000 --seed 42
	@$(VENV_DAGSTER)/bin/python -m demo.free_ports "8765=the demo orders API" "3000=the Dagster UI"
	$(VENV_DAGSTER)/bin/python -m demo.api --data data/inbox --token demo-token --quiet & \
	api=$$!; trap 'kill $$api' EXIT; \
	DAGSTER_HOME=$(DAGSTER_HOME) SOURCES__ORDERS__API_TOKEN=demo-token \
		$(VENV_DAGSTER)/bin/dg dev -h 127.0.0.1 -p 3000 -m orchestration.definitions

## make screenshots: docs/assets/*.png after a make run (API docs, report, Dagster), in headless Chromium
.PHONY: screenshots
screenshots: venv $(VENV_DAGSTER)/.installed
	$(VENV_DAGSTER)/bin/python -m demo.screenshots

## make test-dagster: every asset in-process vs python -m pipeline run, gates, lock, sensor, webserver
test-dagster: $(VENV_DAGSTER)/.installed
	$(VENV_DAGSTER)/bin/python -m pytest tests/orchestration -m dagster
