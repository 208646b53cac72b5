# racecast: `make run` and `make test` are the two commands; both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED_HK := ../shared/data/hkracing

# No telemetry prompts or network calls from kedro-telemetry / feast usage stats.
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export FEAST_USAGE := False
export PYTHONWARNINGS := ignore::DeprecationWarning
export MPLBACKEND := Agg

.PHONY: setup run run-parallel test browser services hkjc-data hkjc-run viz mlflow-ui bench lint lock serve clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "racecast needs Python 3.11 (found %d.%d)" % sys.version_info[:2])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: setup
	$(BIN)/kedro run

# The same run with the model zoo's branches on one process per core (racecast.runners);
# same evaluation figures as `make run`.
run-parallel: setup
	$(BIN)/kedro run --runner=racecast.runners.ParallelRunner

test: setup browser services
	$(BIN)/python -m pytest

# The race-day board's browser test drives Debian's chromium (Playwright's own browser
# download is not used). Installed with apt-get when missing and we may (root).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed (apt-get install chromium): the browser test will be skipped"

# The engine-equality tests start Debian's redis-server on a free loopback port and Spark
# local[2] (a JVM: Java 17) and stop both; installed with apt-get when missing and we may
# (root). Nothing is left running.
services:
	@command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; } || \
		echo "redis-server is not installed (apt-get install redis-server): the Redis tests will be skipped"
	@command -v java >/dev/null || [ -n "$$JAVA_HOME" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; } || \
		echo "Java is not installed (apt-get install openjdk-17-jre-headless): the Spark tests will be skipped"

hkjc-data:
	@if [ -f $(SHARED_HK)/runs.csv ] && [ -f $(SHARED_HK)/races.csv ]; then \
		mkdir -p data/01_raw/hkjc && cp $(SHARED_HK)/races.csv $(SHARED_HK)/runs.csv data/01_raw/hkjc/ && \
		echo "copied races.csv and runs.csv into data/01_raw/hkjc/"; \
	else \
		echo "Hong Kong data not found at $(SHARED_HK)."; \
		echo "Download races.csv and runs.csv from https://www.kaggle.com/datasets/gdaley/hkracing"; \
		echo "and put them in data/01_raw/hkjc/."; \
		exit 1; \
	fi

hkjc-run: setup hkjc-data
	$(BIN)/kedro run --env hkjc

viz: setup
	$(BIN)/kedro viz build

# The MLflow UI on the runs of `make run` (one run per `kedro run`: every model's metrics,
# the evaluation and monitoring reports and figures as artifacts), at http://127.0.0.1:5000.
# One uvicorn worker and no job runner (GenAI jobs, unused here). exec: the server is this
# recipe's process, so Ctrl-C or SIGTERM to make stops it (mlflow forwards the signal to
# its uvicorn child); nothing is left running.
MLFLOW_DB ?= mlflow.db
MLFLOW_PORT ?= 5000
mlflow-ui: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec $(BIN)/mlflow server \
		--backend-store-uri sqlite:///$(MLFLOW_DB) --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

# Speed is measured here, never asserted in tests; results go to data/08_reporting/.
bench: setup
	$(BIN)/python benchmarks/ingestion.py
	$(BIN)/python benchmarks/features.py

# The inference service on the registry champion (after `make run`). Set API keys in
# conf/local/credentials.yml (racecast_api_keys) or RACECAST_API_KEYS.
serve: setup
	$(BIN)/racecast serve --host 127.0.0.1 --port 8000

lint: setup
	$(BIN)/ruff check src tests benchmarks

# Re-resolve the pinned set after editing dependencies in pyproject.toml.
lock:
	rm -rf /tmp/racecast-lock && $(PYTHON) -m venv /tmp/racecast-lock
	/tmp/racecast-lock/bin/pip install --quiet --upgrade "pip==26.3"
	/tmp/racecast-lock/bin/pip install --quiet -e ".[dev]"
	( echo "# Pinned dependency set (pip freeze of a resolved Python 3.11 install). Used as \`pip install -c constraints.txt\`."; \
	  echo "# Regenerate with \`make lock\` after changing dependencies in pyproject.toml."; \
	  /tmp/racecast-lock/bin/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' ) > constraints.txt

clean:
	rm -rf $(VENV)
