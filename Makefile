# Sigscope: `make run` starts the dashboard, `make test` runs the whole suite.
# Both create .venv and install requirements.txt when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLCONFIGDIR ?= $(CURDIR)/.cache/mpl

.PHONY: run test install system-deps bench docs clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Debian's Chromium drives the end-to-end tests (Playwright cannot download browsers here);
# espeak-ng and flite speak the synthetic digit voices (data options tts_voices, flite_voices);
# PostgreSQL is the multi-machine sweep storage its test starts on a local socket; jemalloc is
# the allocator run processes are started with (core.runtime: their memory estimate holds
# against RSS with it; without it they keep a tuned glibc malloc). Tests needing any of them
# skip without it.
SYSTEM_PACKAGES := chromium espeak-ng flite postgresql libjemalloc2
system-deps:
	@have() { case $$1 in postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1;; \
	  libjemalloc2) ls /usr/lib/*/libjemalloc.so.2 /usr/lib*/libjemalloc.so.2 >/dev/null 2>&1;; \
	  *) command -v $$1 >/dev/null;; esac; }; \
	missing=""; for p in $(SYSTEM_PACKAGES); do have $$p || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing) >/dev/null \
	      || echo "system-deps: could not install$$missing; their tests will skip"; \
	  else echo "system-deps: no root/apt-get to install$$missing; their tests will skip"; fi; \
	fi

# .streamlit/config.toml holds the same address, statistics and upload settings for a plain
# `streamlit run`; here the upload limit follows SIGSCOPE_MAX_UPLOAD_MIB when it is set
run: install
	$(BIN)/streamlit run Home.py --server.address 127.0.0.1 --server.port $(PORT) --server.headless true --browser.gatherUsageStats false \
	  --server.maxUploadSize $$($(BIN)/python -c 'from core.limits import limits; print(limits().max_upload_mib)')

test: install system-deps
	$(BIN)/python -m pytest

bench: install
	for b in bench/*.py; do case $$b in */__init__.py) continue;; esac; echo "== $$b"; $(BIN)/python $$b || exit 1; done

# docs/OPTIONS.md is generated from the one spec (a test fails when it is stale)
docs: install
	$(BIN)/python -m core options --markdown > docs/OPTIONS.md

clean:
	rm -rf $(VENV) .cache .pytest_cache *.egg-info
