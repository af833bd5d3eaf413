# The two commands a new user needs:
#   make demo   install everything, train MHA and SHA, export, serve, load-test, compare
#   make test   install everything and run the test suite (what CI runs)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || echo python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := wordnet-base prometheus wrk
PRESET ?= small
RUNS ?= runs
REPO ?= model_repository
RESULTS ?= results
PAPER_REPO ?= paper_repository

.PHONY: demo test test-fast image-test install system-deps venv train export serve loadtest paper lint clean readme

# Debian packages: the data set (wordnet-base), Prometheus (monitoring integration test)
# and wrk (load-test cross-check). Installed only when missing.
system-deps:
	@missing=""; \
	[ -f /usr/share/wordnet/data.noun ] || missing="$$missing wordnet-base"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11 (apt-get install python3.11 python3.11-venv)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q 'torch==2.13.0'
	$(PY) -m pip install -q -e '.[all,dev]'
	@touch $@

venv: $(STAMP)
install: system-deps venv

test: install
	$(PY) -m pytest -q

# The container users deploy (tests/deploy/test_image.py): build the CPU variant with buildah/podman
# (installed from Debian when missing; a debootstrap base when no registry answers), run it
# read-only as non-root, through podman-compose under Prometheus, and SIGTERM it mid-request.
# Everything it writes stays in IMAGE_TEST_DIR (a second run reuses its base image and layers);
# skipped with the reason where podman cannot run. CI runs it after `make test`.
IMAGE_TEST_DIR ?= build/image-test
image-test: install
	H2H_IMAGE_TEST_DIR=$(IMAGE_TEST_DIR) $(PY) -m pytest -q -p no:cacheprovider \
	  --basetemp=$(IMAGE_TEST_DIR)/pytest tests/deploy/test_image.py

# The local loop: everything but the tests marked slow (live fleets, sweeps, the demo; CI runs them).
test-fast: install
	$(PY) -m pytest -q -m 'not slow'

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

train: install
	$(PY) -m models.train --arch mha --preset $(PRESET) --out $(RUNS)
	$(PY) -m models.train --arch sha --preset $(PRESET) --out $(RUNS)

export: venv
	$(PY) -m export $(RUNS)/mha-$(PRESET)-admin --repo $(REPO)
	$(PY) -m export $(RUNS)/sha-$(PRESET)-admin --repo $(REPO)

serve: venv
	$(PY) -m service --model-repository $(REPO)

loadtest: venv
	$(PY) -m loadtest sweep --repo $(REPO) --out $(RESULTS)

# BERT-base-size random-init pair (12L-12H vs 144L-1H) and the paper's in-process sweep.
paper: venv
	$(PY) -m export --random-init --preset base --arch both --repo $(PAPER_REPO)
	$(PY) -m loadtest sweep --preset paper --mode inproc --repo $(PAPER_REPO) --out $(RESULTS)/paper

# GPU report (CUDA host; docs/gpu/RUNBOOK.md): BERT-base exports while pytest -m gpu runs, the matmul
# peak, the served configuration in-process, the CUDA kernel profile, the SHA/MHA ratio along tokens
# per batch, the PyTorch reference, the demo's small pair, the other variants, the service on CUDA
# with the HTTP sweep and capacity search -> docs/gpu/<gpu-name>/ and a summary in docs/benchmarks.md.
# A rerun does only what is missing. Without a GPU: exit 2.
# README's Results table from the committed result files (tests/loadtest/test_readme_results.py checks it)
readme: venv
	$(PY) -m loadtest.report.readme

.PHONY: gpu-report
gpu-report: venv
	$(PY) -m loadtest gpu-report

demo: install
	$(PY) -m demo --preset $(PRESET) --runs $(RUNS) --repo $(REPO) --results $(RESULTS) $(if $(FORCE),--force)

clean:
	rm -rf $(RUNS) $(REPO) $(PAPER_REPO) $(RESULTS) .pytest_cache .ruff_cache
