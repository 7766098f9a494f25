# normcourse: one command to build the book, one to run every test.
#   make book     virtual environment + pinned packages, then the HTML book
#   make test     the same set-up, then unit tests, notebooks (nbval strict), the
#                 learner's versions (must run without a traceback), the book build
#                 with warnings as errors, and a browser check
#   make execute  re-run every notebook in place (fresh kernel, top to bottom)
#   make gpu-check   on one CUDA GPU, within 9 minutes: record the device, selfcheck,
#                    the CUDA kernel tests, a quick benchmark and every chapter on CUDA,
#                    into normcourse/results/gpu/<date>_<gpu>/ (summary.md); no venv needed
#   make gpu-wheels  (where pip works) download into .whl/ what gpu-check's notebook step
#                    needs and a GPU machine without a registry lacks; carry .whl/ there

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

.PHONY: book test unit notebooks learner-run book-strict browser execute learner clean help \
	gpu-check gpu-wheels
help:
	@sed -n 2,11p Makefile

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

# No dependency on $(STAMP): a GPU machine has its own python3 (with torch and
# triton) and may reach no package registry.  The .venv's python is used when
# there is one.  The steps, timeouts and estimates are in tools/gpu_check.py.
GPU_PYTHON = $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	@$(GPU_PYTHON) tools/gpu_check.py --python $(GPU_PYTHON)

# CPython 3.12 manylinux x86_64 wheels (the GPU image's python), no dependencies
# resolved: tools/gpu_wheels.txt names every package needed.  About 17 MB.
WHEEL_PLATFORMS := $(foreach p,manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1,--platform $(p)_x86_64)
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp $(WHEEL_PLATFORMS) -d .whl -r tools/gpu_wheels.txt
	@du -sh .whl | awk '{print "gpu-wheels: .whl/ holds " $$1 " (the GPU machine takes 64 MiB in all)"}'
