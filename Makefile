# hookline — the two quick-start commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench migrations check-config clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hookline needs Python 3.11 or newer (set PYTHON=python3.x)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $(STAMP)

# What the tests need beyond the server (Playwright, hypothesis, schemathesis…): `make run` skips it.
TEST_STAMP := $(VENV)/.test-installed
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(TEST_STAMP)

# The example channel, a package of its own (examples/hookline-telegram): installed for the tests only.
EXAMPLES := $(VENV)/.examples-installed
$(EXAMPLES): $(TEST_STAMP) examples/hookline-telegram/pyproject.toml
	$(BIN)/python -m pip install --quiet -e './examples/hookline-telegram[test]'
	@touch $(EXAMPLES)

## Run the server on the embedded default: SQLite and config/hookline.toml.
run: $(STAMP)
	$(BIN)/hookline serve

## Run the whole test suite: SQLite always, PostgreSQL too when one answers (DATABASE_URL or 127.0.0.1:5432);
## the example Telegram plugin's tests too, through the kit's fixtures (HOOKLINE_TEST_POSTGRES=auto: both backends).
test: $(EXAMPLES)
	HOOKLINE_TEST_POSTGRES=$${HOOKLINE_TEST_POSTGRES:-auto} $(BIN)/python -m pytest

## Benchmark (docs/performance.md): ceilings, peers, hookline inbound and outbound on SQLite and PostgreSQL,
## a soak; writes bench/results/<time>.json, .md and .png. Options in BENCH_ARGS, e.g. BENCH_ARGS="--duration 5 --soak 0".
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## After changing core/storage/models.py: write the migration for it.
migrations: $(STAMP)
	$(BIN)/tortoise -c core.storage.database.MIGRATIONS_CONFIG makemigrations

check-config: $(STAMP)
	$(BIN)/hookline check-config

clean:
	rm -rf $(VENV) data .pytest_cache
