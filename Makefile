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
	lab test-lab student test-student book-fresh pdf test-pdf test-build

help:
	@echo "make book    build the HTML book into _build/html (executes the chapters whose code changed)"
	@echo "make test    lint, unit tests, notebooks, a fresh strict build, student copies, JupyterLab, browser, PDF"
	@echo "make pdf     one PDF of the whole book: _build/pdf/book.pdf"
	@echo "make bench   seconds per chapter and core operations per second"
	@echo "make seeds   every chapter through nbval again for UDM_SEED = 1, 2, 3 (claims must hold for other seeds)"
	@echo "make screenshots   full-page screenshots of every page into _build/screenshots"
	@echo "make student student notebooks in _build/student: each solution replaced by a stub that checks your answer"
	@echo "make lab     JupyterLab on the chapters with the book's kernel (LAB_DIR=_build/student for the student copies)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

# Executed notebooks are cached (_config.yml: execute_notebooks: cache), keyed by their code, and
# Sphinx re-reads only changed pages: a rebuild with nothing changed executes nothing. Neither
# sees lib/udm or the installed packages, so when any of them is newer than the last build the
# cache and Sphinx's saved environment are emptied and every chapter runs again.
BUILD_CMD := $(BIN)/jupyter-book build . -W -n --keep-going
CACHE := _build/.jupyter_cache _build/.doctrees
LIB_STAMP := _build/.lib-stamp
$(LIB_STAMP): $(shell find lib/udm -name '*.py') $(STAMP)
	rm -rf $(CACHE)
	mkdir -p _build && touch $@

book: $(STAMP) $(LIB_STAMP)
	$(BUILD_CMD)

# `make test`'s build: from an empty cache, so every chapter executes fresh.
book-fresh: $(STAMP)
	rm -rf $(CACHE)
	mkdir -p _build && touch $(LIB_STAMP)
	$(BUILD_CMD)

# One PDF of the whole book: the single-page build (same cache) printed by Debian's Chromium.
pdf: $(STAMP) $(LIB_STAMP)
	$(BUILD_CMD) --builder singlehtml
	$(BIN)/python scripts/pdf.py

test-pdf: pdf
	$(BIN)/pytest tests/test_pdf.py -m pdf -q

# The build machinery on a small fixture book: appendix letters, the cache, the PDF's checks.
test-build: $(STAMP)
	$(BIN)/pytest tests/test_build.py -m build -q -rs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check lib tests scripts

unit: $(STAMP)
	$(BIN)/pytest tests --ignore=tests/browser -q -m "not lab and not student and not pdf and not build"

# Every chapter in a fresh kernel; each exercises.answer(...) call also records its answer in
# the answer key (_build/answer_key), marked complete when every chapter passed.
KEY := _build/answer_key
notebooks: $(STAMP)
	rm -rf $(KEY) && mkdir -p $(KEY)
	UDM_ANSWER_KEY=$(CURDIR)/$(KEY) $(BIN)/pytest --nbval-lax chapters -n 2 --dist loadfile -q
	touch $(KEY)/.complete

# Student copies of the chapters in _build/student (solutions replaced by checked stubs).
student: $(STAMP)
	$(BIN)/python scripts/student.py

# The answer key and the student copies, checked: every reference answer passes, a wrong one
# fails, the copies run with the stubs unfilled, and one runs with the stubs filled in.
test-student: student
	$(BIN)/pytest tests/test_student.py -m student -q

# Not part of `make test`: three more executions of every chapter, each with other random seeds.
SEEDS ?= 1 2 3
seeds: $(STAMP)
	set -e; for s in $(SEEDS); do \
	  echo "== UDM_SEED=$$s"; \
	  UDM_SEED=$$s $(BIN)/pytest --nbval-lax chapters -n 2 --dist loadfile -q; \
	done

browser: $(STAMP)
	$(BIN)/pytest tests/browser -m browser -q -rs

# In this order from a fresh clone: the notebooks collect the answer key that the student
# copies check against; the fresh book build feeds the browser checks and the PDF.
test: lint unit test-build notebooks book-fresh test-student test-lab browser test-pdf

# JupyterLab from .venv, rooted at LAB_DIR; the environment's kernel and widget extension come
# first (JUPYTER_PREFER_ENV_PATH), before any a user installed elsewhere. LAB_ARGS: more options.
# As root (a container, CI) Jupyter refuses to start without --allow-root. No news feed and no
# update check: JupyterLab would otherwise offer to fetch them from the network.
LAB_DIR ?= chapters
LAB_ARGS ?=
lab: $(STAMP)
	JUPYTER_PREFER_ENV_PATH=1 $(BIN)/jupyter lab --ServerApp.root_dir=$(LAB_DIR) \
	  --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	  --LabApp.extension_manager=readonly \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test-lab: $(STAMP)
	$(BIN)/pytest tests/test_lab.py -m lab -q

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

screenshots: $(STAMP)
	$(BIN)/pytest tests/browser -m browser -q -k screenshot

# Outputs out, then every solution cell collapsed for JupyterLab (and no other cell).
strip: $(STAMP)
	$(BIN)/nbstripout chapters/*.ipynb
	$(BIN)/python scripts/collapse_solutions.py chapters/*.ipynb

lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu/torch==\1/'

clean:
	rm -rf _build
