# The two commands of the course:
#   make course   run every notebook (default profile) into build/notebooks/
#   make test     the whole test suite: pytest on aigc_tf + nbval on every notebook (smoke profile)
# Both create the virtual environment .venv/ on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))

.PHONY: install test lint format course lab notebooks clean

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip install -q ruff -c constraints.txt
	touch $(STAMP)

# Offline on purpose: tests read the copies shipped in data/, never the network.
test: $(STAMP) lint
	AIGC_PROFILE=smoke AIGC_OFFLINE=1 $(BIN)/python -m pytest

# ruff: lint (test fails on an error) and format check; `make format` rewrites.
lint: $(STAMP)
	$(BIN)/ruff check aigc_tf tests benchmarks scripts notebooks
	$(BIN)/ruff format --check aigc_tf tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format aigc_tf tests benchmarks scripts
	$(BIN)/ruff check --fix aigc_tf tests benchmarks scripts notebooks

# Executes every notebook headless with the default profile (gpu if a GPU is
# visible, else cpu; override with AIGC_PROFILE=...) into build/notebooks/.
course: $(STAMP)
	mkdir -p build/notebooks
	$(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=-1 \
		--output-dir build/notebooks $(NOTEBOOKS)
	@echo "Executed notebooks are in build/notebooks/. Open them with: make lab"

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=.

# For maintainers: re-run the committed notebooks in place in the cpu profile
# (their outputs are what readers see on GitHub and Colab before running anything).
notebooks: $(STAMP)
	$(BIN)/python scripts/sync_notebook_headers.py
	AIGC_PROFILE=cpu AIGC_OFFLINE=1 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=-1 $(NOTEBOOKS)
	$(BIN)/python scripts/sync_notebook_headers.py  # the About cells read the new wall times

clean:
	rm -rf build $(VENV)
