"""The install: what is declared where, and what `python course.py install` does with a virtual environment.

The declarations: every package ``nndl_helpers`` imports is a dependency in ``pyproject.toml``,
every package a notebook imports comes with ``requirements.txt``, test tools stay out of it, and
``constraints.txt`` pins every requirement (PyTorch excepted: ``TORCH`` decides that one).

The launcher ``course.py`` (and ``make``, its alias) is run for real, offline and in a second,
against a stand-in interpreter: a shell script that records each call and makes a "virtual
environment" of shell scripts. So the tests see which commands it runs (a broken environment made
again, PyTorch replaced when ``--torch`` changes, the constraints passed to pip) without installing
anything. Its Windows and macOS branches (venv layout, argument splitting) are run in process with
the platform as a parameter.
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
    assert "python course.py constraints" in text, "the header should say how to regenerate the file"
    pins = _constraints()
    assert len(pins) > 20
    for name, pin in pins.items():
        assert len(pin.specifier) == 1 and next(iter(pin.specifier)).operator == "==", pin
        # pins hold for the Python they were tested on; pip ignores them on another one
        assert pin.marker is not None and re.fullmatch(r'python_version == "3\.\d+"', str(pin.marker)), pin
        assert name not in TORCH_ONLY and not name.startswith("nvidia-"), f"{name}: TORCH decides it"
        assert name != "nndl-helpers"
    assert len({str(p.marker) for p in pins.values()}) == 1, "pins from more than one Python"


# ------------------------------------------------------------------- the launcher (course.py), run


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
env | grep -E '^(OMP_WAIT_POLICY|PYTEST_SEEN)=' | sed 's/^/env /' >> "$FAKE_LOG"
"""


@pytest.fixture()
def fake(tmp_path):
    """A copy of the launcher and install files, a stand-in python3, and a runner that returns the log."""
    if os.name != "posix":
        pytest.skip("the stand-in interpreters are shell scripts")
    work = tmp_path / "checkout"
    (work / "nndl_helpers").mkdir(parents=True)
    for name in ("course.py", "Makefile", "requirements.txt", "requirements-test.txt", "pyproject.toml",
                 "constraints.txt", "nndl_helpers/config.py"):
        shutil.copy(REPO / name, work / name)
    (work / "notebooks").mkdir()
    for name in ("05a_x.ipynb", "02_y.ipynb", "playground.ipynb", "scratch.ipynb"):
        (work / "notebooks" / name).write_text("{}")
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in (("python3", FAKE_PYTHON), ("venv-python", FAKE_VENV_PYTHON)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    log = tmp_path / "calls.log"

    class Fake:
        root, venv = work, work / "venv"

        def env(self, venv_kind=""):
            env = {k: v for k, v in os.environ.items()
                   if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VENV", "TORCH", "CONSTRAINTS", "PYTHON",
                                "PYTEST_ARGS", "OMP_WAIT_POLICY")}
            env.update(FAKE_LOG=str(log), FAKE_VENV=venv_kind, FAKE_VENV_PYTHON=str(tools / "venv-python"))
            return env

        def _calls(self, with_env=False):
            # what ran, without the quick health check the launcher does each time it starts
            return [line for line in log.read_text().splitlines()
                    if line != "venv -c import pip" and (with_env or not line.startswith("env "))]

        def course(self, *args, torch="torch==A", venv_kind="", check=True, options=(), with_env=False):
            log.write_text("")
            cmd = [sys.executable, "course.py", "--python", str(tools / "python3"), "--venv", "venv",
                   "--torch", torch, *options, *args]
            self.proc = subprocess.run(cmd, cwd=work, env=self.env(venv_kind), capture_output=True, text=True,
                                       timeout=60)
            if check:
                assert self.proc.returncode == 0, self.proc.stdout + self.proc.stderr
            return self._calls(with_env)

        def make_n(self, *args):
            """What `make -n` would run: the launcher's command line."""
            if shutil.which("make") is None:
                pytest.skip("no make")
            proc = subprocess.run(["make", "-n", "--no-print-directory", *args, "VENV=venv", "TORCH=torch==A",
                                   "PYTHON=python3"], cwd=work, env=self.env(), capture_output=True, text=True,
                                  timeout=60)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout.strip()

    return Fake()


def _pip_installs(calls):
    return [c for c in calls if c.startswith("venv -m pip install")]


def test_install_makes_a_venv_and_installs_torch_then_the_constrained_requirements(fake):
    calls = fake.course("install")
    assert calls[0].endswith("-m venv venv")
    installs = _pip_installs(calls)
    assert installs == ["venv -m pip install --upgrade pip",
                        "venv -m pip install torch==A",
                        "venv -m pip install -c constraints.txt -r requirements.txt -e ."]
    assert "[4/4]" in fake.proc.stdout, "progress is printed"
    assert fake.course("install") == [], "a second run has nothing to do"


