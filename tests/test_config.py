import random

import numpy as np
import pytest
import torch

import nndl_helpers as nh


def test_profile_defaults_to_quick_on_cpu_and_full_on_cuda(monkeypatch):
    monkeypatch.delenv("NNDL_PROFILE", raising=False)
    assert nh.get_profile(torch.device("cpu")) == "quick"
    assert nh.get_profile(torch.device("cuda")) == "full"


@pytest.mark.parametrize("value, expected", [("quick", "quick"), ("FULL", "full"), (" full ", "full")])
def test_profile_from_environment(monkeypatch, value, expected):
    monkeypatch.setenv("NNDL_PROFILE", value)
    assert nh.get_profile(torch.device("cpu")) == expected


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("NNDL_PROFILE", "fast")
    with pytest.raises(ValueError, match="NNDL_PROFILE='fast'.*quick, full"):
        nh.get_profile()


def test_best_device_can_be_forced(monkeypatch):
    monkeypatch.setenv("NNDL_DEVICE", "cpu")
    assert nh.best_device() == torch.device("cpu")
    monkeypatch.delenv("NNDL_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else None
    got = nh.best_device().type
    assert got in ("cuda", "mps", "cpu")
    if expected:
        assert got == expected


def test_seed_everything_makes_all_three_generators_repeat():
    def draw():
        rng = nh.seed_everything(123)
        return random.random(), np.random.rand(), torch.rand(1).item(), rng.normal()

    assert draw() == draw()
    nh.seed_everything(124)
    assert torch.rand(1).item() != draw()[2]


def test_describe_names_device_and_profile():
    line = nh.describe(torch.device("cpu"), "quick")
    assert "device cpu" in line and "profile quick" in line and torch.__version__ in line


def test_describe_tips_about_thread_pools_only_when_it_matters(monkeypatch):
    from nndl_helpers.config import RUNTIME_ENV

    for key in RUNTIME_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    text = nh.describe(torch.device("cpu"), "quick")
    assert text.count("\n") == 1 and "tip:" in text and "make lab" in text
    assert all(key in text for key in RUNTIME_ENV)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)   # one thread: no pool to busy-wait
    assert "\n" not in nh.describe(torch.device("cpu"), "quick")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    for key, value in RUNTIME_ENV.items():
        monkeypatch.setenv(key, value)
    assert "\n" not in nh.describe(torch.device("cpu"), "quick")


def test_makefile_exports_the_runtime_settings():
    """`make lab/test/bench` must give kernels exactly the settings RUNTIME_ENV documents."""
    import re
    from pathlib import Path

    from nndl_helpers.config import RUNTIME_ENV

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    exported = dict(re.findall(r"^export (\w+) \?= (\S+)$", makefile, flags=re.M))
    assert exported == RUNTIME_ENV
