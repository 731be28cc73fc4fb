# Two commands: `make run` and `make test`. Both create the venv, install the pinned requirements
# and prepare the assets first; a second run reuses all of it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

# ../shared, when present, is the local mirror of every asset (no downloads needed).
ifneq ($(wildcard ../shared/data),)
export AGELAB_MIRROR ?= $(abspath ../shared)
endif
export KERAS_HOME ?= $(CURDIR)/.keras

.PHONY: run test test-slow test-browser lint bench assets venv

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

assets: $(STAMP)
	$(PY) -m agelab setup

run: assets
	$(VENV)/bin/streamlit run app.py --server.address 127.0.0.1

test: assets
	$(PY) -m pytest

test-slow: assets
	$(PY) -m pytest -m slow

# The dashboard in headless Chromium: Debian's chromium, and playwright (only for these tests).
test-browser: assets
	@command -v chromium >/dev/null || apt-get install -y -q chromium
	$(PY) -m pip install -q --disable-pip-version-check playwright==1.65.2
	$(PY) -m pytest -m browser tests/browser

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: assets
	$(PY) bench/index.py
