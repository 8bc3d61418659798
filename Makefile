# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JS     := tests/js/node_modules/.installed

.PHONY: install run test lint format bench clean js-clients test-containers console screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# tus-js-client (what browsers and Uppy use) for the interop tests; skipped without npm.
$(JS): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the tus-js-client tests will be skipped"; fi

js-clients: $(JS)

# The web console's Uppy build (npm package `uppy`), copied into the package so that
# `/` serves it and a wheel built afterwards ships it; without npm `/` says how to get it.
CONSOLE := tusd_py/console_ui
$(CONSOLE)/vendor/.installed: $(CONSOLE)/package.json $(CONSOLE)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(CONSOLE) && npm ci --no-audit --no-fund --loglevel=error && mkdir -p vendor && \
		cp node_modules/uppy/dist/uppy.min.mjs node_modules/uppy/dist/uppy.min.css vendor/ && \
		touch vendor/.installed; \
	else echo "npm not found: the web console at / is not available (install npm, then make console)"; fi

console: $(CONSOLE)/vendor/.installed

# Small PNGs of the console and the docs for the README (writes docs/*.png; make test never does).
screenshots: $(STAMP) js-clients console
	$(BIN)/python -m tests.browser.screenshots docs

run: $(STAMP) console
	$(BIN)/tusd-py serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint --no-color Dockerfile tests/containers/*.Containerfile

test: lint js-clients console
	$(BIN)/pytest

# Builds the image and runs docker-compose.yml with podman (minutes; root, podman, runc, debootstrap).
test-containers: $(STAMP)
	tests/containers/run.sh

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache tests/js/node_modules $(CONSOLE)/node_modules $(CONSOLE)/vendor