def test_lab_installs_only_the_students_set_and_test_adds_the_test_tools(fake):
    assert not any("requirements-test.txt" in c for c in fake.course("install"))
    # --dry-run prints what `test` would do: the test tools, then pytest
    assert fake.course("--dry-run", "test") == []
    printed = fake.proc.stdout
    assert "pip install -c constraints.txt -r requirements-test.txt" in printed
    assert "pip install torch" not in printed, "the notebooks' set is already installed"
    assert printed.index("requirements-test.txt") < printed.index("-m pytest")
    assert _pip_installs(fake.course("install-test")) == [
        "venv -m pip install -c constraints.txt -r requirements-test.txt"]
    assert fake.course("install-test") == []


@pytest.mark.parametrize("command", ["test", "bench", "notebooks", "check-portable", "site"])
def test_commands_that_run_tests_or_notebooks_install_the_test_tools(fake, command):
    fake.course("--dry-run", command)
    assert "-r requirements-test.txt" in fake.proc.stdout


def test_checkpoint_rebuilds_the_named_checkpoints(fake):
    fake.course("install")
    assert fake.course("checkpoint", "13b_dcgan", "--threads", "1") == [
        "venv -m nndl_helpers.pretrained build 13b_dcgan --threads 1"]


@pytest.mark.parametrize("command", ["lab", "playground", "checkpoint"])
def test_lab_and_playground_do_not_install_the_test_tools(fake, command):
    fake.course("--dry-run", command)
    assert "-r requirements.txt" in fake.proc.stdout
    assert "requirements-test.txt" not in fake.proc.stdout


def test_each_command_starts_its_program_with_the_runtime_settings(fake):
    from nndl_helpers.config import RUNTIME_ENV

    fake.course("install-test")
    expected = {
        "lab": "venv -m jupyter lab notebooks/",
        "playground": "venv -m voila notebooks/playground.ipynb",
        "bench": "venv benchmarks/bench.py",
        "check-portable": "venv -m nndl_helpers.portability check",
        # the numbered notebooks in order, then the playground; nothing else in the folder
        "notebooks": "venv -m nndl_helpers.nbtools run notebooks/02_y.ipynb notebooks/05a_x.ipynb "
                     "notebooks/playground.ipynb",
        "test": "venv -m pytest -n 2 --dist loadscope --durations=25",
        "site": "venv -m nndl_helpers.site build",
        "checkpoint": "venv -m nndl_helpers.pretrained list",      # with no name: what there is
    }
    for command, line in expected.items():
        assert fake.course(command, with_env=True) == [line, f"env OMP_WAIT_POLICY={RUNTIME_ENV['OMP_WAIT_POLICY']}"]


def test_pytest_arguments_come_after_the_command_or_from_pytest_args(fake):
    fake.course("install-test")
    assert fake.course("test", "--", "-m", "not ui")[0].endswith("--durations=25 -m not ui")
    line = fake.make_n("test", "PYTEST_ARGS=-m 'not ui' -x")
    assert line.endswith("test -- -m 'not ui' -x"), line


@pytest.mark.parametrize("target", ["lab", "test", "playground", "bench", "check-portable", "notebooks", "site",
                                    "install", "install-test", "constraints", "clean"])
def test_make_is_a_thin_alias_of_the_launcher(fake, target):
    line = fake.make_n(target)
    assert line.startswith('python3 course.py --python "python3" --venv "venv" --torch "torch==A" '
                           '--constraints "constraints.txt" ' + target), line


