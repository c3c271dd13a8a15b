"""Run the notebooks under other numerics than this machine's, and measure how much their results move.

A reader's laptop picks another BLAS kernel, another thread count and other rounding than the
machine a notebook was written on. Two tools check that the course survives that:

    python -m nndl_helpers.portability check     # (make check-portable) the notebook tests, twice:
        # 1. another OpenBLAS kernel (and MKL / ATen instruction set), one thread per kernel;
        # 2. this machine's kernels, two threads per kernel.
    python -m nndl_helpers.portability spread notebooks/07_*.ipynb --seeds 0 1 2 --configs default other-kernel
        # runs each notebook with every seed in its source shifted by 0, 1, 2, under each numeric
        # configuration, and records every assert's verdict and the numbers it compares, so that
        # a threshold can be set from the measured spread (artifacts/spread/*.jsonl).

``check`` exits non-zero when a run fails; ``spread`` never fails on an assert, it records it.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .config import RUNTIME_ENV
from .metrics import METRICS_DIR_ENV

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts" / "spread"

# OpenBLAS kernels to switch to: the first one that differs from the kernel this machine picks.
# SandyBridge (AVX, no FMA) rounds differently from the FMA kernels most laptops use; the generic
# ARMV8 kernel differs from the tuned Neoverse / Apple ones.
_ALTERNATIVE_KERNELS = {"x86_64": ("SandyBridge", "Haswell"), "AMD64": ("SandyBridge", "Haswell"),
                        "aarch64": ("ARMV8", "NEOVERSEN1"), "arm64": ("ARMV8", "NEOVERSEN1")}


def current_blas_kernel() -> str | None:
    """The OpenBLAS kernel NumPy uses here (threadpoolctl's 'architecture'), or None."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for pool in threadpool_info():
        if pool.get("internal_api") == "openblas":
            return pool.get("architecture")
    return None


def alternative_kernel(current: str | None = None, machine: str | None = None) -> str | None:
    """An OpenBLAS kernel other than ``current`` that this processor can run, or None."""
    choices = _ALTERNATIVE_KERNELS.get(machine or platform.machine(), ())
    current = (current or "").lower()
    return next((k for k in choices if k.lower() != current), None)


def numeric_configs(current: str | None = None, machine: str | None = None) -> dict[str, dict[str, str]]:
    """Environment overrides of each numeric configuration, by name."""
    one = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    two = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    configs = {"default": dict(one), "two-threads": dict(two)}
    kernel = alternative_kernel(current if current is not None else current_blas_kernel(), machine)
    if kernel:
        other = dict(one, OPENBLAS_CORETYPE=kernel)
        if kernel == "SandyBridge":
            # PyTorch's MKL and its own vectorised kernels follow: AVX without FMA/AVX2.
            other.update(MKL_ENABLE_INSTRUCTIONS="AVX", ATEN_CPU_CAPABILITY="default")
        configs["other-kernel"] = other
    return configs


def _environment(overrides: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in RUNTIME_ENV.items():
        env.setdefault(key, value)
    env.pop("OPENBLAS_CORETYPE", None)  # a configuration sets it, or the machine's own kernel is used
    env.update(overrides)
    env.setdefault("NNDL_PROFILE", "quick")
    env.setdefault("NNDL_DEVICE", "cpu")
    # these runs shift seeds and change numerics: their metric files must not replace the real run's
    env.setdefault(METRICS_DIR_ENV, str(Path(tempfile.gettempdir()) / "nndl_portability_metrics"))
    return env


# --------------------------------------------------------------------------------------------
# check: the notebook tests under other numerics
# --------------------------------------------------------------------------------------------

def check(notebooks: list[str], configs: list[str], workers: int) -> int:
    available = numeric_configs()
    failed = []
    for name in configs:
        if name not in available:
            print(f"[portability] {name}: not available on this machine ({platform.machine()}), skipped")
            continue
        overrides = available[name]
        # Two threads per kernel want one kernel at a time on a small machine.
        n = 1 if overrides.get("OMP_NUM_THREADS") == "2" else workers
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *notebooks]
        if n > 1:
            cmd[3:3] = ["-n", str(n), "--dist", "loadscope"]
        shown = " ".join(f"{k}={v}" for k, v in overrides.items())
        print(f"[portability] {name}: {shown}\n[portability] $ {' '.join(cmd)}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call(cmd, cwd=REPO, env=_environment(overrides))
        print(f"[portability] {name}: {'passed' if rc == 0 else 'FAILED'} in {time.monotonic() - t0:.0f} s",
              flush=True)
        if rc:
            failed.append(name)
    print(f"[portability] {'all configurations passed' if not failed else 'failed: ' + ', '.join(failed)}")
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# spread: every assert's numbers over seeds and numeric configurations
# --------------------------------------------------------------------------------------------

_SEED_PATTERNS = [
    re.compile(r"\b(default_rng|manual_seed|seed_everything|RandomState)\((\d+)\)"),
    re.compile(r"\b(seed|random_state|data_seed)=(\d+)\b"),
]


def shift_seeds(source: str) -> str:
    """Add ``_SPREAD_SEED`` to every literal seed in ``source`` (the run's seed offset)."""
    source = _SEED_PATTERNS[0].sub(r"\1(\2 + _SPREAD_SEED)", source)
    return _SEED_PATTERNS[1].sub(r"\1=\2 + _SPREAD_SEED", source)


class _RecordAsserts(ast.NodeTransformer):
    """``assert test, msg`` -> ``_spread_assert(id, source, lambda: test, {operand: lambda: value})``."""

    def __init__(self, source: str, cell: int):
        self.source, self.cell, self.count = source, cell, 0

    def visit_Assert(self, node: ast.Assert):
        self.count += 1
        operands = {}
        for sub in ast.walk(node.test):
            if isinstance(sub, ast.Compare):
                for operand in [sub.left, *sub.comparators]:
                    if not isinstance(operand, ast.Constant):
                        operands.setdefault(ast.unparse(operand), operand)
        lam = lambda expr: ast.Lambda(  # noqa: E731
            args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]), body=expr)
        call = ast.Call(
            func=ast.Name("_spread_assert", ast.Load()),
            args=[ast.Constant(f"cell {self.cell} assert {self.count}"), ast.Constant(ast.unparse(node.test)),
                  lam(node.test),
                  ast.Dict(keys=[ast.Constant(k) for k in operands], values=[lam(v) for v in operands.values()])],
            keywords=[])
        return ast.copy_location(ast.Expr(call), node)


