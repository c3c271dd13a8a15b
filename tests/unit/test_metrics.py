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


def _record_many(folder, n, barrier):
    import os

    os.environ[metrics.METRICS_DIR_ENV] = str(folder)
    metrics.metrics_file("05b_modern_cnns", "quick", "cpu")
    barrier.wait(60)                   # both processes write at the same time
    for i in range(n):
        metrics.record("step", i)


def test_two_kernels_of_one_notebook_write_side_by_side(folder):
    """Two processes recording into the same file at once: no error, and a complete file at the end."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_record_many, args=(folder, 1000, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert metrics.load(folder / "05b_modern_cnns.json")["metrics"] == {"step": 999.0}
    assert not list(folder.glob("*.tmp"))
