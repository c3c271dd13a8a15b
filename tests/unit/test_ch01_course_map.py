"""The course map of notebook 01 (nndl_helpers.chapters.ch01): titles, NNDL sections, the Markdown table."""
import json
from pathlib import Path

import pytest

from nndl_helpers import nbtools
from nndl_helpers.chapters.ch01 import NNDL_CHAPTERS, course_map, course_map_markdown, notebook_header, nndl_sections


def _notebook(path: Path, first_markdown: str, *, as_list=True, code_first=False) -> Path:
    source = first_markdown.splitlines(keepends=True) if as_list else first_markdown
    cells = [{"cell_type": "markdown", "metadata": {}, "source": source}]
    if code_first:
        cells.insert(0, {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": None})
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    return path


@pytest.mark.parametrize("text, expected", [
    ("**NNDL §2.2–§2.4** (第 2 章): the elements (§2.2, with §2.2.3), least squares (§2.3), (§2.4).", ["§2.2–2.4"]),
    ("*NNDL chapter 4: §4.1 neurons, §4.2–4.3 networks, §4.4 backprop, §4.6 problems. §4.5, autodiff, is 04b.*",
     ["§4.1", "§4.2–4.3", "§4.4", "§4.6"]),
    ("**NNDL §6.1–6.7, chapter 6:** §6.1 memory, §6.2 SRN, §6.7 deep RNNs.", ["§6.1–6.7"]),
    ("**NNDL chapter 8** §8.1 attention, §8.3 self-attention, and from **§15.6 the Transformer**: masks.\nNotebook 08b §8.5.",
     ["§8.1", "§8.3", "§15.6"]),
    ("NNDL chapter 13 (deep generative models) continued, e.g. Stable Diffusion.", []),
    ("Title\n\nNo reference to the book here, §3.1.", []),
    ("Intro paragraph.\n\n*NNDL §9.1 (无监督特征学习), i.e. codes. Later: §9.2.*", ["§9.1"]),
])
def test_nndl_sections(text, expected):
    assert nndl_sections(text) == expected


@pytest.mark.parametrize("as_list", [True, False])
def test_notebook_header_reads_the_first_markdown_cell(tmp_path, as_list):
    path = _notebook(tmp_path / "x.ipynb", "# 05a · Convolution\n\n**NNDL chapter 5**: §5.1 convolution.",
                     as_list=as_list, code_first=True)
    title, text = notebook_header(path)
    assert title == "05a · Convolution" and "§5.1" in text


def test_course_map_rows_and_table(tmp_path):
    _notebook(tmp_path / "02_linear.ipynb", "# 02 · Linear | regression\n\n**NNDL §2.2–§2.4**: things.")
    _notebook(tmp_path / "13a_vae.ipynb", "# 13a · VAEs\n\n*NNDL chapter 13, §13.1 and §13.2.*")
    _notebook(tmp_path / "13c_diffusion.ipynb", "# 13c · Diffusion\n\n*NNDL chapter 13 continued.*")
    _notebook(tmp_path / "16_after.ipynb", "# 16 · Deployment\n\nNNDL §5.5 again.")
    _notebook(tmp_path / "playground.ipynb", "# Playground · an MLP\n\n**NNDL §4.1–§4.4** and **§7.7**.")
    rows = {r["stem"]: r for r in course_map(tmp_path)}
    assert rows["02_linear"] == {"chapter": 2, "stem": "02_linear", "title": "Linear | regression", "sections": ["§2.2–2.4"]}
    assert rows["13c_diffusion"]["sections"] == ["chapter 13"]          # no § given: the chapter from the file name
    assert rows["playground"]["chapter"] is None and rows["playground"]["title"] == "Playground · an MLP"
    table = course_map_markdown(list(rows.values()))
    lines = table.splitlines()
    assert lines[0].startswith("| NNDL chapter |") and len(lines) == 2 + 15 + 1 + 2  # 15 chapters, 13 twice, 2 others
    assert table.count("*not yet*") == 15 - 2
    assert r"Linear \| regression" in table                               # a pipe in a title cannot break the table
    assert "| 13 · Deep generative models (深度生成模型) | [13a_vae](13a_vae.ipynb) |" in table
    assert "|  | [13c_diffusion](13c_diffusion.ipynb) |" in table
    assert lines[-2].startswith("| *after the book* | [16_after]") and lines[-1].startswith("| *the playground")


def test_the_real_notebooks_all_have_a_row_with_sections():
    rows = course_map(nbtools.NOTEBOOKS)
    assert {r["stem"] for r in rows} == {p.stem for p in nbtools.NOTEBOOKS.glob("*.ipynb")}
    numbered = [r for r in rows if r["chapter"] is not None]
    assert numbered and all(r["title"] and r["sections"] for r in numbered)
    assert all(1 <= r["chapter"] for r in numbered) and set(NNDL_CHAPTERS) == set(range(1, 16))