_RECORDER = '''
import json as _json, math as _math
_SPREAD_RECORDS = []
def _spread_assert(key, source, test, operands):
    try:
        ok = bool(test())
    except Exception as exc:
        ok = f"error: {type(exc).__name__}"
    values = {}
    for name, get in operands.items():
        try:
            v = get()
            v = float(v) if not isinstance(v, (str, bytes)) and getattr(v, "size", 1) == 1 else None
        except Exception:
            v = None
        if v is not None:
            values[name] = v if _math.isfinite(v) else str(v)
    _SPREAD_RECORDS.append({"assert": key, "source": source, "passed": ok, "values": values})
'''


def instrument(nb, seed_shift: int):
    """A copy of the notebook whose seeds are shifted and whose asserts record instead of raising."""
    import copy

    import nbformat

    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = shift_seeds(cell.source) if seed_shift else cell.source
        if "assert" in source:
            try:
                tree = ast.parse(source)
            except SyntaxError:  # IPython magics: leave the cell as it is
                pass
            else:
                tree = ast.fix_missing_locations(_RecordAsserts(source, index).visit(tree))
                source = ast.unparse(tree)
        cell.source = source
    nb.cells.insert(0, nbformat.v4.new_code_cell(f"_SPREAD_SEED = {seed_shift}\n{_RECORDER}"))
    nb.cells.append(nbformat.v4.new_code_cell("print('SPREAD' + _json.dumps(_SPREAD_RECORDS))"))
    return nb


def spread_one(notebook: Path, seed: int, config: str, timeout: int) -> list[dict]:
    """Execute one instrumented run in this process (its environment is the configuration's)."""
    import nbformat
    from nbclient import NotebookClient

    nb = instrument(nbformat.read(notebook, as_version=4), seed)
    t0 = time.monotonic()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(notebook.parent)}})
    client.execute()
    records, errors = [], []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and "SPREAD[" in out.get("text", ""):
                records = json.loads(out["text"].split("SPREAD", 1)[1])
            if out.get("output_type") == "error":
                errors.append(f"{out['ename']}: {out['evalue'][:200]}")
    seconds = time.monotonic() - t0
    for r in records:
        r.update(notebook=notebook.name, seed=seed, config=config, seconds=round(seconds, 1))
    if errors:
        records.append({"notebook": notebook.name, "seed": seed, "config": config, "assert": "cell errors",
                        "source": "; ".join(errors), "passed": False, "values": {}})
    return records


