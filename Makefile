# Two commands: `make run` and `make test`. Both create the venv, install the pinned requirements
# and prepare the assets first; a second run reuses all of it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The CUDA build of TensorFlow when nvidia-smi lists a GPU, tensorflow-cpu otherwise; the two files
# differ only in that line.
REQS ?= $(if $(shell nvidia-smi -L 2>/dev/null | grep '^GPU'),requirements-gpu.txt,requirements.txt)
OTHER_TF := $(if $(filter requirements-gpu.txt,$(REQS)),tensorflow-cpu,tensorflow)
STAMP := $(VENV)/.installed-$(shell cksum < $(REQS) | cut -d' ' -f1)

# ../shared, when present, is the local mirror of every asset (no downloads needed).
ifneq ($(wildcard ../shared/data),)
export AGELAB_MIRROR ?= $(abspath ../shared)
endif
export KERAS_HOME ?= $(CURDIR)/.keras

.PHONY: run test test-slow test-browser test-soak test-cluster test-cluster-ci ray-head test-privileged lint bench assets venv

$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	@# Both TensorFlow builds provide the same module: the other one goes first.
	@$(PY) -m pip uninstall -q -y $(OTHER_TF) 2>/dev/null || true
	$(PY) -m pip install -q --disable-pip-version-check -r $(REQS)
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

# Load: four browser sessions, then the live webcam, two minutes each; prints RSS, log errors, fps.
test-soak: assets
	@command -v chromium >/dev/null || apt-get install -y -q chromium
	$(PY) -m pip install -q --disable-pip-version-check playwright==1.65.2
	$(PY) -m pytest -m soak tests/browser -s

# Runs, sweeps and Tune searches on real Ray heads the tests start on 127.0.0.1 (each with its own
# ports and temp dir, stopped by that temp dir: never `ray stop`, which stops every head on the
# machine); the URI and KubeRay-manifest tests too. -s and --durations: the figures and timings print.
CLUSTER_TESTS := tests/test_cluster.py tests/test_cluster_head.py tests/test_cluster_tune.py tests/test_storage.py tests/test_deploy.py
test-cluster: assets
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-cluster.txt
	$(PY) -m pytest -s --durations=0 -m "cluster or not (slow or browser or soak or privileged or network)" $(CLUSTER_TESTS)

# What CI runs of it: the README's commands on a real head (start, submit and watch, stop, tear down),
# and the URI and manifest tests (fsspec comes with requirements-cluster.txt).
test-cluster-ci: assets
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-cluster.txt
	$(PY) -m pytest -rs tests/test_storage.py tests/test_deploy.py
	$(PY) -m pytest -s --durations=0 -m cluster tests/test_cluster_head.py -k readme

# A Ray head on 127.0.0.1:8265 for this project (python -m agelab cluster up; `cluster down` stops it).
ray-head: venv
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-cluster.txt
	$(PY) -m agelab cluster up

# Faults that need root to stage: full disks (a small tmpfs the tests mount) and unreadable or read-only
# files for root itself (setpriv without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH). A test skips what
# the machine does not allow.
test-privileged: assets
	$(PY) -m pytest -m privileged

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: assets
	$(PY) bench/index.py
