"""The install: what is declared where, and what `make install` does with a virtual environment.

The declarations: every package ``nndl_helpers`` imports is a dependency in ``pyproject.toml``,
every package a notebook imports comes with ``requirements.txt``, test tools stay out of it, and
``constraints.txt`` pins every requirement (PyTorch excepted: ``TORCH`` decides that one).

The Makefile is run for real, offline and in a second, against a stand-in interpreter: a
shell script that records each call and makes a "virtual environment" of shell scripts. So
the tests see which commands ``make`` runs (a broken environment made again, PyTorch
replaced when ``TORCH`` changes, the constraints passed to pip) without installing anything.
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "nndl_helpers"
# Installed from TORCH before anything else, so left out of constraints.txt with what only it needs.
TORCH_ONLY = {"torch", "filelock", "fsspec", "mpmath", "networkx", "sympy", "setuptools", "triton"}
# Tools only the tests and the benchmark use; a reader who opens the notebooks needs none of them.
TEST_TOOLS = {"pytest", "pytest-xdist", "nbval", "playwright", "coverage", "psutil"}


# --------------------------------------------------------------------------- reading the files


def _requirements(path: Path) -> list[Requirement]:
    """The requirements a pip requirements file lists itself (``-r`` includes are not followed)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            out.append(Requirement(line))
    return out


def _names(requirements) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _declared_by_pyproject() -> set[str]:
    project = _pyproject()["project"]
    declared = [Requirement(r) for r in project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        declared += [Requirement(r) for r in extra]
    return _names(declared)


def _constraints() -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in _requirements(REPO / "constraints.txt")}


def _guarded_by_import_error(node, parents) -> bool:
    """Whether ``node`` sits in a ``try`` whose handler catches ImportError: an optional import."""
    for parent in parents.get(node, ()):
        for handler in parent.handlers:
            names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
                return True
    return False


def _walk_body(try_node: ast.Try) -> set:
    return {n for stmt in try_node.body for n in ast.walk(stmt)}


def _third_party_imports(source: str, *, skip_optional: bool) -> set[str]:
    """Top-level names of the absolute imports in ``source`` that are not the standard library's."""
    tree = ast.parse(source)
    parents: dict = {}
    for outer in ast.walk(tree):
        if isinstance(outer, ast.Try):  # the statements it guards, not its handlers
            for inner in _walk_body(outer):
                parents.setdefault(inner, []).append(outer)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            modules = [node.module]
        else:
            continue
        if skip_optional and _guarded_by_import_error(node, parents):
            continue
        names.update(m.split(".")[0] for m in modules)
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("__future__", "nndl_helpers")}


@functools.lru_cache(maxsize=None)
def _module_owners() -> dict:
    """Top-level module -> the distributions that install it (slow: it reads every RECORD)."""
    return metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _module_owners().get(module, [])}


