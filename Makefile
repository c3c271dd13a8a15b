# The two commands of the README:
#   make lab    install everything into .venv and open the course in JupyterLab
#   make test   install everything into .venv and run the whole test suite
#   make playground   serve notebooks/playground.ipynb as a page with Voila
#   make bench        time the NumPy code against PyTorch, and every notebook
#
# Variables (override on the command line or in the environment):
#   PYTHON  interpreter that creates the virtual environment   (python3)
#   VENV    where the virtual environment lives                  (.venv)
#   TORCH   how to install PyTorch, before the requirements      (torch)
#           e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
#           for the small CPU-only build on Linux
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
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test playground bench install notebooks clean

lab: install
	$(BIN)/jupyter lab notebooks/

test: install
	$(BIN)/python -m pytest -n 2 --dist loadscope --durations=25 $(PYTEST_ARGS)

# The neural-network playground as a page of its own (http://localhost:8866).
playground: install
	$(BIN)/voila notebooks/playground.ipynb

# Timings of the NumPy code against PyTorch and of every notebook: benchmarks/results.md
bench: install
	$(BIN)/python benchmarks/bench.py

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -r requirements.txt -e .
	touch $(STAMP)

# Re-execute every notebook in place (quick profile, CPU) and re-export the shared code.
notebooks: install
	$(BIN)/python -m nndl_helpers.nbtools run notebooks/[0-9]*.ipynb notebooks/playground.ipynb

clean:
	rm -rf $(VENV) .pytest_cache
