# torchslim: `make test` and `make run` set up everything from a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Pinned in every pip call that could pull torch: 2.13.0 is the CPU build; an unpinned torch
# would download a multi-GB CUDA build.
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed
DATA_DIR := /usr/share/datasets/fashion-mnist
# Debian's wordnet-base: the glosses of the wordnet-glosses text corpus.
WORDNET_DIR := /usr/share/wordnet

.PHONY: setup data browser postgres docs test test-fast run bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet "$(TORCH)" -e ".[dev,text,federated]"
	touch $(STAMP)

# Debian's dataset-fashion-mnist puts the IDX files in $(DATA_DIR). Elsewhere the loader downloads
# them from the official mirror, or looks in $$TORCHSLIM_DATA/fashion-mnist.
data:
	@if [ -f $(DATA_DIR)/t10k-labels-idx1-ubyte.gz ]; then \
		echo "Fashion-MNIST: found in $(DATA_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "Fashion-MNIST: apt-get install dataset-fashion-mnist failed; the loader will try to download it"; \
	else \
		echo "Fashion-MNIST: no apt-get here; skipping the Debian package (the loader downloads the files, or set TORCHSLIM_DATA)"; \
	fi
	@if [ -f $(WORDNET_DIR)/data.noun ]; then \
		echo "WordNet glosses: found in $(WORDNET_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wordnet-base >/dev/null) \
		|| echo "WordNet glosses: apt-get install wordnet-base failed; pass the data.* files' directory as root= or set TORCHSLIM_DATA"; \
	else \
		echo "WordNet glosses: no apt-get here; skipping Debian's wordnet-base (put data.noun etc. in \$$TORCHSLIM_DATA/wordnet)"; \
	fi

# Debian's chromium and chromium-driver: tests/test_report_browser.py opens report.html in them
# (it skips where they are missing).
browser:
	@if command -v chromedriver >/dev/null 2>&1 && (command -v chromium || command -v chromium-browser) >/dev/null 2>&1; then \
		echo "chromium and chromedriver: found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "chromium: apt-get install chromium chromium-driver failed; the report's browser test will skip"; \
	else \
		echo "chromium: no apt-get here; the report's browser test will skip (install chromium and chromedriver)"; \
	fi

# Debian's postgresql: tests/postgres_server.py starts a throwaway server from its initdb and pg_ctl
# for the search test with several workers on one study (it skips where they are missing).
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "postgresql: found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null) \
		|| echo "postgresql: apt-get install postgresql failed; the PostgreSQL search test will skip"; \
	else \
		echo "postgresql: no apt-get here; the PostgreSQL search test will skip (install PostgreSQL's initdb and pg_ctl)"; \
	fi

# The reference site, into site/: mkdocs.yml and docs/, the step, recipe, options and CLI pages
# generated from the code by docs/hooks.py. --strict makes every warning an error (a docstring's
# Args naming no parameter, a broken link or cross-reference); nothing is fetched from the network.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

test: setup data browser postgres docs
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The main job: every strategy of the default recipe from the shipped teacher, measured on this
# machine; the selection matrix and report land in runs/compare (re-running reuses finished steps).
run: setup data
	$(VENV)/bin/torchslim compare recipes/fashion-mnist.yaml --out runs/compare

# Every benchmark, one after another (several hours on 2 cores; each resumes where it stopped and
# rewrites its own section of benchmarks/RESULTS.md). Run one alone: $(PY) benchmarks/<name>.py
# (cli_startup.py compares against an older checkout: run it by hand with --before, see its help).
bench: setup data
	$(PY) benchmarks/train_default.py
	$(PY) benchmarks/distill_fashion_mnist.py
	$(PY) benchmarks/prune_fashion_mnist.py
	$(PY) benchmarks/quantize_fashion_mnist.py
	$(PY) benchmarks/distill_minilm.py
	$(PY) benchmarks/federated_fashion_mnist.py
	$(PY) benchmarks/timing_confidence.py
	$(PY) benchmarks/teacher_cache_cost.py
	$(PY) benchmarks/default_comparison.py
	$(PY) benchmarks/search_fashion_mnist.py --budget 40m
	$(PY) benchmarks/search_early_stop.py

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info site
