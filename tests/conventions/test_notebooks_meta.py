"""What a student meets when opening the committed notebooks, and the exported code staying in step."""
import json
import re
from pathlib import Path

import nbformat
import pytest

from nndl_helpers import nbtools

NOTEBOOKS = sorted(nbtools.NOTEBOOKS.glob("*.ipynb"))
ids = [p.name for p in NOTEBOOKS]
# notebooks that write no backward pass, so have no gradient to check against autograd
FORWARD_ONLY = {"16d_onnx_deployment.ipynb": "an ONNX graph stores only the forward computation"}


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_committed_executed_and_clean(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    nbformat.validate(nbformat.reads(path.read_text(encoding="utf-8"), as_version=4))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, "some code cells were never executed"
    assert counts == list(range(counts[0], counts[0] + len(counts))), "run all from a fresh kernel before committing"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, "error outputs committed"
    assert "widgets" not in nb["metadata"], "widget state must be stripped (nbtools run does it)"
    assert path.stat().st_size < 3e6, "notebook too large: lower figure dpi or show fewer images"
    checked = [c for c in code if "# NBVAL_CHECK_OUTPUT" in "".join(c["source"])]
    assert len(checked) >= 3, "at least three cells must be checked by nbval"
    assert all(c["outputs"] for c in checked), "a checked cell with no output compares nothing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_follows_the_template(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    first = "".join(nb["cells"][0]["source"])
    assert first.startswith("# ") and re.search(r"NNDL\b[^\n]*?(§|chapter|ch\.?)\s*\d", first), "title cell names its NNDL sections"
    assert re.search(r"[\u4e00-\u9fff]", md), "key terms carry the textbook's Chinese term"
    assert "get_profile" in code and "best_device" in code and "seed_everything" in code
    if path.name in FORWARD_ONLY:
        assert not re.search(r"def \w*backward\b", code), f"{path.name} writes a backward: check it against autograd"
    else:
        assert re.search(r"compare_with_autograd|nh\.check_gradients\(", code), "every backward is checked against torch.autograd"
    assert "ipywidgets" in code or "widgets." in code, "at least one slider"
    assert re.search(r"^assert ", code, re.M), "a final checks cell of asserts"
    assert re.search(r"exercise", md, re.I), "exercises for the reader"


def test_exported_modules_match_their_notebooks():
    stale = nbtools.export(check_only=True)
    assert not stale, f"{stale} out of date: run `python -m nndl_helpers.nbtools export`"


# Apple's MPS backend has no float64: `.double()` on a device tensor fails there, so float64
# arithmetic on model outputs moves the tensor to the CPU first (`.cpu().double()`).
_DOUBLE_ON_DEVICE = re.compile(r"\.double\(\)\s*\.cpu\(\)")
_SOURCES = NOTEBOOKS + sorted(nbtools.PACKAGE.glob("*.py"))


@pytest.mark.parametrize("path", _SOURCES, ids=[p.name for p in _SOURCES])
def test_float64_is_computed_on_the_cpu(path: Path):
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    else:
        text = path.read_text(encoding="utf-8")
    assert not _DOUBLE_ON_DEVICE.search(text), "call .cpu() before .double(): MPS has no float64"


def test_float64_check_catches_the_device_pattern():
    assert _DOUBLE_ON_DEVICE.search("loss.double().cpu()") and not _DOUBLE_ON_DEVICE.search("loss.cpu().double()")


def test_checked_cells_print_no_rounding_digits():
    """A checked cell's committed output shows no digits that differ per CPU: no gradient error's
    power of ten, no float with four or more decimals."""
    bucket = re.compile(r"\bd\w+ <1e-\d\d\b")
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] == "code" and "# NBVAL_CHECK_OUTPUT" in "".join(cell["source"]):
                text = "".join("".join(o["text"]) for o in cell.get("outputs", []) if "text" in o)
                assert not bucket.search(text), f"{path.name}: {bucket.search(text).group(0)!r} in a checked cell"
                # four or more decimals of a float: the last one is where CPUs start to disagree
                long_float = re.search(r"\d\.\d{4,}", text)
                assert not long_float, f"{path.name}: {long_float.group(0)!r} in a checked cell"


MAX_CELL_LINES = 60       # CONTRIBUTING.md §3: a reader can hold a cell in their head
MAX_CODE_LINES = 1_100    # "about 1,000": a longer chapter is split into lettered parts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_cells_and_notebooks_stay_readable(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    long = [(i, len(s.splitlines())) for i, s in enumerate(sources) if len(s.splitlines()) > MAX_CELL_LINES]
    assert not long, f"code cells over {MAX_CELL_LINES} lines (code-cell index, lines): {long}"
    total = sum(len(s.splitlines()) for s in sources)
    assert total <= MAX_CODE_LINES, f"{total} code lines: split the notebook into lettered parts"


_AUTOCAST_BY_HAND = re.compile(r"torch\.autocast\(|torch\.(cuda\.)?amp\.GradScaler\(|dtype=torch\.bfloat16")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_records_its_headline_numbers(path: Path):
    """The setup cell names the metric file after the notebook, and the notebook records into it."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    calls = re.findall(r"nh\.metrics_file\(\s*[\"']([^\"']+)[\"']\s*,\s*PROFILE\s*,\s*device\s*\)", code)
    assert calls == [path.stem], f"one nh.metrics_file({path.stem!r}, PROFILE, device) call in the setup cell, found {calls}"
    assert re.search(r"nh\.record\(\s*[\"'][a-z][a-z0-9_]*[\"']", code), "no nh.record(...) of a headline number"


@pytest.mark.parametrize("path", _SOURCES, ids=[p.name for p in _SOURCES])
def test_mixed_precision_is_chosen_by_the_helper(path: Path):
    """bfloat16 only where the GPU has it: nh.autocast / nh.grad_scaler decide, not `device.type == "cuda"`."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "code")
    assert not _AUTOCAST_BY_HAND.search(text), "use nh.autocast(device) and nh.grad_scaler(device)"