def _requires_closure(names: set[str]) -> set[str]:
    """``names`` and every installed distribution they require, directly or not."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


needs_stdlib_list = pytest.mark.skipif(sys.version_info < (3, 10),
                                       reason="sys.stdlib_module_names needs Python 3.10")


# --------------------------------------------------------------------------- declarations


@needs_stdlib_list
def test_every_import_of_the_package_is_a_declared_dependency():
    declared = _declared_by_pyproject()
    missing = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for module in _third_party_imports(path.read_text(encoding="utf-8"), skip_optional=True):
            dists = _distributions(module)
            if not dists & declared:
                missing.setdefault(module, []).append(path.name)
    assert not missing, (f"imported by nndl_helpers but not in pyproject.toml's dependencies or extras "
                         f"(module: files): {missing}")


@needs_stdlib_list
def test_every_import_of_a_notebook_comes_with_requirements_txt():
    provided = _requires_closure(_names(_requirements(REPO / "requirements.txt")) | _declared_by_pyproject())
    missing = {}
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            if cell["cell_type"] != "code":
                continue
            # IPython's magics and shell escapes are not Python
            source = "\n".join(line for line in "".join(cell["source"]).splitlines()
                               if not line.lstrip().startswith(("%", "!")))
            for module in _third_party_imports(source, skip_optional=False):
                if not _distributions(module) & provided:
                    missing.setdefault(module, set()).add(path.name)
    assert not missing, f"imported by notebooks but not installed by requirements.txt: {missing}"


def test_test_tools_stay_out_of_the_students_requirements():
    student = _names(_requirements(REPO / "requirements.txt"))
    test_only = _names(_requirements(REPO / "requirements-test.txt"))
    assert not student & TEST_TOOLS, f"test tools in requirements.txt: {student & TEST_TOOLS}"
    assert not student & test_only, f"listed in both requirements files: {student & test_only}"
    assert TEST_TOOLS - {"coverage"} <= test_only  # nbval brings coverage
    # a plain `pip install -r requirements-test.txt` gets the notebooks' requirements too
    assert "-r requirements.txt" in (REPO / "requirements-test.txt").read_text(encoding="utf-8").splitlines()


def test_every_requirement_has_a_pin_that_satisfies_it():
    pins = _constraints()
    wanted = (_requirements(REPO / "requirements.txt") + _requirements(REPO / "requirements-test.txt")
              + [Requirement(r) for r in _pyproject()["project"]["dependencies"]])
    problems = []
    for req in wanted:
        name = canonicalize_name(req.name)
        if name in TORCH_ONLY:
            continue
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{req}: no pin")
            continue
        version = next(iter(pin.specifier)).version
        if not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req}: pinned to {version}")
    assert not problems, f"constraints.txt does not cover the requirements: {problems}"


def test_constraints_are_exact_pins_for_one_python_without_torch():
    text = (REPO / "constraints.txt").read_text(encoding="utf-8")
    assert "make constraints" in text, "the header should say how to regenerate the file"
    pins = _constraints()
    assert len(pins) > 20
    for name, pin in pins.items():
        assert len(pin.specifier) == 1 and next(iter(pin.specifier)).operator == "==", pin
        # pins hold for the Python they were tested on; pip ignores them on another one
        assert pin.marker is not None and re.fullmatch(r'python_version == "3\.\d+"', str(pin.marker)), pin
        assert name not in TORCH_ONLY and not name.startswith("nvidia-"), f"{name}: TORCH decides it"
        assert name != "nndl-helpers"
    assert len({str(p.marker) for p in pins.values()}) == 1, "pins from more than one Python"


# --------------------------------------------------------------------------- the Makefile, run


# The stand-in for `python3`: `-m venv DIR` makes DIR/bin/python from the stand-in for a
# virtual environment's python, which records its calls and succeeds. FAKE_VENV=nopip makes
# one whose pip is missing and fails, like Debian's python3 without python3-venv.
FAKE_PYTHON = """#!/bin/sh
echo "python3 $*" >> "$FAKE_LOG"
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"
  echo "home = /nowhere" > "$3/pyvenv.cfg"
  if [ "$FAKE_VENV" = nopip ]; then
    printf '#!/bin/sh\\nexit 1\\n' > "$3/bin/python"
    chmod +x "$3/bin/python"
    echo "ensurepip is not available" >&2
    exit 1
  fi
  cp "$FAKE_VENV_PYTHON" "$3/bin/python"
