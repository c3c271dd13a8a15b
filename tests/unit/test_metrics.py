"""nh.metrics_file / nh.record: the headline numbers a notebook writes as data."""
import json

import pytest
import torch

from nndl_helpers import metrics


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.METRICS_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(metrics, "_current", None)
    return tmp_path


def test_record_writes_the_file_at_each_call(folder):
    path = metrics.metrics_file("05a_convolution", "quick", torch.device("cpu"))
    assert path == folder / "05a_convolution.json"
    assert json.loads(path.read_text()) == {"profile": "quick", "device": "cpu", "metrics": {}}
    assert metrics.record("torch_lenet_mnist_acc", torch.tensor(0.5)) is None
    metrics.record("lenet_seconds", 12)
    assert metrics.load(path)["metrics"] == {"torch_lenet_mnist_acc": 0.5, "lenet_seconds": 12.0}


def test_a_new_run_starts_empty(folder):
    metrics.metrics_file("03_linear_models", "quick", "cpu")
    metrics.record("old_number", 1.0)
    metrics.metrics_file("03_linear_models", "full", "cpu")
    assert metrics.load(folder / "03_linear_models.json") == {"profile": "full", "device": "cpu", "metrics": {}}


def test_bad_calls_say_what_is_wrong(folder):
    with pytest.raises(RuntimeError, match="metrics_file"):
        metrics.record("x", 1.0)
    with pytest.raises(ValueError, match="notebook stem"):
        metrics.metrics_file("convolution.ipynb", "quick", "cpu")
    metrics.metrics_file("05a_convolution", "quick", "cpu")
    with pytest.raises(ValueError, match="snake_case"):
        metrics.record("Accuracy", 1.0)
    with pytest.raises(ValueError, match="finite"):
        metrics.record("loss", float("nan"))


def test_load_rejects_another_layout(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"metrics": {}}))
    with pytest.raises(ValueError, match="profile, device, metrics"):
        metrics.load(bad)
