"""NumPy code taught in notebooks/01_introduction.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import json
import re
from pathlib import Path

#: 《神经网络与深度学习》's chapters: number -> (English title, Chinese title)
NNDL_CHAPTERS = {
    1: ("Introduction", "绪论"), 2: ("Machine learning overview", "机器学习概述"), 3: ("Linear models", "线性模型"),
    4: ("Feedforward neural networks", "前馈神经网络"), 5: ("Convolutional neural networks", "卷积神经网络"),
    6: ("Recurrent neural networks", "循环神经网络"), 7: ("Network optimization and regularization", "网络优化与正则化"),
    8: ("Attention and external memory", "注意力机制与外部记忆"), 9: ("Unsupervised learning", "无监督学习"),
    10: ("Model-independent learning", "模型独立的学习方式"), 11: ("Probabilistic graphical models", "概率图模型"),
    12: ("Deep belief networks", "深度信念网络"), 13: ("Deep generative models", "深度生成模型"),
    14: ("Deep reinforcement learning", "深度强化学习"), 15: ("Sequence generation models", "序列生成模型"),
}
_SECTION = re.compile(r"§\s*(\d+(?:\.\d+)*)(?:\s*[–-]\s*§?\s*(\d+(?:\.\d+)*))?")
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)\.\*{0,2}\s+(?=[A-Z§*\[(])")


def notebook_header(path):
    """(title, text) of a notebook's first Markdown cell: its first line without '# ', and the whole cell."""
    cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else source
            return text.strip().splitlines()[0].lstrip("#").strip() if text.strip() else "", text
    return "", ""


def nndl_sections(text):
    """The NNDL sections a notebook's first paragraph that names NNDL lists, e.g. ['§4.1', '§4.2–4.3'].

    Only its first sentence is read (later ones point to other notebooks). A section inside a range or a
    section listed before it is dropped: '§2.2–§2.4 ... §2.2.3' gives ['§2.2–2.4'].
    """
    paragraph = next((p for p in re.split(r"\n\s*\n", text) if "NNDL" in p), "")
    paragraph = _SENTENCE_END.split(paragraph[paragraph.find("NNDL"):], maxsplit=1)[0]
    found = [(tuple(map(int, a.split("."))), tuple(map(int, (b or a).split("."))))
             for a, b in _SECTION.findall(paragraph)]            # (start, end), tuples of ints

    def covers(outer, ref):                                      # ref lies within outer
        return outer[0] <= ref[0][:len(outer[0])] and ref[1][:len(outer[1])] <= outer[1]

    kept = [ref for i, ref in enumerate(found)
            if ref not in found[:i] and not any(other != ref and covers(other, ref) for other in found)]
    return ["§" + ".".join(map(str, a)) + ("" if a == b else "–" + ".".join(map(str, b))) for a, b in kept]


def course_map(notebook_dir):
    """One dict per notebook in notebook_dir: chapter (int, None for pages outside the numbering), stem, title, sections."""
    rows = []
    for path in sorted(Path(notebook_dir).glob("*.ipynb")):
        title, text = notebook_header(path)
        number = re.match(r"(\d+)[a-z]?_", path.name)
        sections = nndl_sections(text)
        if not sections and number:
            sections = [f"chapter {int(number.group(1))}"]
        rows.append({"chapter": int(number.group(1)) if number else None, "stem": path.stem,
                     "title": re.sub(r"^\d+[a-z]?\s+·\s+", "", title), "sections": sections})
    return rows


def course_map_markdown(rows, chapters=NNDL_CHAPTERS):
    """The map as a Markdown table: every chapter of the book, its notebooks or "not yet", then the other pages."""
    def cell(text):
        return str(text).replace("|", "\\|")

    lines = ["| NNDL chapter | notebook | what it covers | NNDL sections |", "|---|---|---|---|"]
    for number, (english, chinese) in chapters.items():
        mine = [r for r in rows if r["chapter"] == number] or [None]
        for i, row in enumerate(mine):
            chapter = f"{number} · {english} ({chinese})" if i == 0 else ""
            if row is None:
                lines.append(f"| {chapter} | *not yet* | | |")
            else:
                lines.append(f"| {chapter} | [{row['stem']}]({row['stem']}.ipynb) | {cell(row['title'])} | "
                             f"{', '.join(row['sections'])} |")
    for row in rows:
        if row["chapter"] not in chapters:
            where = "after the book" if row["chapter"] else "the playground and other pages"
            lines.append(f"| *{where}* | [{row['stem']}]({row['stem']}.ipynb) | {cell(row['title'])} | "
                         f"{', '.join(row['sections'])} |")
    return "\n".join(lines)
