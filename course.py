#!/usr/bin/env python3
"""The course's launcher: the same two commands on Linux, macOS and Windows.

    python course.py lab      install what the notebooks need into .venv and open the course in JupyterLab
    python course.py test     install that and the test tools into .venv and run the whole test suite

and the others:

    python course.py playground      serve notebooks/playground.ipynb as a page with Voila
    python course.py bench           time the NumPy code against PyTorch, and every notebook, with the
                                     speed targets asserted (NNDL_CHECK_SPEED=1)
    python course.py check-portable  rerun the notebook tests under other numerics than this machine's
                                     default: another BLAS kernel, another thread count
    python course.py notebooks       re-execute every notebook in place and re-export the shared code
    python course.py checkpoint NAME retrain the course checkpoint NAME (see checkpoints/README.md) with its
                                     recipe, and write its new SHA-256 into the data registry
    python course.py site            build the course as a website from the committed notebooks
                                     (offline; opens nothing: see the path it prints)
    python course.py install         only install what `lab` needs; `install-test` adds the test tools
    python course.py constraints     rewrite constraints.txt from the versions installed in .venv now
    python course.py clean           remove .venv

Options (before the command; each also read from the environment variable of the same name):
    --venv DIR          where the virtual environment lives (VENV, default .venv)
    --torch SPEC        how to install PyTorch, before the requirements (TORCH, default "torch"),
                        e.g. --torch "torch --index-url https://download.pytorch.org/whl/cpu";
                        another SPEC than last time replaces the installed PyTorch
    --constraints FILE  the versions CI tested, applied to every install but PyTorch's
                        (CONSTRAINTS, default constraints.txt); --constraints "" takes the newest
                        compatible releases instead
    --python EXE        the interpreter that makes the virtual environment (PYTHON, default: the
                        one running this script)
    --dry-run           print what would run, run nothing
Arguments after the command go to the program it starts: `python course.py test -- -m "not ui"`
passes `-m "not ui"` to pytest (PYTEST_ARGS in the environment does the same).

Only the standard library is used here, so that this file runs before anything is installed. The
environment is installed again when requirements.txt, requirements-test.txt, pyproject.toml, the
constraints file or --torch change, and made again when it is broken (an interrupted `venv`, an
interpreter removed since). Every program it starts gets the thread-pool and memory settings of
``nndl_helpers.config.RUNTIME_ENV`` (read from that file, not copied here).
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MIN_PYTHON = (3, 10)
STATE = ".course-install.json"
# Packages that only PyTorch needs stay out of constraints.txt: the TORCH spec decides them.
TORCH_ONLY = ("torch", "filelock", "fsspec", "mpmath", "networkx", "sympy", "setuptools", "triton")


class LaunchError(Exception):
    """A problem the reader can fix; printed without a traceback."""


def log(message: str) -> None:
    print(f"course.py: {message}", flush=True)


# ------------------------------------------------------------------------------- the platform


def venv_python(venv: Path, platform: str = sys.platform) -> Path:
    """The virtual environment's interpreter: ``Scripts\\python.exe`` on Windows, ``bin/python`` elsewhere."""
    return venv / "Scripts" / "python.exe" if platform == "win32" else venv / "bin" / "python"


