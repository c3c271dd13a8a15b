import random
import types

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


@pytest.mark.parametrize("name", ["cpu", "meta"])   # "meta" exists on every machine and is never auto-detected
def test_best_device_can_be_forced_by_argument_or_environment(monkeypatch, name):
    monkeypatch.delenv("NNDL_DEVICE", raising=False)
    assert nh.best_device(name) == torch.device(name)
    monkeypatch.setenv("NNDL_DEVICE", name)
    assert nh.best_device() == torch.device(name)


def test_best_device_argument_wins_over_environment(monkeypatch):
    monkeypatch.setenv("NNDL_DEVICE", "meta")
    assert nh.best_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("NNDL_DEVICE", "cpu")
    assert nh.best_device("meta") == torch.device("meta")


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
@pytest.mark.parametrize("env", [None, ""])            # unset or empty NNDL_DEVICE: detect
def test_best_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected, env):
    # fake the availability checks, so the order is tested on a machine without any GPU
    if env is None:
        monkeypatch.delenv("NNDL_DEVICE", raising=False)
    else:
        monkeypatch.setenv("NNDL_DEVICE", env)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert nh.best_device() == torch.device(expected)


def test_best_device_without_mps_backend_falls_back_to_cpu(monkeypatch):
    # builds of PyTorch without torch.backends.mps must not break the detection
    monkeypatch.delenv("NNDL_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # torch.backends forwards attribute lookups to an inner module, so swap in one without "mps"
    monkeypatch.setattr(torch, "backends", types.SimpleNamespace())
    assert nh.best_device() == torch.device("cpu")


def test_speed_checks_are_off_by_default(monkeypatch):
    # correctness runs must not fail on a slow or busy machine: no variable, no timing asserts
    monkeypatch.delenv("NNDL_CHECK_SPEED", raising=False)
    assert nh.speed_checks_enabled() is False
    assert nh.speed_checks_enabled({}) is False


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "Yes", "on", " On "])
def test_speed_checks_enabled_by_yes_values(monkeypatch, value):
    monkeypatch.setenv("NNDL_CHECK_SPEED", value)
    assert nh.speed_checks_enabled() is True
    assert nh.speed_checks_enabled({"NNDL_CHECK_SPEED": value}) is True


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off", "2", "y", "enabled"])
def test_speed_checks_stay_off_for_other_values(monkeypatch, value):
    monkeypatch.setenv("NNDL_CHECK_SPEED", value)
    assert nh.speed_checks_enabled() is False
    assert nh.speed_checks_enabled({"NNDL_CHECK_SPEED": value}) is False


def test_speed_checks_read_the_given_environment_only(monkeypatch):
    # an explicit mapping replaces os.environ, it is not merged with it
    monkeypatch.setenv("NNDL_CHECK_SPEED", "1")
    assert nh.speed_checks_enabled({}) is False
    monkeypatch.delenv("NNDL_CHECK_SPEED")
    assert nh.speed_checks_enabled({"NNDL_CHECK_SPEED": "1"}) is True


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
    assert text.count("\n") == 1 and "tip:" in text and "python course.py lab" in text
    assert all(key in text for key in RUNTIME_ENV)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)   # one thread: no pool to busy-wait
    assert "\n" not in nh.describe(torch.device("cpu"), "quick")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    for key, value in RUNTIME_ENV.items():
        monkeypatch.setenv(key, value)
    assert "\n" not in nh.describe(torch.device("cpu"), "quick")


def test_section_timer_records_each_section_since_the_previous_one():
    import time

    from nndl_helpers.config import SectionTimer

    timed = SectionTimer()
    time.sleep(0.02)
    timed("first")
    timed("second")
    (cpu1, wall1), (cpu2, wall2) = timed.times["first"], timed.times["second"]
    assert list(timed.times) == ["first", "second"]
    assert wall1 >= 0.02 > wall2 >= 0 and cpu1 >= 0 and cpu2 >= 0
    assert timed.total()[1] >= wall1 + wall2


@pytest.mark.parametrize("capability, expected", [((9, 0), "bfloat16"), ((8, 0), "bfloat16"),
                                                  ((7, 5), "float16"), ((6, 1), "float16")])
def test_amp_dtype_follows_the_compute_capability(monkeypatch, capability, expected):
    """bfloat16 from Ampere on; float16 (with a scaler) on a T4, V100 or older card; never on CPU."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cuda = torch.device("cuda")
    assert nh.amp_dtype(cuda) == getattr(torch, expected)
    scaler = nh.grad_scaler(cuda) if expected == "bfloat16" else None
    if scaler is not None:
        assert not scaler.is_enabled()


def test_amp_is_off_on_the_cpu():
    cpu = torch.device("cpu")
    assert nh.amp_dtype(cpu) is None
    assert not nh.grad_scaler(cpu).is_enabled()
    with nh.autocast(cpu):
        out = torch.ones(3, 3) @ torch.ones(3, 3)
    assert out.dtype == torch.float32
    loss = (torch.ones(2, requires_grad=True) * 2).sum()
    assert nh.grad_scaler(cpu).scale(loss) is loss
