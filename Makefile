# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements.lock requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv redis-server chromium run test lint docs bench bench-quick soak clean lock

venv: $(STAMP)

$(STAMP): requirements.txt requirements.lock requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The locked runtime tree first (what the image and the FunctionGraph package install).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# The `failjob-reaper` command (pyproject.toml), editable: it runs this tree from anywhere.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# The tests start a real redis-server (Debian package) themselves; install it if missing.
redis-server:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	  elif sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	  else echo "make: the tests need redis-server: install the Debian package redis-server (apt-get install redis-server)"; exit 1; fi; }

# The HTML plan's test renders the page in a real headless Chromium (Debian package); install
# it if missing. Where apt cannot, say so and go on: that one test is then skipped, saying why.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  elif sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else false; fi; } || echo "make: could not install chromium (apt-get install chromium); tests/test_plan_html_browser.py will be skipped"

run: $(STAMP)
	$(BIN)/python -m standin.demo

# Two workers (pytest-xdist), one per core: each starts its own stand-ins, sinks and
# redis-server on free ports, so the suite stays well under 10 minutes on 2 cores.
test: $(STAMP) redis-server chromium
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .

# The docs site (mkdocs.yml, docs/) into site/ (gitignored), strictly: a broken link fails.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

bench: $(STAMP) redis-server
	$(BIN)/python -m bench

bench-quick: $(STAMP) redis-server
	$(BIN)/python -m bench --quick

soak: $(STAMP)
	SOAK_EVENTS=$${SOAK_EVENTS:-2000} $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_reliability_soak.py

# requirements.lock: the whole runtime dependency tree of requirements.txt, pinned with
# hashes, for every platform and Python >= 3.11. The image, the FunctionGraph package
# and `make venv` install it, so a deployment runs what the tests ran. Rerun after any
# change to requirements.txt (tests/test_infra_bounds.py fails until then).
UV_VERSION := 0.13.8
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	  --custom-compile-command "make lock" --output-file requirements.lock requirements.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
