"""Headline numbers as data: each notebook records what it measured in one JSON file.

The setup cell names the notebook once, and each result is one call::

    nh.metrics_file("05a_convolution", PROFILE, device)   # artifacts/metrics/05a_convolution.json
    ...
    nh.record("torch_lenet_mnist_acc", accuracy)

The file is rewritten at every call, so a run stopped half-way still leaves what it measured,
and ``metrics_file`` starts it empty, so nothing from an older run lingers. Its layout::

    {"profile": "quick", "device": "cpu", "metrics": {"torch_lenet_mnist_acc": 0.9871, ...}}

``NNDL_METRICS_DIR`` moves the folder (the GPU run collects the files of a whole course run).
The README's results tables are generated from committed copies of these files
(``python -m nndl_helpers.results``).
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

METRICS_DIR_ENV = "NNDL_METRICS_DIR"
_STEM = re.compile(r"^(\d\d[a-z]?_\w+|playground)$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_current: dict | None = None


def metrics_dir() -> Path:
    """Where the metric files go: ``$NNDL_METRICS_DIR``, else ``artifacts/metrics`` in the repository
    (``~/.cache/nndl/metrics`` for a non-editable install)."""
    env = os.environ.get(METRICS_DIR_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    if (repo / "notebooks").is_dir():          # a clone (editable install): artifacts/ beside the notebooks
        return repo / "artifacts" / "metrics"
    return Path.home() / ".cache" / "nndl" / "metrics"


def device_label(device) -> str:
    """``"cpu"``, ``"mps"`` or ``"cuda (NVIDIA H200)"``: the device a number was measured on."""
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(device)})"
    return kind


def metrics_file(notebook: str, profile: str, device) -> Path:
    """Start this run's metric file for ``notebook`` (its file name without ``.ipynb``); return its path."""
    global _current
    if not _STEM.match(notebook):
        raise ValueError(f"{notebook!r} is not a notebook stem such as '05a_convolution'")
    path = metrics_dir() / f"{notebook}.json"
    _current = {"path": path, "data": {"profile": profile, "device": device_label(device), "metrics": {}}}
    _write()
    return path


def record(name: str, value) -> None:
    """Record one headline number of the running notebook (after ``metrics_file``).

    Returns nothing, so that a ``record`` call ending a cell prints nothing.
    """
    if _current is None:
        raise RuntimeError("call nh.metrics_file(notebook, PROFILE, device) in the setup cell before nh.record")
    if not _NAME.match(name):
        raise ValueError(f"metric names are lower_snake_case, got {name!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric {name!r} is {number}, not a finite number")
    _current["data"]["metrics"][name] = number
    _write()


def _write() -> None:
    """Write the file atomically: a temporary file of this process's own, then a rename.

    Two kernels of the same notebook (two open tabs, or the portability tool's parallel runs)
    write the same file; each renames only its own temporary file, so neither fails, and the file
    always holds one run's complete numbers.
    """
    path = _current["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(_current["data"], indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def load(path) -> dict:
    """Read one metric file and check its layout."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if set(data) != {"profile", "device", "metrics"} or not isinstance(data["metrics"], dict):
        raise ValueError(f"{path}: expected keys profile, device, metrics; got {sorted(data)}")
    return data
