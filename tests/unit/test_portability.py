"""The tools that rerun notebooks under other numerics and record how far their checks move."""
import json
from pathlib import Path

import nbformat
import pytest

from nndl_helpers import metrics, portability


def test_alternative_kernel_differs_from_the_current_one():
    assert portability.alternative_kernel("Haswell", "x86_64") == "SandyBridge"
    assert portability.alternative_kernel("SandyBridge", "x86_64") == "Haswell"
    assert portability.alternative_kernel("neoversen1", "aarch64") == "ARMV8"
    assert portability.alternative_kernel("Haswell", "riscv64") is None


def test_numeric_configs_pin_threads_and_switch_kernels():
    configs = portability.numeric_configs("Zen", "x86_64")
    assert configs["default"]["OPENBLAS_NUM_THREADS"] == "1" and "OPENBLAS_CORETYPE" not in configs["default"]
    assert configs["two-threads"]["OMP_NUM_THREADS"] == "2"
    other = configs["other-kernel"]
    assert other["OPENBLAS_CORETYPE"] == "SandyBridge" and other["MKL_ENABLE_INSTRUCTIONS"] == "AVX"
    assert "other-kernel" not in portability.numeric_configs("Haswell", "riscv64")


def test_environment_drops_the_machines_own_kernel_choice(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    assert "OPENBLAS_CORETYPE" not in portability._environment({})
    assert portability._environment({"OPENBLAS_CORETYPE": "Haswell"})["OPENBLAS_CORETYPE"] == "Haswell"


def test_environment_keeps_the_real_runs_metric_files(monkeypatch):
    """A shifted-seed or other-kernel run writes its metric files elsewhere, never over artifacts/metrics."""
    monkeypatch.delenv("NNDL_METRICS_DIR", raising=False)
    folder = Path(portability._environment({})["NNDL_METRICS_DIR"])
    assert folder.resolve() != metrics.metrics_dir().resolve() and "artifacts" not in folder.parts
    monkeypatch.setenv("NNDL_METRICS_DIR", "/some/chosen/folder")
    assert portability._environment({})["NNDL_METRICS_DIR"] == "/some/chosen/folder"


def test_shift_seeds_moves_every_literal_seed():
    source = ("rng = np.random.default_rng(3)\ntorch.manual_seed(0)\nnh.seed_everything(0)\n"
              "model = MLP(sizes, seed=7)\nX = make(n, random_state=1)\nx = f(12)")
    shifted = portability.shift_seeds(source)
    namespace = {"_SPREAD_SEED": 10}
    assert "default_rng(3 + _SPREAD_SEED)" in shifted and "manual_seed(0 + _SPREAD_SEED)" in shifted
    assert "seed=7 + _SPREAD_SEED" in shifted and "random_state=1 + _SPREAD_SEED" in shifted
    assert "f(12)" in shifted                                   # other numbers stay
    assert eval("7 + _SPREAD_SEED", namespace) == 17


def _run_instrumented(nb):
    """Execute the instrumented cells in one namespace, as a kernel would, and return the records."""
    namespace = {}
    printed = []
    namespace["print"] = lambda *a: printed.append(" ".join(map(str, a)))
    for cell in nb.cells:
        exec(cell.source, namespace)
    return json.loads(printed[-1][len("SPREAD"):])


def test_instrumented_asserts_record_instead_of_raising():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("acc = 0.7\nloss = 2.5\nnames = ['a']"),
                nbformat.v4.new_code_cell("assert acc > 0.9, acc\nassert loss < 3 and len(names) == 1\n"
                                          "for k in range(2):\n    assert k < 5")]
    records = _run_instrumented(portability.instrument(nb, seed_shift=0))
    assert [r["passed"] for r in records] == [False, True, True, True]   # the failing assert did not stop the cell
    assert records[0]["values"] == {"acc": 0.7}
    assert records[1]["values"] == {"loss": 2.5, "len(names)": 1.0}
    assert records[0]["assert"] == "cell 1 assert 1" and records[0]["source"] == "acc > 0.9"


def test_instrument_shifts_seeds_only_when_asked():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import random\nr = random.Random(0)\nseed_value = dict(seed=4)['seed']\n"
                                          "assert seed_value == 4")]
    assert _run_instrumented(portability.instrument(nb, seed_shift=0))[0]["passed"] is True
    assert _run_instrumented(portability.instrument(nb, seed_shift=2))[0]["passed"] is False


def test_markdown_table_lists_only_checks_that_moved(tmp_path):
    path = tmp_path / "spread.jsonl"
    rows = [{"notebook": "n.ipynb", "assert": "cell 3 assert 1", "source": "acc > 0.9", "passed": True,
             "values": {"acc": acc}, "seed": s, "config": "default"} for s, acc in enumerate([0.93, 0.95, 0.94])]
    rows += [{"notebook": "n.ipynb", "assert": "cell 3 assert 2", "source": "n == 3", "passed": True,
              "values": {"n": 3.0}, "seed": s, "config": "default"} for s in range(3)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    table = portability.markdown_table(path, "n.ipynb")
    assert "| `acc` | 0.93 | 0.95 |" in table
    assert "`n`" not in table                                     # deterministic: not listed


@pytest.mark.parametrize("argv", [["configs"]])
def test_cli_prints_the_configurations(argv, capsys):
    assert portability.main(argv) == 0
    assert "default" in capsys.readouterr().out


def test_table_lists_the_measured_number_not_the_threshold_arithmetic():
    assert portability._without_threshold_arithmetic("acc + 0.02", 0.92) == ("acc", pytest.approx(0.90))
    assert portability._without_threshold_arithmetic("loss - 1.0", 1.5) == ("loss", pytest.approx(2.5))
    assert portability._without_threshold_arithmetic("5 * grad['sat']", 10.0) == ("grad['sat']", 2.0)
    assert portability._without_threshold_arithmetic("d['gauss'] / 3", 0.01) == ("d['gauss']", pytest.approx(0.03))
    assert portability._without_threshold_arithmetic("a / b", 3.0) == ("a / b", 3.0)
