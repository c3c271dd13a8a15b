# The two commands of the README:
#   make lab    install what the notebooks need into .venv and open the course in JupyterLab
#   make test   install that and the test tools into .venv and run the whole test suite
# and the others:
#   make playground      serve notebooks/playground.ipynb as a page with Voila
#   make bench           time the NumPy code against PyTorch, and every notebook, with the
#                        speed targets asserted (NNDL_CHECK_SPEED=1)
#   make check-portable  rerun the notebook tests under other numerics than this machine's
#                        default: another BLAS kernel, another thread count
#                        (python -m nndl_helpers.portability check)
#   make notebooks       re-execute every notebook in place and re-export the shared code
#   make install         only install what `make lab` needs; `make install-test` adds the test tools
#   make constraints     rewrite constraints.txt from the versions installed in .venv now
#   make clean           remove .venv
#
# Variables (override on the command line or in the environment):
#   PYTHON  interpreter that creates the virtual environment   (python3)
#   VENV    where the virtual environment lives                  (.venv)
#   TORCH   how to install PyTorch, before the requirements      (torch)
#           e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
#           for the small CPU-only build on Linux; another value than last time
#           replaces the installed PyTorch
#   CONSTRAINTS  the versions CI tested, applied to every install but PyTorch's (constraints.txt);
#           CONSTRAINTS= installs the newest compatible releases instead
#   PYTEST_ARGS  extra arguments for pytest, e.g. PYTEST_ARGS="-m 'not ui'"

# How NumPy's and PyTorch's thread pools share the cores, and how freed memory is kept:
# nndl_helpers/config.py (RUNTIME_ENV) explains each; a test checks the two lists agree.
export OMP_WAIT_POLICY ?= PASSIVE
export OPENBLAS_THREAD_TIMEOUT ?= 4
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 67108864

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch
CONSTRAINTS ?= constraints.txt
PYTEST_ARGS ?=
BIN := $(VENV)/bin
# Two install sets, each with its stamp, so that `make lab` does not pull in the test tools.
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The TORCH line the environment's PyTorch was installed from.
TORCH_FILE := $(VENV)/.torch
CONSTRAIN := $(if $(strip $(CONSTRAINTS)),-c $(CONSTRAINTS))
# Packages that only PyTorch needs stay out of constraints.txt: TORCH decides them (another
# release or a CUDA build wants its own sympy, say, and the CUDA build adds nvidia-* and triton).
TORCH_ONLY := torch|filelock|fsspec|mpmath|networkx|sympy|setuptools|triton|nvidia-.*

.PHONY: lab test playground bench check-portable notebooks install install-test constraints clean FORCE

lab: install
	$(BIN)/jupyter lab notebooks/

test: install-test
	$(BIN)/python -m pytest -n 2 --dist loadscope --durations=25 $(PYTEST_ARGS)

# The neural-network playground as a page of its own (http://localhost:8866).
playground: install
	$(BIN)/voila notebooks/playground.ipynb

# Timings of the NumPy code against PyTorch and of every notebook: benchmarks/results.md
bench: install-test
	$(BIN)/python benchmarks/bench.py

# The notebook tests again under numerics other than this machine's default: results that
# hold only for one BLAS, one thread count or one instruction set show up here.
check-portable: install-test
	$(BIN)/python -m nndl_helpers.portability check

# Re-execute every notebook in place (quick profile, CPU) and re-export the shared code.
notebooks: install-test
	$(BIN)/python -m nndl_helpers.nbtools run notebooks/[0-9]*.ipynb notebooks/playground.ipynb

install: $(STAMP)

install-test: $(TEST_STAMP)

# A stamp is only as good as the environment it stands for. `python3 -m venv` without Debian's
# python3-venv leaves a .venv whose python has no pip, and an interpreter removed since leaves
# one whose python does not start; both are installed again, from a new environment, instead
# of failing on every run.
ifneq ($(shell $(BIN)/python -c "import pip" >/dev/null 2>&1 && echo works),works)
$(STAMP): FORCE
endif

