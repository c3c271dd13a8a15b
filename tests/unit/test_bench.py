"""`make bench` drives the chapters' code through their public API: each block runs once here
(no timing, tiny epochs), so an API change cannot leave the benchmark broken until the next bench run."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("nndl_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def run_once(bench, monkeypatch):
    def once(fn, *args, **kwargs):
        fn()
        return 1e-3
    monkeypatch.setattr(bench, "best_time", once)


@pytest.mark.parametrize("block,args", [("bench_affine", ()), ("bench_conv2d", ()), ("bench_pool", ("max",)),
                                        ("bench_pool", ("avg",)), ("bench_lstm_step", ()), ("bench_norm", ("BatchNorm",)),
                                        ("bench_norm", ("LayerNorm",)), ("bench_attention", ()),
                                        ("bench_policy_gradient", ()), ("bench_rbm_cd1", ())])
def test_every_block_runs(bench, block, args):
    res = getattr(bench, block)(np.random.default_rng(0), *args)
    assert res.numpy_ms is not None and res.torch_ms is not None, res


def test_epoch_pair_runs_both_twins(bench):
    from nndl_helpers.chapters.ch04a import MLP

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 784)).astype(np.float32), rng.integers(0, 10, 64)
    twin = torch.nn.Sequential(torch.nn.Linear(784, 10))
    row = bench._epoch_pair("MLP", MLP([784, 10], seed=0, dtype=np.float32), twin, X, y, 32, 1.5)
    assert row["numpy_s"] > 0 and row["torch_s"] > 0


def test_epoch_pair_runs_the_numpy_lenet(bench):
    from nndl_helpers.chapters.ch05a import LeNet5

    rng = np.random.default_rng(0)
    X, y = rng.random((8, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 8)
    twin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    row = bench._epoch_pair("LeNet-5", LeNet5(seed=0), twin, X, y, 4, 3.0)
    assert row["numpy_s"] > 0 and row["torch_s"] > 0
