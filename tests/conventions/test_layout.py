"""The package's architecture: plumbing apart from generated chapter code, NumPy apart from PyTorch.

``nndl_helpers/*.py`` is hand-written plumbing; ``nndl_helpers/chapters/chNN.py`` is the NumPy
code notebook NN teaches (``#@save`` cells) and ``chNN_torch.py`` its PyTorch code (``#@save
torch`` cells). See nndl_helpers.nbtools and CONTRIBUTING.md.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nndl_helpers import nbtools

CHAPTERS = sorted(p for p in nbtools.PACKAGE.glob("ch*.py"))
NUMPY_MODULES = [p for p in CHAPTERS if not p.stem.endswith("_torch")]
TORCH_MODULES = [p for p in CHAPTERS if p.stem.endswith("_torch")]


def test_there_are_chapter_modules():
    assert len(NUMPY_MODULES) >= 10 and TORCH_MODULES


def test_plumbing_is_not_generated():
    plumbing = sorted(nbtools.PACKAGE.parent.glob("*.py"))
    assert plumbing and not [p.name for p in plumbing if p.name.startswith("ch")], \
        "chapter code belongs in nndl_helpers/chapters/"
    for path in plumbing:
        assert not re.match(r'"""(NumPy|PyTorch) code taught in notebooks/', path.read_text(encoding="utf-8")), path.name


@pytest.mark.parametrize("path", NUMPY_MODULES, ids=[p.stem for p in NUMPY_MODULES])
def test_numpy_module_imports_without_torch(path: Path):
    """Importing a NumPy chapter module (and the plumbing it pulls in) leaves torch unimported."""
    code = (f"import sys; import nndl_helpers.chapters.{path.stem}; "
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')); "
            "print(bad[:3]); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{path.stem} imports torch: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("path", NUMPY_MODULES, ids=[p.stem for p in NUMPY_MODULES])
def test_numpy_module_never_names_torch(path: Path):
    """Not even inside a function: a NumPy chapter module must run where torch is not installed."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} & {"torch", "nn", "F"}
    imports = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imports += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not names and not [m for m in imports if m.split(".")[0] == "torch"], \
        f"{path.stem} uses torch: mark that cell '#@save torch'"
    assert not [m for m in imports if m.startswith("nndl_helpers.chapters.") and m.endswith("_torch")]


@pytest.mark.parametrize("path", TORCH_MODULES, ids=[p.stem for p in TORCH_MODULES])
def test_torch_module_imports(path: Path):
    result = subprocess.run([sys.executable, "-c", f"import nndl_helpers.chapters.{path.stem}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def _demo(tmp_path, monkeypatch, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) if not c.startswith("md:") else nbformat.v4.new_markdown_cell(c[3:])
                for c in cells]
    (tmp_path / "notebooks").mkdir(exist_ok=True)
    nbformat.write(nb, tmp_path / "notebooks" / "07_demo.ipynb")
    pkg = tmp_path / "pkg"
    pkg.mkdir(exist_ok=True)
    monkeypatch.setattr(nbtools, "NOTEBOOKS", tmp_path / "notebooks")
    monkeypatch.setattr(nbtools, "PACKAGE", pkg)
    return pkg


def test_export_takes_marked_cells_verbatim(tmp_path, monkeypatch):
    pkg = _demo(tmp_path, monkeypatch, [
        "md:#@save is only for code",
        "#@save\nimport numpy as np\n\ndef f(x):\n    return 2 * x",
        "f(3)  # not saved",
        "#@save\ndef g(x):\n    return f(x) + 1\n",
    ])
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "notebooks" / "scratch.ipynb")
    assert nbtools.export(check_only=True) == ["ch07"] and not (pkg / "ch07.py").exists()
    assert nbtools.export() == ["ch07"]
    namespace = {}
    exec((pkg / "ch07.py").read_text(), namespace)
    assert namespace["g"](3) == 7 and "not saved" not in (pkg / "ch07.py").read_text()
    assert nbtools.export(check_only=True) == [] and not (pkg / "ch07_torch.py").exists()


def test_torch_cells_go_to_their_own_module_and_import_what_they_use(tmp_path, monkeypatch):
    pkg = _demo(tmp_path, monkeypatch, [
        "#@save\nimport math\nimport numpy as np\n\nSCALE = 3\n\ndef f(x):\n    return SCALE * np.asarray(x)",
        "#@save torch\nimport torch\n\ndef g(x):\n    return torch.as_tensor(f(x) + math.pi)",
        "#@save\ndef h():\n    return 1",
    ])
    assert sorted(nbtools.export()) == ["ch07", "ch07_torch"]
    numpy_text, torch_text = (pkg / "ch07.py").read_text(), (pkg / "ch07_torch.py").read_text()
    assert "torch" not in numpy_text.split('"""', 2)[2] and "def h" in numpy_text
    assert "import math" in torch_text and "from nndl_helpers.chapters.ch07 import f" in torch_text
    assert "def h" not in torch_text and "SCALE" not in torch_text.split("import f")[1].split("def g")[0]


def test_unknown_marker_is_an_error(tmp_path, monkeypatch):
    _demo(tmp_path, monkeypatch, ["#@save jax\nx = 1"])
    with pytest.raises(ValueError, match="unknown marker"):
        nbtools.export(check_only=True)


def test_export_removes_orphans_and_check_reports_them(tmp_path, monkeypatch):
    pkg = _demo(tmp_path, monkeypatch, ["#@save\nx = 1"])
    nbtools.export()
    for name in ("ch05a.py", "ch05a_torch.py"):      # modules of a notebook that lost its #@save cells
        (pkg / name).write_text("x = 2\n")
    (pkg / "__init__.py").write_text("")           # not a chapter module: left alone
    assert sorted(nbtools.export(check_only=True)) == ["ch05a", "ch05a_torch"]
    assert (pkg / "ch05a.py").exists()
    assert nbtools.main(["check"]) == 1
    assert sorted(nbtools.export()) == ["ch05a", "ch05a_torch"]
    assert not (pkg / "ch05a.py").exists() and not (pkg / "ch05a_torch.py").exists()
    assert (pkg / "__init__.py").exists() and (pkg / "ch07.py").exists()
    assert nbtools.main(["check"]) == 0
