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
    """One line for the setup cell: library versions, device and profile."""
    import torch

    name = str(device)
    if getattr(device, "type", "") == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return (
        f"numpy {np.__version__} | torch {torch.__version__} | "
        f"device {name} | profile {profile} | threads {torch.get_num_threads()}"
    )
