# ChainStream — one entry point for developers and CI. Every target installs what it needs, idempotently.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := .make

.PHONY: help setup demo test test-fast test-slow contracts check-artifacts gas hardhat-test clean

help:
	@echo "make demo    - deploy to the embedded chain and run the open -> vouchers -> settle -> claim -> close round trip"
	@echo "make test    - the whole test suite (Python on eth-tester and anvil, Hardhat JS tests, artifact check)"
	@echo "make gas     - regenerate docs/gas.md"
	@echo "make contracts - recompile contracts/ into src/chainstream/chain/artifacts/"

$(STAMP):
	@mkdir -p $(STAMP)

# Python environment: re-installed when pyproject.toml changes.
$(STAMP)/python: pyproject.toml | $(STAMP)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres]'
	@touch $@

# Node dependencies (solc, hardhat, anvil, ethers): re-installed when the lockfile changes.
$(STAMP)/node: package.json package-lock.json | $(STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(STAMP)/python $(STAMP)/node

demo: $(STAMP)/python
	$(PY) -m chainstream.demo

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup
	npx hardhat test

test-fast: $(STAMP)/python
	$(PY) -m pytest tests/unit -q

contracts: setup
	$(PY) scripts/compile_contracts.py

check-artifacts: setup
	$(PY) scripts/compile_contracts.py --check

gas: setup
	$(PY) scripts/gas_report.py --out docs/gas.md

clean:
	rm -rf $(STAMP) build dist cache artifacts .pytest_cache
