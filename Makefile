# Batchsite: `make run` starts the app on SQLite, `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# DEBUG is off unless set (see batchsite/settings.py); the development targets turn it on.
DEV := DEBUG=true

# qcluster stops cleanly on SIGINT; a SIGTERM to its whole group can leave django-q2's main
# process hanging, so send SIGINT, wait, then SIGKILL whatever is left.
STOP_WORKER = kill -INT $$WORKER 2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10; do \
	kill -0 $$WORKER 2>/dev/null || break; sleep 1; done; \
	pkill -KILL -P $$WORKER 2>/dev/null; kill -KILL $$WORKER 2>/dev/null; true
STOP_WORKER_ON_EXIT = WORKER=$$!; trap '$(STOP_WORKER)' EXIT;

.PHONY: install run test test-fast chromium bench demo screenshots lint clean

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Web server and one qcluster worker together; Ctrl-C stops both.
run: install
	$(DEV) $(BIN)/python manage.py migrate --noinput
	$(DEV) $(BIN)/python manage.py ensure_admin
	@$(DEV) $(BIN)/python manage.py qcluster & $(STOP_WORKER_ON_EXIT) \
	$(DEV) $(BIN)/python manage.py runserver $(HOST):$(PORT)

# The browser tests need Debian's Chromium; Playwright's own browser download is not used.
chromium:
	@command -v chromium >/dev/null || { \
	  echo "Installing Chromium for the browser tests (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The tests run in TEST_WORKERS processes (pytest-xdist): most of their time is spent waiting on
# real worker processes, servers and the network, not on the CPU. The `serial` tests restart
# PostgreSQL, which would cut every other test's connection, so they run afterwards, alone.
# TEST_WORKERS=1 runs everything in one process (about 25 min on PostgreSQL instead of about 11).
TEST_WORKERS ?= 4
XDIST = $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist worksteal)
# pytest exits 5 when a selection (PYTEST_ARGS) holds no test of that kind.
ALLOW_NONE = rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]
# The browser tests run in that second, one-process run too: they wait on page updates with
# timeouts, which a machine busy with four test processes can miss.
test: install chromium
	$(DEV) $(BIN)/pytest $(XDIST) -m "not serial and not browser" $(PYTEST_ARGS); $(ALLOW_NONE)
	$(DEV) $(BIN)/pytest -m "serial or browser" $(PYTEST_ARGS); $(ALLOW_NONE)

# Everything but the browser and fault tests; MARKERS narrows it further (it is added with
# "and", never replacing the exclusions), e.g. MARKERS=database.
TEST_FAST_MARKERS := not browser and not faults$(if $(MARKERS), and ($(MARKERS)))
test-fast: install
	$(DEV) $(BIN)/pytest $(XDIST) -m "$(TEST_FAST_MARKERS)" $(PYTEST_ARGS)

# The benchmark of issue 7 on the configured database (DATABASE_URL; SQLite by default):
# BENCH_ARGS="--quick" for a smoke run, "--scenarios 1,2" for some of it.
bench: install
	$(DEV) $(BIN)/python manage.py migrate --noinput
	$(DEV) $(BIN)/python manage.py bench $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) db.sqlite3* demo.sqlite3* test_db.sqlite3* staticfiles test-artifacts

# The whole pipeline without an API key: a local demo model answers instead of Gemini,
# on its own database (demo.sqlite3) so demo batches never mix with real ones.
# A second demo model stands for an OpenAI-compatible endpoint (docs/providers.md).
DEMO_ENV := $(DEV) DEMO_MODE=true DATABASE_URL=sqlite:///$(CURDIR)/demo.sqlite3 \
	GEMINI_BASE_URL=http://127.0.0.1:8765 GEMINI_API_KEY=demo-key BATCH_MODE_POLL_S=5 \
	OPENAI_BASE_URL=http://127.0.0.1:8766/v1 OPENAI_API_KEY=demo-key OPENAI_MODELS=demo-openai-model
demo: install
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput
	$(DEMO_ENV) $(BIN)/python manage.py demo_setup --address $(HOST):$(PORT)
	@$(DEMO_ENV) $(BIN)/python manage.py fake_gemini --port 8765 --latency-ms 400 --error-rate 0.05 --demo-answers --thinking-tokens 300 --batch-pending-s 20 --batch-running-s 20 & \
	MODEL=$$!; $(DEMO_ENV) $(BIN)/python manage.py fake_openai --port 8766 --latency-ms 300 --error-rate 0.05 --demo-answers & \
	OPENAI_MODEL=$$!; $(DEMO_ENV) $(BIN)/python manage.py qcluster & $(STOP_WORKER_ON_EXIT) \
	trap 'kill $$MODEL $$OPENAI_MODEL 2>/dev/null; $(STOP_WORKER)' EXIT; \
	$(DEMO_ENV) $(BIN)/python manage.py runserver $(HOST):$(PORT)

# Re-take docs/dashboard.png and docs/batch.png in a throwaway demo (needs Chromium).
screenshots: install chromium
	$(DEV) $(BIN)/python manage.py screenshots
