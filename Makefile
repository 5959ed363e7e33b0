# ChainStream — one entry point for developers and CI. Every target installs what it needs, idempotently.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := .make
PYTEST_ARGS ?=

.PHONY: help setup postgres demo dev lint slither test test-fast test-slow contracts check-artifacts gas hardhat-test bench bench-quick clean

help:
	@echo "make demo       - the full demo on an embedded chain: catalog, listeners streaming through a real relay,"
	@echo "                  batched settlement, claims, closes, a stale close defeated, a reconciliation to the wei"
	@echo "make dev        - the web player on a local chain (anvil) a browser wallet can use, with funded dev keys"
	@echo "make test       - the whole test suite (unit, eth-tester + anvil integration, browser e2e, Hardhat, JS)"
	@echo "make test-fast  - unit tests only (no chain)"
	@echo "make test-slow  - only the slow suites (reorgs, kill -9 under load, the installed wheel; make test runs them)"
	@echo "make lint       - ruff format --check, ruff check and mypy --strict (run by make test)"
	@echo "make slither    - Slither on contracts/: fails on any high/medium finding not triaged (run by make test)"
	@echo "make postgres   - install Debian's PostgreSQL server binaries (for the PostgreSQL store tests)"
	@echo "make gas        - regenerate docs/gas.md"
	@echo "make contracts  - recompile contracts/ into src/chainstream/chain/artifacts/"
	@echo "make bench      - relay throughput/latency and demo-scale benchmarks (see benchmarks/README.md)"

$(STAMP):
	@mkdir -p $(STAMP)

# Python environment: re-installed when pyproject.toml changes.
$(STAMP)/python: pyproject.toml | $(STAMP)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ChainStream needs Python >= 3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres,browser]'
	@touch $@

# Node dependencies (solc, hardhat, anvil, ethers): re-installed when the lockfile changes. Not `npm ci`: the
# registry here serves only the Linux build of anvil's per-platform optional packages, so the lockfile cannot
# list the others and `npm ci` would refuse it; `npm install` follows the lockfile for everything it lists.
$(STAMP)/node: package.json package-lock.json | $(STAMP)
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

# Debian's Chromium for the browser tests (never a downloaded browser build).
$(STAMP)/browser: | $(STAMP)
	@if [ -x scripts/install_browser.sh ]; then scripts/install_browser.sh; fi
	@touch $@

# Debian's ffmpeg: the relay transcodes uploaded audio into streaming segments with it (and the tests run it).
$(STAMP)/ffmpeg: | $(STAMP)
	scripts/install_ffmpeg.sh
	@touch $@

# Debian's PostgreSQL server binaries for the PostgreSQL store tests (they start a throwaway cluster of their own).
$(STAMP)/postgres: | $(STAMP)
	scripts/install_postgres.sh
	@touch $@

postgres:
	scripts/install_postgres.sh

setup: $(STAMP)/python $(STAMP)/node $(STAMP)/browser $(STAMP)/ffmpeg $(STAMP)/postgres

demo: $(STAMP)/python
	$(VENV)/bin/chainstream demo

# The web player on a local chain a browser wallet can use (anvil from node_modules); prints what to do.
dev: $(STAMP)/python $(STAMP)/node
	$(VENV)/bin/chainstream dev

# --dist loadgroup: tests marked xdist_group("browser") run on one worker, in file order (they share one stack,
# and the last one moves the chain's clock a day ahead).
# Format, lint and type-check (ruff, mypy --strict on src/chainstream; configuration in pyproject.toml) before
# any test runs.
lint: $(STAMP)/python $(STAMP)/node
	$(VENV)/bin/ruff format --check src tests scripts benchmarks
	$(VENV)/bin/ruff check src tests scripts benchmarks
	$(VENV)/bin/mypy
	npx eslint frontend tests/js tests/e2e tests/hardhat scripts hardhat.config.js eslint.config.js

# Slither on contracts/ through Hardhat's build (the local solcjs; nothing is downloaded). Fails on any high or
# medium finding not in slither.triage.json, and on any reentrancy finding with the guards ignored.
slither: $(STAMP)/python $(STAMP)/node
	$(PY) scripts/slither_check.py

# The default suite (unit, integration on both chains, adversarial, browser, Hardhat, JS), then the slow suites
# (marked `slow`: reorgs on a real relay process, kill -9 under load, the installed wheel) — CI runs both.
test: setup lint slither
	$(PY) -m pytest -n 2 --dist loadgroup -m "not slow" $(PYTEST_ARGS)
	npx hardhat test
	@if [ -d tests/js ]; then node --test tests/js/; fi
	$(MAKE) --no-print-directory test-slow

test-slow: setup
	$(PY) -m pytest -n 2 --dist loadgroup -m slow $(PYTEST_ARGS)

test-fast: $(STAMP)/python
	$(PY) -m pytest tests/unit -q

contracts: setup
	$(PY) scripts/compile_contracts.py

check-artifacts: setup
	$(PY) scripts/compile_contracts.py --check

gas: setup
	$(PY) scripts/gas_report.py --out docs/gas.md

hardhat-test: setup
	npx hardhat test

bench: setup
	$(PY) benchmarks/relay_throughput.py --rate 2000,1000
	$(PY) benchmarks/demo_scale.py

bench-quick: setup
	$(PY) benchmarks/relay_throughput.py --quick
	$(PY) benchmarks/demo_scale.py --listeners 10 --plays 100

clean:
	rm -rf $(STAMP) build dist cache .pytest_cache
