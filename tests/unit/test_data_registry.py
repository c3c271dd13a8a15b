"""Every data file a notebook asks for, in either profile, is in the registry and can be obtained.

The notebooks choose their data per profile in plain Python, e.g.

    PROFILE = nh.get_profile(device)
    QUICK = PROFILE == "quick"
    TANG_CORPUS = "tangshi" if QUICK else "quantangshi"
    ...
    poems = nh.load_tang_poems(TANG_CORPUS)

so this test reads each notebook's code cells with ``ast`` and evaluates, for
PROFILE = "quick" and PROFILE = "full", the arguments of every call to a loader
of registry files (``data.FILE_LOADERS``). It evaluates only what can be known
without running the notebook: literals, the names that module-level code binds
to such values (``get_profile(...)`` stands for the profile), ``if``/``else``
on them, ``for`` loops over literal sequences, and the notebook's own functions
called with such values (``prepare("cmn-eng", ...)``). A call whose data
cannot be determined that way fails the test, so a new request is never
silently missed: rewrite it so that its data is visible, or teach this walker
the new pattern.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import json
import operator
import re
from pathlib import Path

import pytest

from nndl_helpers import data as D

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
PROFILES = ("quick", "full")


class Unknown:
    """A value the walker cannot know (it depends on run time); shows the source it came from."""

    def __init__(self, source: str):
        self.source = source

    def __repr__(self):
        return f"<unknown: {self.source}>"


class _Unresolved(Exception):
    pass


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
            ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not}


def evaluate(node: ast.AST, env: dict, profile: str):
    """The value of a side-effect-free expression, or raise _Unresolved."""
    try:
        return _evaluate(node, env, profile)
    except (TypeError, KeyError, IndexError, ValueError, ZeroDivisionError, OverflowError) as e:
        raise _Unresolved(f"{ast.unparse(node)} ({type(e).__name__})") from e


def _evaluate(node: ast.AST, env: dict, profile: str):
    def ev(n):
        return _evaluate(n, env, profile)

    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env and not isinstance(env[node.id], Unknown):
            return env[node.id]
        raise _Unresolved(node.id)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = [ev(e) for e in node.elts]
        return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.IfExp):
        return ev(node.body) if ev(node.test) else ev(node.orelse)
    if isinstance(node, ast.BoolOp):
        values = [ev(v) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
        value = ev(node.operand)
        return {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos}[type(node.op)](value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](ev(node.left), ev(node.right))
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = ev(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = ev(right_node)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Subscript):
        return ev(node.value)[ev(node.slice)]
    if isinstance(node, ast.JoinedStr):  # f-strings of known parts
        return "".join(str(ev(v.value)) if isinstance(v, ast.FormattedValue) else v.value for v in node.values)
    if isinstance(node, ast.Call) and _called_name(node) == "get_profile":
        return profile  # the profile switch itself
    raise _Unresolved(ast.unparse(node))


def _called_name(call: ast.Call) -> str | None:
    """``f`` for ``f(...)``, ``nh.f(...)`` and ``nndl_helpers.data.f(...)``."""
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _stored_names(node: ast.AST) -> set[str]:
    """Every name that ``node`` (a statement) binds, nested functions' bodies excepted."""
    names = set()
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
            continue
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in n.names)
        todo.extend(ast.iter_child_nodes(n))
    return names


@dataclasses.dataclass
class Request:
    notebook: str
    where: str        # "cell 46, line 1": cells counted from 0, markdown cells included
    call: str         # the call as written
    files: list       # [(data set, file name)] it reads; empty when a problem is set
    problem: str = ""


