# labcrunch: `make serve` and `make test` are the two commands; everything else helps them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Installs are stamped with a checksum (POSIX cksum, also on macOS) of pyproject.toml: a second run does not reinstall,
# an edited pyproject.toml does.
HASH         := $(shell cksum pyproject.toml | cut -d' ' -f1)
SERVER_STAMP := $(VENV)/.stamp-server-$(HASH)
TEST_STAMP   := $(VENV)/.stamp-test-$(HASH)

.PHONY: serve test test-fast lint bench bench-quick clean web

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(SERVER_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server,plot]'
	rm -f $(VENV)/.stamp-server-* && touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server,test,plot,bench]'
	rm -f $(VENV)/.stamp-test-* $(VENV)/.stamp-server-* && touch $@ $(SERVER_STAMP)

serve: $(SERVER_STAMP)
	$(BIN)/labcrunch serve --host $(HOST) --port $(PORT)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest

# For quick edits: skips the tests marked `slow` (server processes, benchmarks, builds). CI runs `make test`.
test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(TEST_STAMP)
	$(BIN)/ruff check service client tests bench
	$(BIN)/hadolint --failure-threshold warning Dockerfile.gpu

bench: $(TEST_STAMP)
	$(BIN)/python -m bench

bench-quick: $(TEST_STAMP)
	$(BIN)/python -m bench --quick

# The browser libraries the service serves (API docs, the page's map and charts): npm installs the
# versions web/package-lock.json pins, web/vendor.mjs copies the files served into
# service/web/static/vendor/ (committed: `make serve` and `make test` need no npm). Run it after
# changing web/package.json.
web:
	cd web && npm ci --no-audit --no-fund --ignore-scripts && node vendor.mjs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis web/node_modules tests/browser/screenshots
