# The two commands of the README:
#   make lab    install everything into .venv and open the course in JupyterLab
#   make test   install everything into .venv and run the whole test suite
#   make playground   serve notebooks/playground.ipynb as a page with Voila
#
# Variables (override on the command line or in the environment):
#   PYTHON  interpreter that creates the virtual environment   (python3)
#   VENV    where the virtual environment lives                  (.venv)
#   TORCH   how to install PyTorch, before the requirements      (torch)
#           e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
#           for the small CPU-only build on Linux
#   PYTEST_ARGS  extra arguments for pytest, e.g. PYTEST_ARGS="-m 'not ui'"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test playground install notebooks clean

lab: install
	$(BIN)/jupyter lab notebooks/

test: install
	$(BIN)/python -m pytest -n 2 --dist loadscope --durations=25 $(PYTEST_ARGS)

# The neural-network playground as a page of its own (http://localhost:8866).
playground: install
	$(BIN)/voila notebooks/playground.ipynb

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
