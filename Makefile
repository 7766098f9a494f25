# normcourse: one command to build the book, one to run every test.
#   make book     virtual environment + pinned packages, then the HTML book
#   make test     the same set-up, then unit tests, notebooks (nbval strict), the
#                 learner's versions (must run without a traceback), the book build
#                 with warnings as errors, and a browser check
#   make execute  re-run every notebook in place (fresh kernel, top to bottom)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MATHJAX := .build-deps/static/mathjax/tex-chtml.js
NOTEBOOKS := $(filter-out notebooks/learner/%,$(wildcard notebooks/*.ipynb))
# Kernel tests and notebooks use Triton's interpreter on CPU; single-threaded
# BLAS keeps stored notebook outputs identical from run to run.
export OMP_NUM_THREADS ?= 1
export PYTHONHASHSEED := 0

.PHONY: book test unit notebooks learner-run book-strict browser execute learner clean help
help:
	@sed -n 2,6p Makefile

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# MathJax comes from npm at build time (no CDN at reading time, no
# third-party JS in the repository); Sphinx copies it into _static/.
$(MATHJAX):
	npm install --silent --no-audit --no-fund --prefix .build-deps/npm mathjax@3.2.2
	mkdir -p .build-deps/static
	rm -rf .build-deps/static/mathjax
	cp -r .build-deps/npm/node_modules/mathjax/es5 .build-deps/static/mathjax

book: $(STAMP) $(MATHJAX)
	$(BIN)/jupyter-book build . --all
	@echo ""
	@echo "The book is at: file://$(CURDIR)/_build/html/index.html"

unit: $(STAMP)
	$(BIN)/pytest -m "not browser" tests

notebooks: $(STAMP)
	$(BIN)/pytest --nbval $(NOTEBOOKS) --nbval-sanitize-with nbval_sanitize.cfg --nbval-cell-timeout 120

# The learner's versions (stubs in place of solutions) must run top to bottom without a
# traceback: checkers report the stubs, and later cells fall back to the reference.
learner-run: $(STAMP)
	$(BIN)/pytest --nbval-lax $(wildcard notebooks/learner/*.ipynb) --nbval-cell-timeout 120

book-strict: $(STAMP) $(MATHJAX)
	$(BIN)/jupyter-book build . --all -W -n --keep-going

browser: $(STAMP)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "Install Debian's chromium (sudo apt-get install chromium chromium-driver) for the browser check"; exit 1; fi; }
	$(BIN)/pytest -m browser tests/browser

test: unit notebooks learner-run book-strict browser
	@echo "All tests passed."

execute: $(STAMP)
	for nb in $(NOTEBOOKS); do \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=300 $$nb || exit 1; \
	done
	$(BIN)/python tools/learner_notebooks.py

learner: $(STAMP)
	$(BIN)/python tools/learner_notebooks.py

clean:
	rm -rf _build .build-deps