fi
"""
FAKE_VENV_PYTHON = """#!/bin/sh
echo "venv $*" >> "$FAKE_LOG"
"""


@pytest.fixture()
def fake(tmp_path):
    """A copy of the install files, a stand-in python3, and a runner for `make` that returns its log."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("Makefile", "requirements.txt", "requirements-test.txt", "pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, work / name)
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in (("python3", FAKE_PYTHON), ("venv-python", FAKE_VENV_PYTHON)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    log = tmp_path / "calls.log"

    class Fake:
        root, venv = work, work / "venv"

        def make(self, *args, torch="torch==A", venv_kind="", check=True):
            log.write_text("")
            env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
            env.update(FAKE_LOG=str(log), FAKE_VENV=venv_kind, FAKE_VENV_PYTHON=str(tools / "venv-python"))
            proc = subprocess.run(["make", "--no-print-directory", *args, "VENV=venv", f"PYTHON={tools / 'python3'}",
                                   f"TORCH={torch}"], cwd=work, env=env, capture_output=True, text=True,
                                  timeout=60)
            if check:
                assert proc.returncode == 0, proc.stdout + proc.stderr
            self.proc = proc
            # what ran, without the quick health check make does each time it starts
            return [line for line in log.read_text().splitlines() if line != "venv -c import pip"]

    return Fake()


def _pip_installs(calls):
    return [c for c in calls if c.startswith("venv -m pip install")]


def test_install_makes_a_venv_and_installs_torch_then_the_constrained_requirements(fake):
    calls = fake.make("install")
    assert calls[0].endswith("-m venv venv")
    installs = _pip_installs(calls)
    assert installs == ["venv -m pip install --upgrade pip",
                        "venv -m pip install torch==A",
                        "venv -m pip install -c constraints.txt -r requirements.txt -e ."]
    assert (fake.venv / ".torch").read_text() == "torch==A\n"
    assert (fake.venv / ".installed").exists()
    assert fake.make("install") == [], "a second run has nothing to do"


def test_make_lab_installs_only_the_students_set_and_make_test_adds_the_test_tools(fake):
    assert not any("requirements-test.txt" in c for c in fake.make("install"))
    # `make -n test` prints what `make test` would do: the test tools, then pytest
    dry = fake.make("-n", "test")
    printed = fake.proc.stdout
    assert dry == []
    assert "pip install -c constraints.txt -r requirements-test.txt" in printed
    assert "pip install torch" not in printed, "the notebooks' set is already installed"
    assert printed.index("requirements-test.txt") < printed.index("-m pytest")
    assert _pip_installs(fake.make("install-test")) == [
        "venv -m pip install -c constraints.txt -r requirements-test.txt"]
    assert (fake.venv / ".installed-test").exists()


@pytest.mark.parametrize("target", ["test", "bench", "notebooks", "check-portable"])
def test_targets_that_run_tests_or_notebooks_install_the_test_tools(fake, target):
    fake.make("-n", target)
    assert "-r requirements-test.txt" in fake.proc.stdout


def test_make_lab_does_not_install_the_test_tools(fake):
    fake.make("-n", "lab", "playground")
    assert "-r requirements.txt" in fake.proc.stdout
    assert "requirements-test.txt" not in fake.proc.stdout


def test_check_portable_runs_the_portability_module(fake):
    fake.make("install-test")
    fake.make("-n", "check-portable")
    assert re.search(r"^venv/bin/python -m nndl_helpers\.portability\b", fake.proc.stdout, re.M), fake.proc.stdout
    assert "check-portable" in (REPO / "Makefile").read_text().split("\n\n")[0], "documented in the header"


def test_a_broken_venv_is_made_again_even_under_a_stamp(fake):
    # what an interrupted `python3 -m venv` leaves: a python that does not run, and a stale stamp
    (fake.venv / "bin").mkdir(parents=True)
    (fake.venv / "pyvenv.cfg").write_text("home = /gone\n")
    (fake.venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    (fake.venv / "bin" / "python").chmod(0o755)
    (fake.venv / "leftover").write_text("")
    for stamp in (".installed", ".installed-test"):
        (fake.venv / stamp).write_text("")
    (fake.venv / ".torch").write_text("torch==A\n")
    calls = fake.make("install")
    assert "making it again" in fake.proc.stdout
    assert calls[0].endswith("-m venv venv")
    assert not (fake.venv / "leftover").exists(), "the broken environment was reused"
    assert "venv -m pip install -c constraints.txt -r requirements.txt -e ." in calls
    assert fake.make("install") == []


def test_a_dangling_venv_python_is_made_again(fake):
    # an interpreter removed since the environment was made (pyenv, Homebrew upgrades)
    (fake.venv / "bin").mkdir(parents=True)
    (fake.venv / "pyvenv.cfg").write_text("home = /gone\n")
    (fake.venv / "bin" / "python").symlink_to("/nonexistent/python3.11")
    (fake.venv / ".installed").write_text("")
    calls = fake.make("install")
    assert calls[0].endswith("-m venv venv")
    assert (fake.venv / "bin" / "python").is_file()


def test_python_without_venv_support_is_a_clear_error_every_time(fake):
    for _ in range(2):  # the half-made environment must not be trusted on the next run either
        calls = fake.make("install", venv_kind="nopip", check=False)
        assert fake.proc.returncode != 0
        assert "python3-venv" in fake.proc.stderr, fake.proc.stderr
        assert calls[0].endswith("-m venv venv") and not _pip_installs(calls)
        assert not fake.venv.exists(), "the half-made environment was left behind"


def test_another_torch_replaces_the_installed_one(fake):
    fake.make("install-test", torch="torch==A")
    calls = fake.make("install-test", torch="torch --index-url https://example.invalid/cpu")
    assert "venv -m pip uninstall -y torch" in calls, calls
    uninstall = calls.index("venv -m pip uninstall -y torch")
    assert calls[uninstall + 1] == "venv -m pip install torch --index-url https://example.invalid/cpu"
    assert "venv -m pip install -c constraints.txt -r requirements-test.txt" in calls
    assert (fake.venv / ".torch").read_text() == "torch --index-url https://example.invalid/cpu\n"
    assert fake.make("install-test", torch="torch --index-url https://example.invalid/cpu") == []


def test_constraints_can_be_turned_off(fake):
    calls = fake.make("install", "CONSTRAINTS=")
    assert "venv -m pip install -r requirements.txt -e ." in calls
    assert not any("-c " in c for c in _pip_installs(calls))


def test_editing_the_constraints_installs_again(fake):
    fake.make("install-test")
    os.utime(fake.root / "constraints.txt", (2e9, 2e9))  # newer than the stamps
    calls = fake.make("install-test")
    assert "venv -m pip install -c constraints.txt -r requirements.txt -e ." in calls
    assert "venv -m pip install torch==A" in calls  # same TORCH: nothing uninstalled
    assert "venv -m pip uninstall -y torch" not in calls
