"""The README's results tables are generated from the committed metric files and stay in step."""
import json

from nndl_helpers import nbtools, results


def test_readme_tables_match_the_recorded_metrics():
    text = results.README.read_text(encoding="utf-8")
    assert results.render_readme(text) == text, "run `python -m nndl_helpers.results readme`"


def test_every_recorded_metric_has_a_label():
    assert not results.unlabelled(), "add a README label to nndl_helpers/results.py LABELS"


def test_every_notebook_has_committed_quick_metrics():
    stems = {p.stem for p in nbtools.NOTEBOOKS.glob("*.ipynb")}
    recorded = {p.stem for p in (results.RESULTS / "quick").glob("*.json")}
    assert stems == recorded, f"missing: {sorted(stems - recorded)}, stale: {sorted(recorded - stems)}"


def test_render_shows_each_number(tmp_path, monkeypatch):
    (tmp_path / "05a_convolution.json").write_text(json.dumps(
        {"profile": "quick", "device": "cpu", "metrics": {"numpy_lenet_mnist_acc": 0.98716, "lenet_seconds": 30}}))
    table = results.render_quick(tmp_path)
    assert " 0.9872;" in table and table.rstrip().endswith(" 30 |") and "notebooks/05a_convolution.ipynb" in table