def spread(notebooks: list[str], seeds: list[int], configs: list[str], jobs: int, out: Path,
           timeout: int) -> int:
    """Run every (notebook, seed, configuration), ``jobs`` at a time, each in a process of its own.

    A run's numeric configuration lives in its environment, which must be set before NumPy and the
    kernel start; separate processes keep the runs from sharing (and racing on) one environment.
    """
    available = numeric_configs()
    tasks = [(Path(nb), s, c) for c in configs if c in available for nb in notebooks for s in seeds]
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"[spread] {len(tasks)} runs, {jobs} at a time -> {out}", flush=True)

    def work(task):
        nb, s, c = task
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "nndl_helpers.portability", "one", str(nb), "--seed", str(s),
               "--config", c, "--timeout", str(timeout)]
        try:
            done = subprocess.run(cmd, cwd=REPO, env=_environment(available[c]), capture_output=True,
                                  text=True, timeout=timeout * 2)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RECORDS")]
            records = json.loads(lines[-1][len("RECORDS"):]) if lines else []
            problem = None if lines else (done.stderr.strip().splitlines() or ["no output"])[-1]
        except subprocess.TimeoutExpired:
            records, problem = [], f"timed out after {timeout * 2} s"
        if problem:
            records = [{"notebook": nb.name, "seed": s, "config": c, "assert": "cell errors",
                        "source": problem, "passed": False, "values": {}}]
        failed = [r["assert"] for r in records if r["passed"] is not True]
        print(f"[spread] {nb.name} seed+{s} {c}: {len(records)} asserts, {len(failed)} failed "
              f"{failed[:6]} ({time.monotonic() - t0:.0f} s)", flush=True)
        with open(out, "a", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(work, tasks))
    return 0


