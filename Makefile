# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv redis-server chromium run test lint bench bench-quick soak clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
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

test: $(STAMP) redis-server chromium
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .

bench: $(STAMP) redis-server
	$(BIN)/python -m bench

bench-quick: $(STAMP) redis-server
	$(BIN)/python -m bench --quick

soak: $(STAMP)
	SOAK_EVENTS=$${SOAK_EVENTS:-2000} $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_reliability_soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
