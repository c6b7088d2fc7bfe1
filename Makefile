# The book's two commands are `make book` and `make test`; everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# One torch thread: on two busy cores, two threads ran several times slower than one.
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help install book test lint unit notebooks seeds browser bench screenshots strip lock clean \
	lab test-lab

help:
	@echo "make book    build the HTML book into _build/html (executes every chapter)"
	@echo "make test    lint, unit tests, every notebook through nbval, the strict build, browser checks"
	@echo "make bench   seconds per chapter and core operations per second"
	@echo "make seeds   every chapter through nbval again for UDM_SEED = 1, 2, 3 (claims must hold for other seeds)"
	@echo "make screenshots   full-page screenshots of every page into _build/screenshots"
	@echo "make lab     JupyterLab on the chapters with the book's kernel (LAB_DIR=_build/student for the student copies)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check lib tests scripts

unit: $(STAMP)
	$(BIN)/pytest tests --ignore=tests/browser -q -m "not lab and not student and not pdf"

notebooks: $(STAMP)
	$(BIN)/pytest --nbval-lax chapters -n 2 --dist loadfile -q

# Not part of `make test`: three more executions of every chapter, each with other random seeds.
SEEDS ?= 1 2 3
seeds: $(STAMP)
	set -e; for s in $(SEEDS); do \
	  echo "== UDM_SEED=$$s"; \
	  UDM_SEED=$$s $(BIN)/pytest --nbval-lax chapters -n 2 --dist loadfile -q; \
	done

browser: $(STAMP)
	$(BIN)/pytest tests/browser -m browser -q -rs

test: lint unit notebooks book browser

# JupyterLab from .venv, rooted at LAB_DIR; the environment's kernel and widget extension come
# first (JUPYTER_PREFER_ENV_PATH), before any a user installed elsewhere. LAB_ARGS: more options.
# As root (a container, CI) Jupyter refuses to start without --allow-root.
LAB_DIR ?= chapters
LAB_ARGS ?=
lab: $(STAMP)
	JUPYTER_PREFER_ENV_PATH=1 $(BIN)/jupyter lab --ServerApp.root_dir=$(LAB_DIR) \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test-lab: $(STAMP)
	$(BIN)/pytest tests/test_lab.py -m lab -q

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

screenshots: $(STAMP)
	$(BIN)/pytest tests/browser -m browser -q -k screenshot

strip: $(STAMP)
	$(BIN)/nbstripout chapters/*.ipynb

lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu/torch==\1/'

clean:
	rm -rf _build
