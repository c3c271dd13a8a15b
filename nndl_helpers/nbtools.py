"""Keep notebooks and the code later chapters reuse in step.

A code cell whose first line is ``#@save`` is *taught* in its notebook and *reused* by later
ones. ``export`` copies those cells, verbatim and in order, into the ``nndl_helpers.chapters``
subpackage, apart from the hand-written plumbing of ``nndl_helpers``:

    #@save        ->  nndl_helpers/chapters/chNN.py        NumPy only: importing it never imports torch
    #@save torch  ->  nndl_helpers/chapters/chNN_torch.py  the chapter's PyTorch code

(``05a_convolution.ipynb`` -> ``ch05a.py`` and ``ch05a_torch.py``). A ``torch`` cell
may use what the notebook's NumPy cells define: the generated module imports those names from
``chNN`` explicitly. The notebook stays the one source; ``check`` fails when a module differs
from its notebook or when a module no notebook produces is left behind (``export`` deletes it).

    python -m nndl_helpers.nbtools export            # regenerate every chapter module
    python -m nndl_helpers.nbtools check             # exit 1 if any is stale or orphaned
    python -m nndl_helpers.nbtools run notebooks/03_linear_models.ipynb
        # execute in place (quick profile, CPU), strip widget state, export
"""
from __future__ import annotations

import argparse
import ast
import builtins
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
PACKAGE = REPO / "nndl_helpers" / "chapters"
MARKER = "#@save"
KINDS = {"": "", "torch": "_torch"}     # marker suffix -> module-name suffix
_NAME = re.compile(r"^(\d\d[a-z]?)_\w+\.ipynb$")
_MODULE = re.compile(r"^ch\d\d[a-z]?(_torch)?\.py$")


def module_name(notebook: Path) -> str | None:
    """``ch05a`` for ``05a_convolution.ipynb``; None for notebooks without a number."""
    m = _NAME.match(notebook.name)
    return f"ch{m.group(1)}" if m else None


def _marker_kind(first_line: str) -> str | None:
    words = first_line.split()
    if not words or words[0] != MARKER:
        return None
    kind = " ".join(words[1:])
    if kind not in KINDS:
        raise ValueError(f"unknown marker {first_line.strip()!r}: use '#@save' or '#@save torch'")
    return kind


def saved_cells(notebook: Path, kind: str = "") -> list[str]:
    """The bodies of the notebook's ``#@save`` (kind "") or ``#@save torch`` cells, in order."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        first, _, rest = src.partition("\n")
        if _marker_kind(first) == kind:
            out.append(rest.strip("\n"))
    return out


def _bindings(tree: ast.Module) -> tuple[dict[str, ast.stmt], set[str]]:
    """Top-level names bound by import statements (name -> statement) and by everything else."""
    imported, defined = {}, set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                imported[(alias.asname or alias.name).split(".")[0]] = node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    defined.add(sub.id)
    return imported, defined


def _bridge(numpy_code: str, torch_code: str, numpy_module: str) -> str:
    """Imports that give the torch module the names its cells take from the NumPy cells."""
    np_imported, np_defined = _bindings(ast.parse(numpy_code))
    t_tree = ast.parse(torch_code)
    t_imported, t_defined = _bindings(t_tree)
    used = {n.id for n in ast.walk(t_tree) if isinstance(n, ast.Name)}
    need = used - set(t_imported) - t_defined - set(dir(builtins))
    lines = []
    for stmt in dict.fromkeys(np_imported[n] for n in sorted(need & set(np_imported))):
        names = [a for a in stmt.names if (a.asname or a.name).split(".")[0] in need]
        stmt = type(stmt)(**{**{f: getattr(stmt, f) for f in stmt._fields}, "names": names})
        lines.append(ast.unparse(stmt))
    from_numpy = sorted(need & np_defined - set(np_imported))
    if from_numpy:
        lines.append(f"from nndl_helpers.chapters.{numpy_module} import " + ", ".join(from_numpy))
    return "\n".join(lines)


def render_modules(notebook: Path) -> dict[str, str]:
    """{module name: source} for every chapter module the notebook's marked cells produce."""
    name = module_name(notebook)
    if name is None:
        return {}
    numpy_cells, torch_cells = saved_cells(notebook, ""), saved_cells(notebook, "torch")
    out = {}
    for kind, cells in (("", numpy_cells), ("torch", torch_cells)):
        if not cells:
            continue
        what = "NumPy code" if kind == "" else "PyTorch code"
        marker = f"{MARKER} {kind}".strip()
        body = "\n\n\n".join(cells)
        header = (
            f'"""{what} taught in notebooks/{notebook.name}, reused by later notebooks.\n\n'
            f"Generated from the notebook's ``{marker}`` cells by ``python -m nndl_helpers.nbtools export``.\n"
            f'Do not edit by hand: change the notebook and export again (a test checks they agree).\n"""\n'
        )
        if kind == "torch":
            bridge = _bridge("\n\n".join(numpy_cells), body, name)
            if bridge:
                header += bridge + "\n\n\n"
        out[name + KINDS[kind]] = header + body + "\n"
    return out


