# Everything a fresh machine needs (Python 3.11, node, npm) is installed by these targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_OK  := $(VENV)/.installed
NODE_OK := node_modules/.installed
BROWNIE_VENV := .venv-brownie
BROWNIE_OK   := $(BROWNIE_VENV)/.installed

.PHONY: install demo test bench clean brownie

# the contracts are compiled at install (cached in build/contracts by their sources), not in a run
install: $(PY_OK) $(NODE_OK)
	@$(BIN)/gridshare compile

$(PY_OK): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip==26.3"
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# `npm ci`: installs exactly package-lock.json's versions and never writes the lock (it stops if the
# lock and package.json disagree). The lock lists anvil's and cast's binary package for every
# platform (darwin, linux, win32; x64, arm64), as npm writes it: `npm ci` requires all of them, and
# `npm install` would add any missing one to the lock. Only this machine's is downloaded (os/cpu);
# the registry here serves only linux-x64's.
$(NODE_OK): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# brownie in its own environment: eth-brownie 1.22.2 pins web3 7.16 and older eth-* packages than
# requirements.lock's. scripts/brownie-setup then puts what brownie looks up outside the work tree in
# place (the compiler ~/.solcx/solc-v0.8.30, the networks of brownie-networks.yaml), the finder in
# .venv-brownie that lets `brownie run` import a script when the checkout's path has a dot in it
# (scripts/brownie_script_names.py), and build/brownie, which brownie cannot create in a fresh
# clone; cheap when done.
brownie: $(BROWNIE_OK) $(NODE_OK)
	$(BROWNIE_VENV)/bin/python scripts/brownie-setup

$(BROWNIE_OK): requirements-brownie.lock
	rm -rf $(BROWNIE_VENV)
	$(PYTHON) -m venv $(BROWNIE_VENV)
	$(BROWNIE_VENV)/bin/pip install -q --upgrade "pip==26.3"
	$(BROWNIE_VENV)/bin/pip install -q -r requirements-brownie.lock
	touch $@

demo: install
	rm -rf runs/demo
	$(BIN)/gridshare demo --out runs/demo

test: install brownie
	$(BIN)/pytest -q -n 2 --dist loadfile

# the benchmarks, then the README's and benchmarks/README.md's figures from their JSON files
bench: install
	$(BIN)/gridshare bench round --anvil --json benchmarks/round-10-prosumers.json
	$(BIN)/gridshare bench audit --json benchmarks/audit-10-prosumers.json
	$(BIN)/gridshare bench admm --json benchmarks/admm-case4.json
	$(BIN)/gridshare bench settle --json benchmarks/settle-gas.json
	$(BIN)/gridshare bench fuzz --seed 1 --json benchmarks/fuzz.json
	$(BIN)/gridshare bench registration --json benchmarks/registration-gas.json
	$(BIN)/gridshare bench aggregate --json benchmarks/aggregate-2000.json
	$(BIN)/gridshare bench blame --json benchmarks/blame.json
	$(BIN)/gridshare bench load --rounds 20 --json benchmarks/load.json
	$(BIN)/python scripts/readme-figures --write

clean:
	rm -rf $(VENV) $(BROWNIE_VENV) node_modules build runs .pytest_cache