def summarise(path: Path, only_failing: bool = False) -> None:
    """Per assert: how many runs passed, and the range of each number it compares."""
    rows: dict[tuple, list[dict]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows.setdefault((r["notebook"], r["assert"]), []).append(r)
    for (nb, key), runs in sorted(rows.items()):
        passed = sum(r["passed"] is True for r in runs)
        if only_failing and passed == len(runs):
            continue
        print(f"{nb} {key}: {passed}/{len(runs)} passed   {runs[0]['source'][:150]}")
        names = {n for r in runs for n in r["values"]}
        for name in sorted(names):
            vals = [r["values"][name] for r in runs if isinstance(r["values"].get(name), float)]
            if vals:
                detail = " ".join(f"{r['config'][:5]}/{r['seed']}={r['values'][name]:.4g}" for r in runs
                                  if isinstance(r["values"].get(name), float))
                print(f"    {name[:60]:<60s} min {min(vals):.4g} max {max(vals):.4g}   {detail}")


_NUMBER = r"(\d+(?:\.\d*)?(?:e[+-]?\d+)?)"


def _without_threshold_arithmetic(name: str, value: float) -> tuple[str, float]:
    """``x + 0.02`` -> ``x`` and ``5 * x`` -> ``x``: list the measured number, not the threshold built from it."""
    m = re.fullmatch(rf"(.+) ([+-]) {_NUMBER}", name)
    if m:
        c = float(m.group(3))
        return m.group(1), value - c if m.group(2) == "+" else value + c
    m = re.fullmatch(rf"{_NUMBER} \* (.+)", name)
    if m and float(m.group(1)):
        return m.group(2), value / float(m.group(1))
    m = re.fullmatch(rf"(.+) / {_NUMBER}", name)
    if m and float(m.group(2)):
        return m.group(1), value * float(m.group(2))
    return name, value


def markdown_table(path: Path, notebook: str) -> str:
    """The numbers one notebook's asserts compare, with their measured ranges, as a Markdown table.

    Only numbers that moved between runs are listed (the others are deterministic).
    """
    values: dict[str, list[float]] = {}
    runs = set()
    order = lambda r: [int(x) for x in re.findall(r"\d+", r["assert"])]  # noqa: E731
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    records = sorted((r for r in records if r["notebook"] == notebook and r["assert"] != "cell errors"), key=order)
    for r in records:
        runs.add((r["seed"], r["config"]))
        for name, v in r["values"].items():
            if isinstance(v, float):
                name, v = _without_threshold_arithmetic(name, v)
                values.setdefault(name, []).append(v)
    configs = sorted({c for _, c in runs})
    seeds = sorted({s for s, _ in runs})
    # constants of the setup cell (targets) are thresholds, not measurements
    rows = [f"| `{name.replace('|', '/')}` | {min(v):.4g} | {max(v):.4g} |" for name, v in values.items()
            if max(v) - min(v) > 1e-12 * max(1.0, abs(max(v))) and not re.fullmatch(r"[A-Z][A-Z0-9_]*", name)]
    head = (f"Measured over {len(runs)} runs (seed offsets {', '.join(map(str, seeds))}; numeric configurations "
            f"{', '.join(configs)}; `python -m nndl_helpers.portability spread`), the numbers the checks below "
            "compare moved within these ranges:\n\n| number | lowest | highest |\n|---|---|---|\n")
    return head + "\n".join(rows) + "\n"


SPREAD_MARKER = "<!-- measured spread: python -m nndl_helpers.portability annotate -->"


def annotate(path: Path, notebooks: list[str]) -> None:
    """Put each notebook's spread table in a Markdown cell just before its checks cell.

    The checks cell is the code cell with the most asserts; a table written earlier (marked by
    SPREAD_MARKER) is replaced, so re-running after a new spread measurement updates it.
    """
    import nbformat

    for name in notebooks:
        notebook = Path(name)
        if notebook.stem == "playground":
            continue
        nb = nbformat.read(notebook, as_version=4)
        counts = [c.source.count("assert ") if c.cell_type == "code" else 0 for c in nb.cells]
        checks = max(range(len(counts)), key=counts.__getitem__)
        table = markdown_table(path, notebook.name)
        if table.count("\n| `") == 0:
            continue
        text = (f"{SPREAD_MARKER}\n**How far these checks are from failing.** A check on a trained result must hold "
                "on a reader's machine too, where another BLAS kernel, thread count or seed changes the run. "
                f"{table}")
        if "error" in table:
            text += ("\nThe seed offsets also draw other random inputs for the gradient checks. On some draws a "
                     "centred difference straddles a kink (ReLU, max-pooling, $|w|$) or divides rounding noise by a "
                     "tiny gradient entry, which shows up as a large error in this table; the notebook's own draws "
                     "are the ones its checks judge, on every machine.\n")
        before = nb.cells[checks - 1]
        if before.cell_type == "markdown" and before.source.startswith(SPREAD_MARKER):
            before.source = text
        else:
            nb.cells.insert(checks, nbformat.v4.new_markdown_cell(text))
        nbformat.write(nb, notebook)
        print(f"[spread] {notebook.name}: table before cell {checks}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nndl_helpers.portability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p_check = sub.add_parser("check", help="run the notebook tests under other numerics")
    p_check.add_argument("notebooks", nargs="*", default=["notebooks"])
    p_check.add_argument("--configs", nargs="+", default=["other-kernel", "two-threads"])
    p_check.add_argument("-n", "--workers", type=int, default=2)
    p_spread = sub.add_parser("spread", help="record every assert's numbers over seeds and configurations")
    p_spread.add_argument("notebooks", nargs="+")
    p_spread.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p_spread.add_argument("--configs", nargs="+", default=["default", "other-kernel"])
    p_spread.add_argument("-j", "--jobs", type=int, default=2)
    p_spread.add_argument("--timeout", type=int, default=900)
    p_spread.add_argument("--out", type=Path, default=ARTIFACTS / "spread.jsonl")
    p_one = sub.add_parser("one", help="one instrumented run in this environment (used by spread)")
    p_one.add_argument("notebook", type=Path)
    p_one.add_argument("--seed", type=int, default=0)
    p_one.add_argument("--config", default="as-is")
    p_one.add_argument("--timeout", type=int, default=900)
    p_sum = sub.add_parser("summary", help="summarise a spread file")
    p_sum.add_argument("path", type=Path, nargs="?", default=ARTIFACTS / "spread.jsonl")
    p_sum.add_argument("--failing", action="store_true", help="only asserts that failed somewhere")
    p_sum.add_argument("--markdown", metavar="NOTEBOOK", help="a Markdown table of one notebook's varying checks")
    p_ann = sub.add_parser("annotate", help="write each notebook's spread table before its checks cell")
    p_ann.add_argument("notebooks", nargs="+")
    p_ann.add_argument("--spread", type=Path, default=ARTIFACTS / "spread.jsonl")
    sub.add_parser("configs", help="print the numeric configurations of this machine")
    args = parser.parse_args(argv)
    if args.command in (None, "check"):
        if args.command is None:
            args = p_check.parse_args([])
        return check(args.notebooks, args.configs, args.workers)
    if args.command == "spread":
        return spread(args.notebooks, args.seeds, args.configs, args.jobs, args.out, args.timeout)
    if args.command == "one":
        print("RECORDS" + json.dumps(spread_one(args.notebook, args.seed, args.config, args.timeout),
                                     ensure_ascii=False))
        return 0
    if args.command == "annotate":
        annotate(args.spread, args.notebooks)
        return 0
    if args.command == "summary":
        if args.markdown:
            print(markdown_table(args.path, Path(args.markdown).name))
            return 0
        summarise(args.path, args.failing)
        return 0
    print(f"OpenBLAS kernel here: {current_blas_kernel()}")
    for name, env in numeric_configs().items():
        print(f"{name:<13s} {' '.join(f'{k}={v}' for k, v in env.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