class Walker:
    """Walks one notebook's code for one profile, collecting its data requests."""

    MAX_DEPTH = 5  # notebook functions calling notebook functions

    def __init__(self, name: str, module: ast.Module, profile: str, where=lambda line: f"line {line}"):
        self.name, self.profile, self.where = name, profile, where
        functions = {s.name: s for s in module.body if isinstance(s, ast.FunctionDef)}
        # Only functions that reach a loader call, directly or through other such functions, are
        # worth entering at their call sites.
        calls = {name: {_called_name(n) for n in ast.walk(fn) if isinstance(n, ast.Call)}
                 for name, fn in functions.items()}
        reaching = {name for name, called in calls.items() if called & set(D.FILE_LOADERS)}
        while True:
            more = {name for name, called in calls.items() if called & reaching} - reaching
            if not more:
                break
            reaching |= more
        self.functions = {name: functions[name] for name in reaching}
        self.locals = {name: {n for s in functions[name].body for n in _stored_names(s)} for name in reaching}
        # names rebound from inside functions are never constants
        self.globals_rebound = {n for s in ast.walk(module) if isinstance(s, ast.Global) for n in s.names}
        self.requests: list[Request] = []
        self.evaluated_calls: set[int] = set()  # id() of loader calls evaluated at least once

    # statements -------------------------------------------------------------

    def run(self, body: list[ast.stmt], env: dict, depth: int = 0) -> None:
        for stmt in body:
            self.statement(stmt, env, depth)

    def statement(self, stmt: ast.stmt, env: dict, depth: int) -> None:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.forget(env, {stmt.name})  # its body runs only when called
            return
        if isinstance(stmt, ast.If):
            self.expressions(stmt.test, env, depth)
            try:
                taken = stmt.body if evaluate(stmt.test, env, self.profile) else stmt.orelse
            except _Unresolved:
                taken = None
            if taken is not None:  # a known condition, e.g. `if QUICK:`: only that branch runs
                self.run(taken, env, depth)
                return
            for branch in (stmt.body, stmt.orelse):  # either may run: see both, trust neither's bindings
                self.run(branch, dict(env), depth)
            self.forget(env, _stored_names(stmt))
            return
        if isinstance(stmt, ast.For):
            self.expressions(stmt.iter, env, depth)
            try:
                items = evaluate(stmt.iter, env, self.profile)
            except _Unresolved:
                items = None
            if not isinstance(items, (tuple, list, set, dict, str)):
                items = [Unknown(ast.unparse(stmt.iter))]  # the body still runs, with the target unknown
            for item in items:  # e.g. `for pair in ("cmn-eng", "fra-eng"):`
                inner = dict(env)
                self.bind(stmt.target, item, inner)
                self.run(stmt.body + stmt.orelse, inner, depth)
            self.forget(env, _stored_names(stmt))
            return
        if isinstance(stmt, (ast.While, ast.With, ast.AsyncWith, ast.Try)):
            if isinstance(stmt, ast.While):
                self.expressions(stmt.test, env, depth)
            for item in getattr(stmt, "items", []):
                self.expressions(item.context_expr, env, depth)
            blocks = [stmt.body, getattr(stmt, "orelse", []), getattr(stmt, "finalbody", [])]
            blocks += [h.body for h in getattr(stmt, "handlers", [])]
            for block in blocks:
                self.run(block, dict(env), depth)
            self.forget(env, _stored_names(stmt))
            return
        self.expressions(stmt, env, depth)
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            try:
                value = evaluate(stmt.value, env, self.profile)
            except _Unresolved:
                value = Unknown(ast.unparse(stmt.value))
            for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                self.bind(target, value, env)
        else:
            self.forget(env, _stored_names(stmt))

    def bind(self, target: ast.AST, value, env: dict) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = Unknown(target.id) if target.id in self.globals_rebound else value
        elif isinstance(target, (ast.Tuple, ast.List)) and not isinstance(value, Unknown) \
                and hasattr(value, "__len__") and len(value) == len(target.elts) \
                and not any(isinstance(e, ast.Starred) for e in target.elts):
            for element, item in zip(target.elts, value):
                self.bind(element, item, env)
        else:
            self.forget(env, _stored_names(target))

    @staticmethod
    def forget(env: dict, names) -> None:
        for name in names:
            env[name] = Unknown(name)

    # expressions ------------------------------------------------------------

    def expressions(self, node: ast.AST, env: dict, depth: int) -> None:
        """Look at every call in ``node``: loader calls are requests; notebook functions are entered."""
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            name = _called_name(call)
            if name in D.FILE_LOADERS:
                self.loader_call(name, call, env)
            elif isinstance(call.func, ast.Name) and name in self.functions and depth < self.MAX_DEPTH:
                self.enter(self.functions[name], call, env, depth)

    def arguments(self, call: ast.Call, env: dict):
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            raise _Unresolved("*args or **kwargs")

        def value(node):
            try:
                return evaluate(node, env, self.profile)
            except _Unresolved:
                return Unknown(ast.unparse(node))

        return [value(a) for a in call.args], {k.arg: value(k.value) for k in call.keywords}

    def loader_call(self, loader: str, call: ast.Call, env: dict) -> None:
        self.evaluated_calls.add(id(call))
        request = Request(self.name, self.where(call.lineno), ast.unparse(call), [])
        try:
            args, kwargs = self.arguments(call, env)
            request.files = D.files_requested(loader, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - whatever it is, the request cannot be checked
            request.problem = f"cannot tell which data this reads ({type(e).__name__}: {e})"
        self.requests.append(request)

    def enter(self, fn: ast.FunctionDef, call: ast.Call, env: dict, depth: int) -> None:
        """Walk ``fn``'s body with its parameters bound to this call's (evaluated) arguments."""
        local = dict(env)
        # its own assignments shadow module names; unknown until assigned in the body
        self.forget(local, self.locals[fn.name])
        params = fn.args.posonlyargs + fn.args.args
        try:
            args, kwargs = self.arguments(call, env)
        except _Unresolved:
            args, kwargs = [], {}
        defaults = dict(zip([p.arg for p in params][len(params) - len(fn.args.defaults):], fn.args.defaults))
        defaults.update({p.arg: d for p, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None})
        for i, p in enumerate(params + fn.args.kwonlyargs):
            if i < len(args) and p in params:
                local[p.arg] = args[i]
            elif p.arg in kwargs:
                local[p.arg] = kwargs[p.arg]
            elif p.arg in defaults:
                try:
                    local[p.arg] = evaluate(defaults[p.arg], env, self.profile)
                except _Unresolved:
                    local[p.arg] = Unknown(p.arg)
            else:
                local[p.arg] = Unknown(p.arg)
        for extra in (fn.args.vararg, fn.args.kwarg):
            if extra is not None:
                local[extra.arg] = Unknown(extra.arg)
        self.run(fn.body, local, depth + 1)

    def unreached(self, module: ast.Module) -> None:
        """Loader calls inside functions never called directly (callbacks, ...): nothing is known
        of their arguments, so evaluate them with an empty environment and let that fail loudly."""
        for call in (n for n in ast.walk(module) if isinstance(n, ast.Call)):
            if _called_name(call) in D.FILE_LOADERS and id(call) not in self.evaluated_calls:
                self.loader_call(_called_name(call), call, {})


_MAGIC = re.compile(r"^\s*[%!]")


@functools.lru_cache(maxsize=None)  # parsed once for both profiles; the walker does not change it
def notebook_module(path: Path):
    """The notebook's code cells, in order, as one module (IPython magics and shell lines made
    ``pass``), and a function turning the module's line numbers into "cell C, line L"."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    body, starts = [], []  # starts: (first line in the module, cell index)
    offset = 0
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        lines = [re.sub(r"\S.*", "pass", line) if _MAGIC.match(line) else line for line in source.splitlines()]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError as e:
            raise AssertionError(f"{path.name}, cell {index}: cannot parse it to look for data requests: {e}")
        ast.increment_lineno(tree, offset)
        body.extend(tree.body)
        starts.append((offset + 1, index))
        offset += len(lines)

    def where(line: int) -> str:
        first, index = [s for s in starts if s[0] <= line][-1]
        return f"cell {index}, line {line - first + 1}"

    return ast.Module(body=body, type_ignores=[]), where


def notebook_requests(path: Path, profile: str) -> list[Request]:
    module, where = notebook_module(path)
    walker = Walker(path.name, module, profile, where)
    walker.run(module.body, {})
    walker.unreached(module)
    return walker.requests


def problems_with(requests: list[Request]) -> list[str]:
    """What is wrong with these requests: unknowable data, unregistered files, files with no source."""
    out = []
    for r in requests:
        where = f"{r.notebook}, {r.where}: {r.call}"
        if r.problem:
            out.append(f"{where}: {r.problem}")
            continue
        for dataset, filename in r.files:
            try:
                rf = D.DATASETS[dataset].file(filename)
            except KeyError as e:
                out.append(f"{where}: {dataset}/{filename} is not in the registry ({e})")
                continue
            out += [f"{where}: {rf.relpath}: {p}" for p in problems_with_entry(rf)]
    return out


def problems_with_entry(rf: D.RemoteFile) -> list[str]:
    out = []
    if not rf.urls and rf.builder is None:
        out.append("no way to obtain it: no canonical URL and no builder")
    if not re.fullmatch(r"[0-9a-f]{64}", rf.sha256):
        out.append(f"no valid SHA-256 ({rf.sha256!r})")
    if rf.builder is not None:
        try:
            if not callable(rf.builder.resolve()):
                out.append(f"builder {rf.builder.function} is not callable")
        except (ImportError, AttributeError) as e:
            out.append(f"builder {rf.builder.function} cannot be imported ({e})")
        if not re.fullmatch(r"sha(256|384|512)-[A-Za-z0-9+/]+=*", rf.builder.input_integrity):
            out.append(f"builder input has no valid integrity hash ({rf.builder.input_integrity!r})")
        if not rf.builder.input_url.startswith("https://"):
            out.append(f"builder input is not an https URL ({rf.builder.input_url!r})")
    return out


# ------------------------------------------------------------------ the real notebooks and registry


@pytest.fixture(scope="module")
def requests_by_profile() -> dict[str, list[Request]]:
    return {profile: [r for nb in NOTEBOOKS for r in notebook_requests(nb, profile)] for profile in PROFILES}


@pytest.mark.parametrize("profile", PROFILES)
def test_every_notebook_request_can_be_obtained(requests_by_profile, profile):
    assert NOTEBOOKS, "no notebooks found"
    problems = problems_with(requests_by_profile[profile])
    assert not problems, f"profile {profile!r}:\n" + "\n".join(problems)


def test_the_walker_sees_each_profile_s_choices(requests_by_profile):
    """Guards the walker itself: it must find the requests we know of, per profile."""
    files = {p: {f for r in requests_by_profile[p] for f in r.files} for p in PROFILES}
    both = {
        ("mnist", "train-images-idx3-ubyte.gz"), ("mnist", "t10k-labels-idx1-ubyte.gz"),
        ("fashion-mnist", "train-images-idx3-ubyte.gz"), ("fashion-mnist", "t10k-images-idx3-ubyte.gz"),
        ("timemachine", "timemachine.txt"), ("tinyshakespeare", "tinyshakespeare.txt"),
        ("cmn-eng", "cmn-eng.txt"), ("fra-eng", "fra-eng-10k.txt"),  # through notebook 15's prepare(pair, ...)
    }
    assert both <= files["quick"] and both <= files["full"]
    # notebook 08b: TANG_CORPUS = "tangshi" if QUICK else "quantangshi"; notebook 06 trains on the
    # regular poems of quantangshi in both profiles
    assert ("tangshi", "tangshi.txt") in files["quick"] - files["full"]
    quick = {(r.notebook, f) for r in requests_by_profile["quick"] for f in r.files}
    full = {(r.notebook, f) for r in requests_by_profile["full"] for f in r.files}
    quantangshi = ("quantangshi", "quantangshi.txt.gz")
    assert ("08b_transformer.ipynb", quantangshi) in full - quick
    assert ("06_recurrent_networks.ipynb", quantangshi) in full & quick


def test_every_registry_file_has_a_source_and_a_checksum():
    problems = [f"{rf.relpath}: {p}" for ds in D.DATASETS.values() for rf in ds.files for p in problems_with_entry(rf)]
    assert not problems, "\n".join(problems)


def test_every_loader_of_registry_files_is_known():
    """A new public function in data.py that calls fetch() must be in FILE_LOADERS, or the notebook
    walk above would not see what it reads."""
    module = ast.parse(Path(D.__file__).read_text(encoding="utf-8"))
    calling_fetch = {
        fn.name for fn in module.body if isinstance(fn, ast.FunctionDef) and not fn.name.startswith("_")
        and any(isinstance(n, ast.Call) and _called_name(n) == "fetch" for n in ast.walk(fn))
    }
    assert calling_fetch and calling_fetch <= set(D.FILE_LOADERS), calling_fetch - set(D.FILE_LOADERS)


# ------------------------------------------------------------------ the walker, on made-up notebooks


def write_notebook(path: Path, *cells: str) -> Path:
    code = [{"cell_type": "code", "source": c.splitlines(keepends=True), "metadata": {}, "outputs": [],
             "execution_count": None} for c in cells]
    markdown = {"cell_type": "markdown", "source": "# made up", "metadata": {}}
    nb = {"cells": code + [markdown], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


SETUP = """\
%matplotlib inline
import nndl_helpers as nh
device = nh.best_device()
PROFILE = nh.get_profile(device)
QUICK = PROFILE == "quick"
"""


def files_of(requests):
    return sorted({f for r in requests for f in r.files})


def test_walker_follows_profile_choices_loops_and_functions(tmp_path):
    nb = write_notebook(
        tmp_path / "nb.ipynb", SETUP,
        'CORPUS = "tinyshakespeare" if QUICK else "timemachine"\ntext = nh.load_text(CORPUS)',
        'if PROFILE == "full":\n    SPLIT = "test"\nelse:\n    SPLIT = "train"\nX, y = nh.load_mnist(split=SPLIT)',
        'def prepare(pair, n=None):\n    return nh.load_translation_pairs(pair)\n\nzh = prepare("cmn-eng")',
        'for name in ("mnist", "fashion-mnist"):\n    nh.load_mnist(name, "test", limit=10 if QUICK else None)',
        'nh.fetch("quantangshi", "LICENSE-chinese-poetry")',
    )
    quick, full = notebook_requests(nb, "quick"), notebook_requests(nb, "full")
    assert not problems_with(quick) and not problems_with(full)
    common = [("cmn-eng", "cmn-eng.txt"), ("quantangshi", "LICENSE-chinese-poetry")] + [
        (ds, f"t10k-{kind}") for ds in ("mnist", "fashion-mnist")
        for kind in ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz")]
    assert files_of(quick) == sorted(common + [("tinyshakespeare", "tinyshakespeare.txt"),
                                               ("mnist", "train-images-idx3-ubyte.gz"),
                                               ("mnist", "train-labels-idx1-ubyte.gz")])
    assert files_of(full) == sorted(common + [("timemachine", "timemachine.txt")])


def test_walker_flags_a_request_it_cannot_determine(tmp_path):
    nb = write_notebook(
        tmp_path / "nb.ipynb", SETUP,
        'import random\nname = random.choice(["mnist", "fashion-mnist"])\nnh.load_mnist(name)',
        'def on_click(button, corpus):\n    nh.load_tang_poems(corpus)',  # never called directly
    )
    problems = problems_with(notebook_requests(nb, "full"))
    assert len(problems) == 2
    assert "nb.ipynb, cell 1, line 3: nh.load_mnist(name): cannot tell which data this reads" in problems[0]
    assert "nh.load_tang_poems(corpus): cannot tell" in problems[1]


def test_a_request_for_a_file_with_no_source_fails(tmp_path, monkeypatch):
    """What this whole file is for: a notebook asking for a file nobody can obtain is caught."""
    orphan = D.RemoteFile("text", "orphan.txt", "0" * 64, note="no URL, no builder")
    monkeypatch.setitem(D.DATASETS, "orphan", D.Dataset("orphan", "", (orphan,), ""))
    nb = write_notebook(tmp_path / "nb.ipynb", SETUP,
                        'DATA = "tinyshakespeare" if QUICK else "orphan"\nnh.fetch(DATA)',
                        'nh.fetch("not-registered")')
    (quick,) = problems_with(notebook_requests(nb, "quick"))
    assert quick.startswith("nb.ipynb, cell 2, line 1: nh.fetch('not-registered'): cannot tell which data this "
                            "reads (KeyError: \"unknown data set 'not-registered'")
    full = problems_with(notebook_requests(nb, "full"))
    assert full[0] == ("nb.ipynb, cell 1, line 2: nh.fetch(DATA): text/orphan.txt: "
                       "no way to obtain it: no canonical URL and no builder")
    assert len(full) == 2 and full[1] == quick
