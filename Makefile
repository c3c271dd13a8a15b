# A thin alias of course.py, the course's launcher (Linux, macOS and Windows alike):
#   make lab    = python course.py lab    install what the notebooks need into .venv, open JupyterLab
#   make test   = python course.py test   install that and the test tools, run the whole test suite
# and likewise make playground, bench, check-portable, notebooks, site, install, install-test,
# constraints, clean: `python course.py --help` says what each does.
#
# Variables (override on the command line or in the environment), passed on to course.py:
#   PYTHON       interpreter that runs course.py and makes the virtual environment (python3)
#   VENV         where the virtual environment lives (.venv)
#   TORCH        how to install PyTorch, before the requirements (torch)
#   CONSTRAINTS  the versions CI tested (constraints.txt); CONSTRAINTS= takes the newest releases
#   PYTEST_ARGS  extra arguments for pytest, e.g. PYTEST_ARGS="-m 'not ui'"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch
CONSTRAINTS ?= constraints.txt
PYTEST_ARGS ?=
COURSE = $(PYTHON) course.py --python "$(PYTHON)" --venv "$(VENV)" --torch "$(TORCH)" --constraints "$(CONSTRAINTS)"

.PHONY: lab test playground bench check-portable notebooks site install install-test constraints clean

lab playground bench check-portable notebooks site install install-test constraints clean:
	$(COURSE) $@

test:
	$(COURSE) test -- $(PYTEST_ARGS)
