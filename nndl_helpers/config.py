"""Device choice, the quick/full profile switch, and seeding.

Every notebook's setup cell calls these three once:

    device = best_device()          # cuda -> mps -> cpu
    PROFILE = get_profile(device)   # NNDL_PROFILE=quick|full, default by device
    seed_everything(0)
"""
from __future__ import annotations

import os
import random

import numpy as np

PROFILES = ("quick", "full")
PROFILE_ENV = "NNDL_PROFILE"

# How NumPy's OpenBLAS and PyTorch's OpenMP should share a small machine. Both keep a pool of
# worker threads that spin, busy-waiting for the next operation, after each one finishes; in a
# notebook that alternates NumPy and PyTorch, or with two kernels on two cores, the pools steal
# each other's cores (notebook 13c, two kernels side by side on two cores: still running after
# 450 s, stopped there; with these settings both finished in 40 s, against 25 s alone). glibc
# also hands big temporaries back to the system after each use, and NumPy pays page faults to
# fetch them again. These settings make idle workers sleep at once and keep freed memory for
# reuse. They must be in the environment before NumPy and PyTorch are imported: every program
# `python course.py` starts (lab, test, bench, ...) and `nbtools run` get them; course.py reads
# them from this dict.
RUNTIME_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",              # PyTorch's OpenMP workers sleep when idle
    "OPENBLAS_THREAD_TIMEOUT": "4",            # OpenBLAS workers spin 2**4 cycles, not 2**28
    "MALLOC_MMAP_THRESHOLD_": "33554432",      # arrays under 32 MiB come from the heap ...
    "MALLOC_TRIM_THRESHOLD_": "67108864",      # ... which keeps up to 64 MiB free for reuse
}


SPEED_CHECKS_ENV = "NNDL_CHECK_SPEED"


def speed_checks_enabled(environ=None) -> bool:
    """Whether the notebooks' speed targets are asserted (``NNDL_CHECK_SPEED=1``).

    Wall time depends on the machine and on what else it is doing, so correctness runs
    (``python course.py test``, a reader's run-all) only measure and print timings; ``course.py bench``
    sets ``NNDL_CHECK_SPEED=1`` and the same cells then assert their targets.
    """
    environ = os.environ if environ is None else environ
    return environ.get(SPEED_CHECKS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def runtime_env_missing(environ=None) -> list[str]:
    """The RUNTIME_ENV variables not set in ``environ`` (default: this process's environment)."""
    environ = os.environ if environ is None else environ
    return [k for k in RUNTIME_ENV if k not in environ]


def best_device(prefer: str | None = None):
    """Return the fastest available ``torch.device``: CUDA, then Apple MPS, then CPU.

    ``prefer`` (or the ``NNDL_DEVICE`` environment variable) forces a device,
    e.g. ``"cpu"`` to compare timings on a GPU machine.
    """
    import torch

    choice = prefer or os.environ.get("NNDL_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_profile(device=None) -> str:
    """The run profile: ``"quick"`` (small subsets, few epochs) or ``"full"``.

    Read from ``NNDL_PROFILE``; when unset, ``"full"`` on a CUDA device and
    ``"quick"`` everywhere else.
    """
    value = os.environ.get(PROFILE_ENV, "").strip().lower()
    if value:
        if value not in PROFILES:
            raise ValueError(
                f"{PROFILE_ENV}={value!r} is not a profile; use one of {', '.join(PROFILES)}"
            )
        return value
    if device is None:
        device = best_device()
    return "full" if getattr(device, "type", str(device)) == "cuda" else "quick"


def seed_everything(seed: int = 0) -> np.random.Generator:
    """Seed Python's ``random``, NumPy's global state and torch (CPU and CUDA).

    Returns a fresh ``np.random.Generator`` seeded the same way, which is what
    the from-scratch code should draw from.
    """
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # the helpers work without torch for the NumPy parts
        pass
    else:
        torch.manual_seed(seed)  # also seeds every CUDA device
    return np.random.default_rng(seed)


def describe(device, profile: str) -> str:
    """One line for the setup cell: library versions, device, profile and CPU threads.

    A second line, a tip, follows when PyTorch uses several CPU threads and the RUNTIME_ENV
    settings are missing (Jupyter was not started with `python course.py lab`).
    """
    import torch

    name = str(device)
    if getattr(device, "type", "") == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        dtype = amp_dtype(device)
        name += (f" ({torch.cuda.get_device_name(device)}, compute capability {major}.{minor}, "
                 f"mixed precision {str(dtype).replace('torch.', '')})")
    threads = torch.get_num_threads()
    line = (
        f"numpy {np.__version__} | torch {torch.__version__} | "
        f"device {name} | profile {profile} | threads {threads}"
    )
    missing = runtime_env_missing()
    if threads > 1 and missing:
        line += (
            f"\ntip: {', '.join(missing)} not set, so NumPy's and PyTorch's thread pools may busy-wait "
            f"against each other (slow with two notebooks open on a small machine); start Jupyter with "
            f"`python course.py lab`, or see the README's 'Speed on small machines'"
        )
    return line


class SectionTimer:
    """CPU and wall seconds a notebook spends in each of its sections.

    ``timed = SectionTimer()`` in the setup cell, then ``timed("attention")`` at the end of each
    section records the time since the previous call (or since the timer was made) in
    ``timed.times[name] = (cpu_s, wall_s)``. CPU seconds are the kernel's own work, what the
    runtime line of a notebook reports; wall seconds also count waiting for a busy machine.
    """

    def __init__(self) -> None:
        import time

        self._clock = lambda: (time.process_time(), time.perf_counter())
        self.start = self._last = self._clock()
        self.times: dict[str, tuple[float, float]] = {}

    def __call__(self, section: str) -> None:
        now = self._clock()
        self.times[section] = (now[0] - self._last[0], now[1] - self._last[1])
        self._last = now

    def total(self) -> tuple[float, float]:
        """(cpu_s, wall_s) since the timer was made."""
        now = self._clock()
        return now[0] - self.start[0], now[1] - self.start[1]


def amp_dtype(device):
    """The reduced precision a device trains well in, or ``None`` for plain float32.

    - CUDA, compute capability 8.0 and up (A100, RTX 30xx/40xx, H100): ``torch.bfloat16``, which
      has float32's exponent range, so no loss scaling is needed;
    - older CUDA cards (T4, V100, GTX 10xx, the free notebook services' GPUs): ``torch.float16``,
      whose tensor cores they have but whose small range needs a gradient scaler (``grad_scaler``);
    - CPU and Apple MPS: ``None``. The course's models are small, and on a CPU reduced precision
      saves little and changes results from one processor to the next.
    """
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def autocast(device):
    """``torch.autocast`` in the dtype ``amp_dtype`` picks; switched off where that is ``None``.

    Use it around forward passes and losses: ``with nh.autocast(device): loss = model(x)``.
    """
    import torch

    dtype = amp_dtype(device)
    kind = getattr(device, "type", str(device))
    if dtype is None:
        return torch.autocast(device_type="cpu" if kind not in ("cuda", "cpu") else kind, enabled=False)
    return torch.autocast(device_type=kind, dtype=dtype)


def grad_scaler(device):
    """A ``torch.amp.GradScaler`` that scales only where ``autocast`` uses float16.

    The training step is then the same on every device::

        scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()

    (disabled, ``scale`` returns the loss unchanged and ``step`` calls ``optimizer.step()``).
    """
    import torch

    enabled = amp_dtype(device) == torch.float16
    return torch.amp.GradScaler("cuda", enabled=enabled)