def test_a_broken_venv_is_made_again_even_when_recorded_as_installed(fake):
    fake.course("install")
    state = (fake.venv / ".course-install.json").read_text()
    # what an interrupted `python3 -m venv` leaves: a python that does not run
    shutil.rmtree(fake.venv)
    (fake.venv / "bin").mkdir(parents=True)
    (fake.venv / "pyvenv.cfg").write_text("home = /gone\n")
    (fake.venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    (fake.venv / "bin" / "python").chmod(0o755)
    (fake.venv / "leftover").write_text("")
    (fake.venv / ".course-install.json").write_text(state)
    calls = fake.course("install")
    assert "making it again" in fake.proc.stdout
    assert calls[0].endswith("-m venv venv")
    assert not (fake.venv / "leftover").exists(), "the broken environment was reused"
    assert "venv -m pip install -c constraints.txt -r requirements.txt -e ." in calls
    assert fake.course("install") == []


def test_a_dangling_venv_python_is_made_again(fake):
    # an interpreter removed since the environment was made (pyenv, Homebrew upgrades)
    (fake.venv / "bin").mkdir(parents=True)
    (fake.venv / "pyvenv.cfg").write_text("home = /gone\n")
    (fake.venv / "bin" / "python").symlink_to("/nonexistent/python3.11")
    calls = fake.course("install")
    assert calls[0].endswith("-m venv venv")
    assert (fake.venv / "bin" / "python").is_file()


def test_a_folder_that_is_not_a_venv_is_never_deleted(fake):
    fake.venv.mkdir()
    (fake.venv / "notes.txt").write_text("mine")
    calls = fake.course("install", check=False)
    assert fake.proc.returncode == 1 and "not a virtual environment" in fake.proc.stderr
    assert calls == [] and (fake.venv / "notes.txt").exists()


def test_python_without_venv_support_is_a_clear_error_every_time(fake):
    for _ in range(2):  # the half-made environment must not be trusted on the next run either
        calls = fake.course("install", venv_kind="nopip", check=False)
        assert fake.proc.returncode == 1
        assert "python3-venv" in fake.proc.stderr and "Traceback" not in fake.proc.stderr, fake.proc.stderr
        assert calls[0].endswith("-m venv venv") and not _pip_installs(calls)
        assert not fake.venv.exists(), "the half-made environment was left behind"


def test_another_torch_replaces_the_installed_one(fake):
    fake.course("install-test", torch="torch==A")
    calls = fake.course("install-test", torch="torch --index-url https://example.invalid/cpu")
    assert "venv -m pip uninstall -y torch" in calls, calls
    uninstall = calls.index("venv -m pip uninstall -y torch")
    assert calls[uninstall + 1] == "venv -m pip install torch --index-url https://example.invalid/cpu"
    assert "venv -m pip install -c constraints.txt -r requirements-test.txt" in calls
    assert fake.course("install-test", torch="torch --index-url https://example.invalid/cpu") == []


def test_constraints_can_be_turned_off(fake):
    calls = fake.course("install", options=("--constraints", ""))
    assert "venv -m pip install -r requirements.txt -e ." in calls
    assert not any("-c " in c for c in _pip_installs(calls))


@pytest.mark.parametrize("name", ["constraints.txt", "requirements.txt", "pyproject.toml"])
def test_editing_the_requirements_or_constraints_installs_again(fake, name):
    fake.course("install-test")
    with open(fake.root / name, "a") as f:
        f.write("\n# edited\n")
    calls = fake.course("install-test")
    assert "venv -m pip install -c constraints.txt -r requirements.txt -e ." in calls
    assert "venv -m pip install -c constraints.txt -r requirements-test.txt" in calls
    assert "venv -m pip install torch==A" in calls  # same TORCH: nothing uninstalled
    assert "venv -m pip uninstall -y torch" not in calls


def test_editing_the_test_requirements_installs_only_the_test_tools(fake):
    fake.course("install-test")
    with open(fake.root / "requirements-test.txt", "a") as f:
        f.write("\n# edited\n")
    assert _pip_installs(fake.course("install-test")) == [
        "venv -m pip install -c constraints.txt -r requirements-test.txt"]


# ------------------------------------------------- the launcher's platform branches, in process


def _launcher(tmp_path, platform, **kw):
    course = _course_module()
    return course.Launcher(root=tmp_path, platform=platform, dry_run=True, **kw)


@functools.lru_cache(maxsize=None)
def _course_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("course_launcher", REPO / "course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("platform, parts", [("win32", ("Scripts", "python.exe")), ("linux", ("bin", "python")),
                                             ("darwin", ("bin", "python"))])
def test_the_venv_layout_of_each_platform(tmp_path, platform, parts):
    course = _course_module()
    assert course.venv_python(tmp_path / ".venv", platform).parts[-2:] == parts
    launcher = _launcher(tmp_path, platform)
    launcher.test([])  # a fresh checkout: every step is printed, nothing runs
    pythons = {cmd[0] for cmd in launcher.ran[1:]}
    assert pythons == {str(tmp_path / ".venv" / Path(*parts))}, pythons
    assert launcher.ran[0][1:] == ["-m", "venv", ".venv"]
    assert launcher.ran[-1][1:4] == ["-m", "pytest", "-n"]


@pytest.mark.parametrize("platform", ["win32", "linux", "darwin"])
def test_a_torch_spec_is_split_into_arguments_on_each_platform(tmp_path, platform):
    spec = r"torch --find-links C:\wheels\cpu" if platform == "win32" else "torch --find-links '/my wheels'"
    launcher = _launcher(tmp_path, platform, torch=spec)
    launcher.install()
    torch_install = next(cmd for cmd in launcher.ran if "install" in cmd and cmd[-1] != "pip" and "-r" not in cmd)
    expected = r"C:\wheels\cpu" if platform == "win32" else "/my wheels"
    assert torch_install[-3:] == ["torch", "--find-links", expected]


def test_the_runtime_settings_reach_the_programs_without_overriding_the_readers(monkeypatch):
    from nndl_helpers.config import RUNTIME_ENV

    course = _course_module()
    assert course.runtime_env() == RUNTIME_ENV
    env = course.child_env({"PATH": "/bin", "OMP_WAIT_POLICY": "ACTIVE"})
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and env["PATH"] == "/bin"
    assert all(env[k] == v for k, v in RUNTIME_ENV.items() if k != "OMP_WAIT_POLICY")


def test_the_launcher_uses_only_the_standard_library():
    tree = ast.parse((REPO / "course.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names - set(sys.stdlib_module_names)


def test_ci_and_the_readme_use_the_launcher():
    assert "course.py test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "python course.py lab" in readme and "python course.py test" in readme