def runtime_env(config: Path = ROOT / "nndl_helpers" / "config.py") -> dict[str, str]:
    """``RUNTIME_ENV`` of nndl_helpers/config.py, read without importing it (NumPy may not be installed yet)."""
    for node in ast.parse(config.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RUNTIME_ENV" for t in node.targets):
            return ast.literal_eval(node.value)
    raise LaunchError(f"{config} defines no RUNTIME_ENV")


def child_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every program started: this one, plus RUNTIME_ENV where not already set."""
    env = dict(os.environ if environ is None else environ)
    for key, value in runtime_env().items():
        env.setdefault(key, value)
    return env


def split_args(text: str, platform: str = sys.platform) -> list[str]:
    """A command-line string (a --torch spec, PYTEST_ARGS) as arguments; Windows keeps backslashes."""
    return shlex.split(text, posix=platform != "win32") if text.strip() else []


# ------------------------------------------------------------------------------- the launcher


class Launcher:
    def __init__(self, *, venv=".venv", torch="torch", constraints="constraints.txt", python=None,
                 dry_run=False, platform=sys.platform, root=ROOT, runner=None):
        self.root = Path(root)
        self.venv = self.root / venv
        self.venv_arg = venv
        self.torch = " ".join(torch.split())
        self.constraints = constraints.strip()
        self.python = python or sys.executable
        self.dry_run = dry_run
        self.platform = platform
        self.runner = runner or self._run
        self.ran: list[list[str]] = []

    # -- running programs
    @property
    def py(self) -> str:
        """The venv's python, as an absolute path (Windows resolves a relative one from the caller's cwd)."""
        return str(venv_python(self.venv, self.platform))

    def _run(self, cmd: list[str], check: bool = True) -> int:
        proc = subprocess.run(cmd, cwd=self.root, env=child_env())
        if check and proc.returncode != 0:
            raise LaunchError(f"failed ({proc.returncode}): {' '.join(cmd)}")
        return proc.returncode

    def run(self, cmd: list[str], check: bool = True) -> int:
        print("  $ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        self.ran.append(cmd)
        if self.dry_run:
            return 0
        return self.runner(cmd, check)

    def quiet(self, cmd: list[str]) -> bool:
        """Run a check whose output does not matter; True when it succeeds."""
        try:
            return subprocess.run(cmd, cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=120).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    # -- what is installed
    def _digest(self, names: list[str]) -> str:
        h = hashlib.sha256()
        for name in names:
            path = self.root / name
            h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<missing>") + b"\0")
        return h.hexdigest()[:16]

    def wanted(self) -> dict[str, str]:
        base = ["requirements.txt", "pyproject.toml"] + ([self.constraints] if self.constraints else [])
        digest = self._digest(base) + ":" + (self.constraints or "-")
        return {"torch": self.torch, "base": digest, "test": digest + ":" + self._digest(["requirements-test.txt"])}

    def state(self) -> dict[str, str]:
        try:
            return json.loads((self.venv / STATE).read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, **changes) -> None:
        if not self.dry_run:
            (self.venv / STATE).write_text(json.dumps({**self.state(), **changes}, indent=1) + "\n")

    def healthy(self) -> bool:
        return venv_python(self.venv, self.platform).is_file() and self.quiet([self.py, "-c", "import pip"])

    def _constrain(self) -> list[str]:
        return ["-c", self.constraints] if self.constraints else []

    # -- installing
    def make_venv(self) -> None:
        if self.venv.exists():
            if not (self.venv / "pyvenv.cfg").exists():
                raise LaunchError(f"{self.venv_arg} exists but is not a virtual environment: move it away or "
                                  f"name another place with --venv")
            log(f"{self.venv_arg} has no working python or pip (an interrupted or failed 'venv', or an "
                f"interpreter removed since): making it again")
            if not self.dry_run:
                shutil.rmtree(self.venv)
        self.run([self.python, "-m", "venv", self.venv_arg], check=False)
        if not self.dry_run and not self.healthy():
            if (self.venv / "pyvenv.cfg").exists():
                shutil.rmtree(self.venv, ignore_errors=True)
            raise LaunchError(
                f"'{self.python} -m venv' made no virtual environment with pip in it: this Python lacks its venv "
                "or ensurepip module. On Debian and Ubuntu, install python3-venv (sudo apt install python3-venv, "
                "or python3.X-venv), then run this again; elsewhere install Python from python.org, or name "
                "another interpreter with --python")

    def install(self) -> None:
        """What the notebooks need: a virtual environment, PyTorch, requirements.txt and the package."""
        want, have = self.wanted(), self.state()
        fresh = not self.healthy()
        if not fresh and have.get("torch") == want["torch"] and have.get("base") == want["base"]:
            return
        steps = 4 if fresh else 3
        step = 0

        def say(what):
            nonlocal step
            step += 1
            log(f"[{step}/{steps}] {what}")

        if fresh:
            say(f"making the virtual environment {self.venv_arg}")
            self.make_venv()
            have = {}
        say("upgrading pip")
        self.run([self.py, "-m", "pip", "install", "--upgrade", "pip"])
        if have.get("torch") not in (None, want["torch"]):
            log(f"PyTorch was installed from '{have['torch']}', now '{want['torch']}': replacing it")
            self.run([self.py, "-m", "pip", "uninstall", "-y", "torch"])
        # PyTorch first and without the constraints: the spec may name an index of its own (the CPU
        # or a CUDA build) that lacks the pinned versions of PyTorch's dependencies.
        say(f"installing PyTorch ({want['torch']})")
        self.run([self.py, "-m", "pip", "install", *split_args(want["torch"], self.platform)])
        self._save(torch=want["torch"], base="", test="")  # a failure below then keeps this PyTorch
        say("installing requirements.txt and the course's helpers (nndl_helpers)")
        self.run([self.py, "-m", "pip", "install", *self._constrain(), "-r", "requirements.txt", "-e", "."])
        self._save(base=want["base"])

    def install_test(self) -> None:
        """install, then the test tools of requirements-test.txt."""
        self.install()
        want = self.wanted()
        if self.state().get("test") == want["test"]:
            return
        log("[test tools] installing requirements-test.txt")
        self.run([self.py, "-m", "pip", "install", *self._constrain(), "-r", "requirements-test.txt"])
        self._save(test=want["test"])

    # -- the commands
    def lab(self, args):
        self.install()
        log("opening the course in JupyterLab (stop it with Ctrl+C)")
        return self.run([self.py, "-m", "jupyter", "lab", "notebooks/", *args], check=False)

    def test(self, args):
        self.install_test()
        extra = args or split_args(os.environ.get("PYTEST_ARGS", ""), self.platform)
        log("running the whole test suite")
        return self.run([self.py, "-m", "pytest", "-n", "2", "--dist", "loadscope", "--durations=25", *extra],
                        check=False)

    def playground(self, args):
        self.install()
        return self.run([self.py, "-m", "voila", "notebooks/playground.ipynb", *args], check=False)

    def bench(self, args):
        self.install_test()
        return self.run([self.py, "benchmarks/bench.py", *args], check=False)

    def check_portable(self, args):
        self.install_test()
        return self.run([self.py, "-m", "nndl_helpers.portability", "check", *args], check=False)

    def notebooks(self, args):
        self.install_test()
        names = sorted(p.name for p in (self.root / "notebooks").glob("[0-9]*.ipynb")) + ["playground.ipynb"]
        return self.run([self.py, "-m", "nndl_helpers.nbtools", "run", *[f"notebooks/{n}" for n in names], *args],
                        check=False)

    def checkpoint(self, args):
        self.install()
        command = ["build", *args] if args else ["list"]      # no name: list the checkpoints
        return self.run([self.py, "-m", "nndl_helpers.pretrained", *command], check=False)

    def site(self, args):
        self.install_test()
        log("building the course's website from the committed notebooks")
        return self.run([self.py, "-m", "nndl_helpers.site", "build", *args], check=False)

    def constraints_cmd(self, args):
        """Rewrite constraints.txt from the venv, keeping its comment lines; pins for this Python only."""
        if not self.healthy():
            raise LaunchError(f"no working {self.py}: run `python course.py test` first")
        # `pip list --format=freeze`, not `pip freeze`: a package installed from a file prints as
        # `name @ file://...` under freeze, and would lose its pin.
        out = subprocess.run([self.py, "-m", "pip", "list", "--format=freeze", "--exclude-editable"], cwd=self.root,
                             capture_output=True, text=True, check=True).stdout
        pyver = subprocess.run([self.py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               cwd=self.root, capture_output=True, text=True, check=True).stdout.strip()
        path = self.root / "constraints.txt"
        header = [line for line in path.read_text().splitlines() if line.startswith("#")] if path.exists() else []
        pins = [line for line in out.splitlines() if "==" in line and not line.startswith("#")]
        skip = {*TORCH_ONLY, "pip", "wheel", "distribute"}    # what `pip freeze` leaves out, and PyTorch's own
        pins = [p for p in pins if not (p.split("==")[0].lower() in skip or p.lower().startswith("nvidia-"))]
        path.write_text("\n".join(header + [f'{p} ; python_version == "{pyver}"' for p in pins]) + "\n")
        log(f"constraints.txt: {len(pins)} pins")
        return 0

    def clean(self, args):
        for path in (self.venv, self.root / ".pytest_cache"):
            if path.exists():
                log(f"removing {path.relative_to(self.root)}")
                if not self.dry_run:
                    shutil.rmtree(path)
        return 0

    def install_cmd(self, args):
        self.install()
        return 0

    def install_test_cmd(self, args):
        self.install_test()
        return 0


COMMANDS = {
    "lab": Launcher.lab, "test": Launcher.test, "playground": Launcher.playground, "bench": Launcher.bench,
    "check-portable": Launcher.check_portable, "notebooks": Launcher.notebooks, "site": Launcher.site,
    "checkpoint": Launcher.checkpoint,
    "install": Launcher.install_cmd, "install-test": Launcher.install_test_cmd,
    "constraints": Launcher.constraints_cmd, "clean": Launcher.clean,
}


def main(argv: list[str] | None = None) -> int:
    if sys.version_info < MIN_PYTHON:
        print(f"course.py: the course needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later; this is "
              f"{sys.version.split()[0]}", file=sys.stderr)
        return 2
    env = os.environ
    parser = argparse.ArgumentParser(prog="course.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:4]))
    parser.add_argument("--venv", default=env.get("VENV", ".venv"))
    parser.add_argument("--torch", default=env.get("TORCH", "torch"))
    parser.add_argument("--constraints", default=env.get("CONSTRAINTS", "constraints.txt"))
    parser.add_argument("--python", default=env.get("PYTHON") or sys.executable)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    launcher = Launcher(venv=ns.venv, torch=ns.torch, constraints=ns.constraints, python=ns.python,
                        dry_run=ns.dry_run)
    try:
        return COMMANDS[ns.command](launcher, args) or 0
    except LaunchError as e:
        print(f"course.py: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
