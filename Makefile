# tireid-lite: every target that needs the virtual environment depends on `setup`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tireid-lite-installed

# Jupyter tools inside the venv use the venv's kernel, not a user-wide one.
export JUPYTER_PREFER_ENV_PATH := 1
# Trained models and generated data are cached here (shared by nbval and papermill runs).
export TIREID_CACHE ?= $(CURDIR)/.cache/tireid-lite

.PHONY: setup course test lab bench sync notebooks tables clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)"
	@touch $(STAMP)

## Run every notebook on SynthPEDES into runs/<timestamp>/ and write index.html there.
course: setup
	$(BIN)/tireid course --runs-dir runs --jobs 2

## The whole test suite: the import layers (lint-imports), unit tests, notebook regression (papermill),
## nbval, pair sync.
test: setup
	$(BIN)/lint-imports
	@$(BIN)/python -m pytest tests notebooks --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--nbval-cell-timeout 1200; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure"; fi; \
	exit $$rc

## JupyterLab with jupytext: a .py twin opens as a notebook.
lab: setup
	$(BIN)/jupyter lab notebooks

## Speed and memory benchmarks; results go to benchmarks/results/ and benchmarks/RESULTS.md.
bench: setup
	$(BIN)/python benchmarks/run_all.py

## Bring each notebook and its py:percent twin in sync (the newer one wins).
sync: setup
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.ipynb notebooks/solutions/[0-9][0-9]_*.ipynb

## The papers' ablations in miniature: every grid spec in grids/ into results/tables/<name>/ (tidy.csv,
## summary.csv, paired.csv). Hours on 2 cores; resumable (a rerun skips finished cells).
tables: setup
	@for spec in grids/*.yaml; do $(BIN)/tireid grid --spec $$spec || exit 1; done

## Re-execute the notebooks in place (cpu profile) to refresh their committed outputs.
notebooks: setup
	$(BIN)/tireid course --inplace

clean:
	rm -rf runs .cache .pytest_cache
