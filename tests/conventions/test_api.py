"""The from-scratch API of CONTRIBUTING.md §2, enforced on every generated chapter module.

- one home per name: no public function or class is defined in two chapter modules;
- every public ``*_backward`` takes the gradients of its forward's outputs, then ``cache``, and
  its ``*_forward`` lives in the same module;
- every model class (one with ``forward`` and ``backward``) has ``params``, ``loss`` and ``__call__``;
- every public backward, loss and model of the NumPy modules is exercised by a parity test that
  compares it with torch.autograd.
"""
import ast
import re
from pathlib import Path

import pytest

from nndl_helpers import nbtools

TESTS = Path(__file__).resolve().parents[1] / "parity"
MODULES = sorted(nbtools.PACKAGE.glob("ch*.py"))
NUMPY_MODULES = [p for p in MODULES if not p.stem.endswith("_torch")]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _public_defs(path: Path):
    """Top-level public functions and classes defined (not imported) in a module."""
    return [n for n in _tree(path).body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]


def _parity_text() -> str:
    """All parity tests that use torch, as one text."""
    texts = [p.read_text(encoding="utf-8") for p in sorted(TESTS.glob("test_parity_*.py"))]
    return "\n".join(t for t in texts if re.search(r"^import torch", t, re.M))


def test_there_is_something_to_check():
    assert len(NUMPY_MODULES) >= 10


def test_one_home_per_name():
    homes = {}
    for path in MODULES:
        for node in _public_defs(path):
            homes.setdefault(node.name, []).append(path.stem)
    twice = {name: where for name, where in homes.items() if len(where) > 1}
    assert not twice, f"defined in more than one chapter module (import it from its home instead): {twice}"


def _backwards():
    for path in NUMPY_MODULES:
        for node in _public_defs(path):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_backward"):
                yield path, node


BACKWARDS = list(_backwards())


@pytest.mark.parametrize("path,node", BACKWARDS, ids=[f"{p.stem}.{n.name}" for p, n in BACKWARDS])
def test_backward_signature(path, node):
    """``x_backward(d<out>, [d<extra>, ...], cache, *, options)`` next to its ``x_forward``."""
    positional = [a.arg for a in node.args.posonlyargs + node.args.args]
    assert "cache" in positional, f"{node.name}{positional}: the forward's cache is passed as `cache`"
    grads = positional[:positional.index("cache")]
    assert grads and all(g.startswith("d") for g in grads), \
        f"{node.name}{positional}: the upstream gradients (d...) come first, then the cache"
    after = positional[positional.index("cache") + 1:]
    defaults = len(node.args.defaults)
    assert len(after) <= defaults, f"{node.name}: arguments after `cache` must be optional"
    forward = node.name[: -len("_backward")] + "_forward"
    names = {n.name for n in _public_defs(path)}
    assert forward in names, f"{node.name} has no {forward} in {path.stem}"


def _models():
    for path in NUMPY_MODULES:
        for node in _public_defs(path):
            if isinstance(node, ast.ClassDef):
                methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
                if {"forward", "backward"} <= methods:
                    yield path, node, methods


MODELS = list(_models())


def test_there_are_models():
    assert len(MODELS) >= 4, [n.name for _, n, _ in MODELS]


@pytest.mark.parametrize("path,node,methods", MODELS, ids=[f"{p.stem}.{n.name}" for p, n, _ in MODELS])
def test_model_interface(path, node, methods):
    assert {"loss", "__call__"} <= methods, f"{node.name} needs .loss(...) -> (loss, grads) and __call__ -> output"
    assigns = {t.attr for f in ast.walk(node) if isinstance(f, (ast.Assign, ast.AnnAssign))
               for t in (f.targets if isinstance(f, ast.Assign) else [f.target])
               if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    props = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
    assert "params" in assigns | props, f"{node.name} keeps its arrays in self.params"
    backward = next(f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "backward")
    args = [a.arg for a in backward.args.args]
    assert "cache" in args, f"{node.name}.backward{args} takes the forward's cache"


def _needs_parity():
    for path in NUMPY_MODULES:
        for node in _public_defs(path):
            name = node.name
            if isinstance(node, ast.FunctionDef) and (name.endswith("_backward") or name.endswith("_loss")):
                yield path.stem, name
            elif isinstance(node, ast.ClassDef) and any(n for _, n, _ in MODELS if n is node):
                yield path.stem, name


NEEDS_PARITY = list(_needs_parity())


def _registries(module: str) -> dict[str, set[str]]:
    """UPPER_CASE dicts of a module (e.g. ACTIVATIONS) -> the names of the functions they hold:
    a parity test that loops over the registry exercises every one of them."""
    out = {}
    for node in _tree(nbtools.PACKAGE / f"{module}.py").body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.isupper():
                    out[target.id] = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
    return out


@pytest.mark.parametrize("module,name", NEEDS_PARITY, ids=[f"{m}.{n}" for m, n in NEEDS_PARITY])
def test_every_backward_loss_and_model_has_a_parity_test(module, name):
    text = _parity_text()
    via = [reg for reg, names in _registries(module).items() if name in names and re.search(rf"\b{reg}\b", text)]
    assert via or re.search(rf"\b{re.escape(name)}\b", text), \
        f"{module}.{name} is not exercised by any tests/parity/test_parity_*.py that compares with torch"