def render_module(notebook: Path, kind: str = "") -> str | None:
    """The source of the notebook's NumPy (kind "") or torch module, None when it has none."""
    name = module_name(notebook)
    return render_modules(notebook).get(f"{name}{KINDS[kind]}") if name else None


def orphans(notebooks: list[Path] | None = None) -> list[Path]:
    """Chapter modules that no notebook produces any more."""
    wanted = set()
    for nb in notebooks if notebooks is not None else NOTEBOOKS.glob("*.ipynb"):
        wanted |= set(render_modules(nb))
    return sorted(p for p in PACKAGE.glob("*.py") if _MODULE.match(p.name) and p.stem not in wanted)


def export(check_only: bool = False, notebooks: list[Path] | None = None) -> list[str]:
    """Write (or, with ``check_only``, compare) the chapter modules of ``notebooks`` (default: all).

    With every notebook (the default), modules no notebook produces are deleted (or, with
    ``check_only``, reported). Returns the names of the modules that were (or would be)
    rewritten or deleted.
    """
    changed = []
    everything = notebooks is None
    for nb in sorted(notebooks if notebooks is not None else NOTEBOOKS.glob("*.ipynb")):
        for name, text in render_modules(nb).items():
            target = PACKAGE / f"{name}.py"
            current = target.read_text(encoding="utf-8") if target.exists() else None
            if current != text:
                changed.append(name)
                if not check_only:
                    PACKAGE.mkdir(parents=True, exist_ok=True)
                    target.write_text(text, encoding="utf-8")
    if everything:
        for path in orphans():
            changed.append(path.stem)
            if not check_only:
                path.unlink()
    return changed


def strip_widget_state(nb: dict) -> None:
    """Drop saved widget state (large, stale once reopened) and authoring-tool metadata."""
    for key in ("widgets", "jupytext"):
        nb.get("metadata", {}).pop(key, None)


def run(paths: list[str], timeout: int = 900) -> None:
    """Execute notebooks in place the way CI does (quick profile, CPU) and export."""
    import nbformat
    from nbclient import NotebookClient

    from .config import RUNTIME_ENV

    os.environ.setdefault("NNDL_PROFILE", "quick")
    os.environ.setdefault("NNDL_DEVICE", "cpu")
    for key, value in RUNTIME_ENV.items():  # the kernels inherit them, as under `python course.py lab`
        os.environ.setdefault(key, value)
    done = []
    for p in paths:
        path = Path(p).resolve()
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        t0 = time.perf_counter()
        client.execute()
        strip_widget_state(nb)
        nbformat.write(nb, path)
        print(f"{path.name}: executed in {time.perf_counter() - t0:.1f} s")
        done.append(path)
    stale = export(notebooks=done)
    if stale:
        print("exported:", ", ".join(stale))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nndl_helpers.nbtools", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("export", help="regenerate nndl_helpers/chapters/ from the #@save cells, delete orphans")
    sub.add_parser("check", help="fail if a chapter module differs from its notebook or is orphaned")
    r = sub.add_parser("run", help="execute notebooks in place (quick profile, CPU), then export them")
    r.add_argument("notebooks", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "export":
        print("exported:", ", ".join(export()) or "nothing changed")
    elif args.cmd == "check":
        stale = export(check_only=True)
        if stale:
            print("stale or orphaned:", ", ".join(stale), "- run: python -m nndl_helpers.nbtools export")
            return 1
        print("all chapter modules match their notebooks")
    else:
        run(args.notebooks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
