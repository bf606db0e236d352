# The two commands of the README. Both bootstrap .venv on a fresh machine (Python 3.11 + make).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint wheel screenshot clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

serve: $(STAMP)
	$(BIN)/waldur-chat-mock serve --host 127.0.0.1 --port 8000 --seed-data fixtures/seed.yaml

lint: $(STAMP)
	$(BIN)/ruff check mockserver tests benchmarks
	$(BIN)/ruff format --check mockserver tests

test: $(STAMP)
	$(BIN)/ruff check mockserver tests benchmarks
	$(BIN)/python -m pytest

# The installable package (spec/ and fixtures/ inside) in dist/: pip install dist/*.whl anywhere.
wheel: $(STAMP)
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .

# Refresh the README's picture of the playground (Debian's chromium, as the browser tests use it).
screenshot: $(STAMP)
	$(BIN)/python -m tests.browser docs/playground.png

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist *.egg-info
