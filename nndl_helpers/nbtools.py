"""Keep notebooks and the code later chapters reuse in step.

A code cell whose first line is ``#@save`` is *taught* in its notebook and
*reused* by later ones. ``export`` copies those cells, verbatim and in order,
into ``nndl_helpers/chNN.py`` (``02_linear_regression.ipynb`` -> ``ch02.py``),
so a later notebook can ``from nndl_helpers.ch04 import affine_forward``.
The notebook stays the one source; a test proves the module matches it.

    python -m nndl_helpers.nbtools export            # regenerate every chNN.py
    python -m nndl_helpers.nbtools check             # exit 1 if any is stale
    python -m nndl_helpers.nbtools run notebooks/03_linear_models.ipynb
        # execute in place (quick profile, CPU), strip widget state, export
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
PACKAGE = REPO / "nndl_helpers"
MARKER = "#@save"
_NAME = re.compile(r"^(\d\d[a-z]?)_\w+\.ipynb$")


def module_name(notebook: Path) -> str | None:
    m = _NAME.match(notebook.name)
    return f"ch{m.group(1)}" if m else None


def saved_cells(notebook: Path) -> list[str]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        first, _, rest = src.partition("\n")
        if first.strip() == MARKER:
            out.append(rest.strip("\n"))
    return out


def render_module(notebook: Path) -> str | None:
    cells = saved_cells(notebook)
    if not cells:
        return None
    header = (
        f'"""Code taught in notebooks/{notebook.name}, reused by later notebooks.\n\n'
        f"Generated from the notebook's ``{MARKER}`` cells by ``python -m nndl_helpers.nbtools export``.\n"
        f'Do not edit by hand: change the notebook and export again (a test checks they agree).\n"""\n'
    )
    return header + "\n\n\n".join(cells) + "\n"


def export(check_only: bool = False, notebooks: list[Path] | None = None) -> list[str]:
    """Write (or, with ``check_only``, compare) the chNN.py of ``notebooks`` (default: all).

    Returns the names of the modules that were (or would be) rewritten.
    """
    stale = []
    for nb in sorted(notebooks if notebooks is not None else NOTEBOOKS.glob("*.ipynb")):
        name = module_name(nb)
        text = render_module(nb) if name else None
        if text is None:
            continue
        target = PACKAGE / f"{name}.py"
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != text:
            stale.append(name)
            if not check_only:
                target.write_text(text, encoding="utf-8")
    return stale


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
    for key, value in RUNTIME_ENV.items():  # the kernels inherit them, as under `make lab`
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
    sub.add_parser("export", help="regenerate nndl_helpers/chNN.py from #@save cells")
    sub.add_parser("check", help="fail if any chNN.py differs from its notebook")
    r = sub.add_parser("run", help="execute notebooks in place (quick profile, CPU), then export them")
    r.add_argument("notebooks", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "export":
        print("exported:", ", ".join(export()) or "nothing changed")
    elif args.cmd == "check":
        stale = export(check_only=True)
        if stale:
            print("stale:", ", ".join(stale), "- run: python -m nndl_helpers.nbtools export")
            return 1
        print("all exported modules match their notebooks")
    else:
        run(args.notebooks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