# Another TORCH than the one installed (say, the CPU build after the CUDA one) installs again.
# Read with $(shell), not $(file), which macOS's make 3.81 lacks.
ifneq ($(shell cat $(TORCH_FILE) 2>/dev/null),$(strip $(TORCH)))
$(STAMP): FORCE
endif

$(STAMP): requirements.txt pyproject.toml $(CONSTRAINTS)
	@if ! $(BIN)/python -m pip --version >/dev/null 2>&1; then \
	  if ! command -v $(PYTHON) >/dev/null 2>&1; then \
	    echo "error: no $(PYTHON) here: install Python 3.9 or later, or name one: make PYTHON=/path/to/python3" >&2; \
	    exit 1; \
	  fi; \
	  if [ -f $(VENV)/pyvenv.cfg ]; then \
	    echo "$(VENV) has no working python or pip (an interrupted or failed 'python -m venv'?): making it again"; \
	    rm -rf $(VENV); \
	  fi; \
	  echo "$(PYTHON) -m venv $(VENV)"; \
	  if ! { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip --version >/dev/null 2>&1; }; then \
	    if [ -f $(VENV)/pyvenv.cfg ]; then rm -rf $(VENV); fi; \
	    echo "error: '$(PYTHON) -m venv' made no virtual environment with pip in it: $(PYTHON) lacks its" >&2; \
	    echo "  venv or ensurepip module. On Debian and Ubuntu, install python3-venv (sudo apt install" >&2; \
	    echo "  python3-venv, or python3.X-venv for PYTHON=python3.X) and run make again, or name another" >&2; \
	    echo "  interpreter: make PYTHON=/path/to/python3" >&2; \
	    exit 1; \
	  fi; \
	fi
	$(BIN)/python -m pip install --upgrade pip
# pip keeps an installed torch that satisfies TORCH's "torch", whichever build it is:
# another TORCH than last time removes it first.
	@if [ -f $(TORCH_FILE) ] && [ "$$(cat $(TORCH_FILE))" != '$(strip $(TORCH))' ]; then \
	  echo "TORCH was '$$(cat $(TORCH_FILE))', is '$(strip $(TORCH))': replacing PyTorch"; \
	  $(BIN)/python -m pip uninstall -y torch; \
	fi
# PyTorch first and without the constraints: TORCH may name an index of its own (the CPU or
# a CUDA build) that lacks the pinned versions of PyTorch's dependencies. The next line, from
# PyPI, then brings those to their pins, and pyproject's "torch>=2.2" keeps this build.
	$(BIN)/python -m pip install $(TORCH)
# Recorded at once: a failure below then does not cost this PyTorch on the next run.
	printf '%s\n' '$(strip $(TORCH))' > $(TORCH_FILE)
	$(BIN)/python -m pip install $(CONSTRAIN) -r requirements.txt -e .
	touch $@

# requirements-test.txt includes requirements.txt, so a plain `pip install -r` of it is complete.
$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(BIN)/python -m pip install $(CONSTRAIN) -r requirements-test.txt
	touch $@

# Record what is installed in $(VENV) as the versions CI tests. To move to newer releases:
#   make clean && make test CONSTRAINTS= TORCH=...   (the newest compatible releases; tests pass)
#   make constraints                                 (and commit constraints.txt)
# The pins hold for this Python version only (an environment marker on each line): elsewhere,
# pip picks the newest compatible releases, as a plain `pip install -r requirements.txt` does.
# The comment lines at the top of constraints.txt are kept.
constraints:
	@test -x $(BIN)/python || { echo "error: no $(BIN)/python: run make test first" >&2; exit 1; }
	@pyver=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') && \
	{ grep '^#' constraints.txt 2>/dev/null || true; \
	  $(BIN)/python -m pip freeze --exclude-editable \
	    | grep -E '^[A-Za-z0-9._-]+==' \
	    | grep -viE '^($(TORCH_ONLY))==' \
	    | sed "s/\$$/ ; python_version == \"$$pyver\"/"; \
	} > $(VENV)/.constraints.new && mv $(VENV)/.constraints.new constraints.txt
	@echo "constraints.txt: $$(grep -vc '^#' constraints.txt) pins"

FORCE:

clean:
	rm -rf $(VENV) .pytest_cache
