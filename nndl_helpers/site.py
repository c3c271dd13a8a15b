"""The course as a website, built offline from the committed, executed notebooks.

    python -m nndl_helpers.site build [--out DIR] [--keep-sources DIR]

(``python course.py site`` runs this.) Every ``notebooks/[0-9]*.ipynb``, in chapter order, and then
``notebooks/playground.ipynb`` becomes a page titled by the notebook's first heading, with its
saved figures, its math rendered by a MathJax served from the site, code blocks with copy buttons,
a sidebar in chapter order, a search page, and a "run this notebook" note at the top.

How: this module writes Sphinx sources into a temporary folder (the configuration in the
repository's ``site/`` folder, an index page with the table of contents, and a prepared copy of
each notebook: the note added after its title, every ipywidgets output replaced by a line that
says which controls a live kernel would show there, progress bars dropped) and runs Sphinx with
myst-nb, its execution off. Nothing is fetched at build time, and the built pages load nothing
from the network: the builder fails when a built page names an http(s) asset (script, style sheet,
image, font, frame). The output goes to ``artifacts/site/`` (git-ignored) unless ``--out`` says
otherwise; open ``index.html`` there, or serve the folder (``python -m http.server -d artifacts/site``).

A notebook that is not valid JSON (someone is saving it right now) is skipped with a loud warning
and the build goes on; any other problem fails the build.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
SITE_CONFIG = REPO / "site"                 # conf.py, _static/, _templates/
DEFAULT_OUT = REPO / "artifacts" / "site"
STAMP = ".nndl-site.json"                   # in the output: what was built from what, and when
PLAYGROUND = "playground.ipynb"
NOTEBOOK_DOWNLOADS = "_notebooks"           # the original notebooks, offered as downloads

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_MIMES = (WIDGET_VIEW, "application/vnd.jupyter.widget-state+json")

# An http(s) or protocol-relative URL that a page would load by itself (not a link to follow).
_ASSET_ATTR = re.compile(
    r"<(?P<tag>script|link|img|iframe|source|audio|video|embed|object|image|use)\b[^>]*?"
    r"\s(?:src|href|data|srcset|poster|xlink:href)\s*=\s*[\"']\s*(?P<url>(?:https?:)?//[^\"'\s>]+)",
    re.IGNORECASE)
_CSS_URL = re.compile(r"(?:url\(\s*[\"']?|@import\s+[\"'])\s*(?P<url>(?:https?:)?//[^\"')\s]+)", re.IGNORECASE)
_LINK_REL = re.compile(r"\brel\s*=\s*[\"'](?P<rel>[^\"']*)[\"']", re.IGNORECASE)
# <link rel=...> values that only name a page (never fetched by the browser by themselves).
_NAVIGATION_RELS = {"canonical", "author", "license", "alternate", "next", "prev", "index", "search",
                    "help", "copyright", "top", "up", "me", "bookmark"}


def log(message: str) -> None:
    print(f"[site] {message}", flush=True)


def warn_loudly(message: str) -> None:
    bar = "!" * 78
    print(f"{bar}\n[site] WARNING: {message}\n{bar}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the notebooks


def chapter_key(path: Path) -> tuple:
    """Chapter order: 01, 02, 04a, 04b, ..., 10, 13a, ..., the playground last."""
    m = re.match(r"(\d+)([a-z]*)", path.stem)
    if m:
        return (0, int(m.group(1)), m.group(2), path.stem)
    return (1, 0, "", path.stem)


def notebook_paths(notebooks: Path = NOTEBOOKS) -> list[Path]:
    """Every ``[0-9]*.ipynb`` in chapter order, then the playground (when it exists)."""
    chapters = sorted(notebooks.glob("[0-9]*.ipynb"), key=chapter_key)
    playground = notebooks / PLAYGROUND
    return chapters + ([playground] if playground.exists() else [])


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(?P<text>.+?)[ \t]*#*[ \t]*$")


def _heading_lines(text: str):
    """(line index, level, text) of each ATX heading outside fenced code."""
    fence = None
    for i, line in enumerate(text.splitlines()):
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        m = _HEADING.match(line)
        if m:
            yield i, len(m.group(1)), m.group("text").strip()


def first_heading(nb: dict) -> tuple[int, int, str] | None:
    """(cell index, line index, text) of the notebook's first markdown heading, any level."""
    for ci, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            continue
        for li, _level, text in _heading_lines(_source(cell)):
            return ci, li, text
    return None


def plain_title(text: str) -> str:
    """A heading's text without its Markdown emphasis, code marks or links."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__|\*|_|`)(.+?)\1", r"\2", text)
    return text.strip()


@dataclass
class Chapter:
    path: Path
    nb: dict
    title: str
    heading: tuple[int, int] | None = None    # (cell, line) of the first heading; None: there is none
    raw: str = ""                             # the file as read (the download: what was parsed, even
                                              # when someone saves the notebook during the build)

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Scan:
    chapters: list[Chapter] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)   # notebook name -> why


def read_chapters(paths: list[Path]) -> Scan:
    """Load the notebooks; one that is not valid JSON (mid-save) is skipped, loudly."""
    scan = Scan()
    for path in paths:
        try:
            raw = path.read_text(encoding="utf-8")
            nb = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            scan.skipped[path.name] = f"not valid JSON ({exc}); is it being saved right now?"
            warn_loudly(f"SKIPPED notebooks/{path.name}: {scan.skipped[path.name]} "
                        f"The site is built without it; build again once the notebook is saved.")
            continue
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError(f"{path}: valid JSON but not a notebook (no list of cells)")
        found = first_heading(nb)
        title = plain_title(found[2]) if found else path.stem
        scan.chapters.append(Chapter(path, nb, title, found[:2] if found else None, raw))
    return scan


# --------------------------------------------------------------------------- one page's source


def run_note(name: str) -> str:
    """The "run this notebook" note shown under each page's title (MyST Markdown)."""
    command = ("`python course.py playground` serves it as a page of its own with Voila, or open "
               f"`notebooks/{name}.ipynb` in JupyterLab (`python course.py lab`)"
               if name == Path(PLAYGROUND).stem else
               f"`python course.py lab` installs what it needs and opens JupyterLab; open "
               f"`notebooks/{name}.ipynb` there and choose *Run ▸ Run All Cells*")
    return (f":::{{admonition}} Run this notebook\n:class: tip nndl-run-note\n"
            f"This page shows `notebooks/{name}.ipynb` with the outputs saved when it last ran; its "
            f"sliders and buttons need a live Python kernel. To run it, in a clone of the course: "
            f"{command}. "
            f"{{download}}`Download the notebook <{NOTEBOOK_DOWNLOADS}/{name}.ipynb>`.\n:::\n")


def _is_progress_bar(text: str) -> bool:
    return bool(re.search(r"\d+%\|", text) or re.search(r"\d+/\d+ \[[\d:?<,.\s]*(it/s|s/it)?", text))


def widget_note(output: dict) -> dict | None:
    """What replaces an ipywidgets output on the page: a note naming its controls, or nothing
    for a progress bar (a saved tqdm bar shows a stale 0 %)."""
    data = output.get("data", {})
    text = data.get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    if _is_progress_bar(text):
        return None
    labels = list(dict.fromkeys(re.findall(r"description='([^']+)'", text)))
    controls = (" (" + ", ".join(f"<code>{_html_escape(label)}</code>" for label in labels) + ")") if labels else ""
    html = (f'<div class="nndl-widget-note">Interactive controls{controls} appear here when the notebook '
            f'runs in JupyterLab: run this notebook to use them.</div>')
    return {"output_type": "display_data", "metadata": {}, "data": {"text/html": html}}


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def prepare_notebook(chapter: Chapter) -> dict:
    """The page's source: the notebook with the run note under its title and widgets replaced."""
    nb = copy.deepcopy(chapter.nb)
    nb.setdefault("metadata", {}).pop("widgets", None)
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(m in data for m in WIDGET_MIMES):
                out = widget_note(out)
                if out is None:
                    continue
            outputs.append(out)
        cell["outputs"] = outputs
    note = {"cell_type": "markdown", "metadata": {}, "source": run_note(chapter.name)}
    if chapter.heading is None:  # a page needs a title: the notebook's name
        title = {"cell_type": "markdown", "metadata": {}, "source": f"# {chapter.name}\n"}
        if nb["cells"] and "id" in nb["cells"][0]:
            title["id"], note["id"] = "nndl-title", "nndl-run-note"
        nb["cells"][:0] = [title, note]
        return nb
    ci, li = chapter.heading
    cell = nb["cells"][ci]
    lines = _source(cell).splitlines(keepends=True)
    head, rest = "".join(lines[:li + 1]), "".join(lines[li + 1:])
    cid = str(cell.get("id") or f"cell-{ci}")[:50]
    split = [dict(cell, source=head, id=f"{cid}-title"), dict(note, id="nndl-run-note")]
    if rest.strip():
        split.append(dict(cell, source=rest, id=f"{cid}-rest"))
    if "id" not in cell:  # nbformat < 4.5: no cell ids
        for c in split:
            c.pop("id")
    nb["cells"][ci:ci + 1] = split
    return nb


def index_page(chapters: list[Chapter], skipped: dict[str, str]) -> str:
    """The start page: what the site is, how to run the notebooks, and the chapters in order."""
    main = [c for c in chapters if c.name != Path(PLAYGROUND).stem]
    extra = [c for c in chapters if c.name == Path(PLAYGROUND).stem]
    lines = [
        "# 神经网络与深度学习 · the course",
        "",
        "Jupyter notebooks that follow the textbook 《神经网络与深度学习》 (Neural Networks and Deep "
        "Learning): each chapter builds its models from scratch in NumPy, then with PyTorch. These "
        "pages show the notebooks with the outputs saved when they last ran. The sliders and "
        "buttons need a live Python kernel: in a clone of the course, `python course.py lab` "
        "installs everything and opens the notebooks in JupyterLab.",
        "",
    ]
    if skipped:
        lines += [":::{warning}", "Not on this site (the notebook was being saved when the site was built): "
                  + ", ".join(f"`{n}`" for n in skipped) + ".", ":::", ""]
    lines += ["```{toctree}", ":caption: Chapters", ":maxdepth: 1", ""]
    lines += [c.name for c in main]
    lines += ["```", ""]
    if extra:
        lines += ["```{toctree}", ":caption: Playground", ":maxdepth: 1", ""]
        lines += [c.name for c in extra]
        lines += ["```", ""]
    return "\n".join(lines)


def write_sources(chapters: list[Chapter], skipped: dict[str, str], src: Path,
                  site_config: Path = SITE_CONFIG, cjk_font: bool = True) -> None:
    """The Sphinx source folder: the configuration, the index page, one page per notebook."""
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(site_config, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    static = src / "_static"
    static.mkdir(exist_ok=True)
    shutil.copytree(mathjax_dir(), static / "mathjax", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "index.md").write_text(index_page(chapters, skipped), encoding="utf-8")
    downloads = src / NOTEBOOK_DOWNLOADS
    downloads.mkdir()
    texts = [(src / "index.md").read_text(encoding="utf-8")]
    for chapter in chapters:
        (downloads / chapter.path.name).write_text(chapter.raw, encoding="utf-8")
        page = json.dumps(prepare_notebook(chapter), ensure_ascii=False)
        (src / chapter.path.name).write_text(page, encoding="utf-8")
        texts.append(page)
    texts.append((site_config / "conf.py").read_text(encoding="utf-8"))  # the site's title
    font = write_cjk_font(cjk_characters(texts), static) if cjk_font else None
    (static / "nndl-cjk.css").write_text(cjk_css(font), encoding="utf-8")


# Chinese in the pages: a subset of Noto Sans SC (the font the figures use, from the PyPI package
# pylopdf-fonts-zh-cn, SIL OFL 1.1) with only the characters the site shows, served as a file of
# the site, so Chinese reads the same on a machine without a CJK system font.
CJK_FAMILY = "NNDL Noto Sans SC"
_CJK = re.compile(r"[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u319f\u31c0-\u31ef"
                  r"\u3200-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")


def cjk_characters(texts) -> str:
    """The CJK characters in ``texts``, sorted, each once."""
    found = set()
    for text in texts:
        found.update(_CJK.findall(text))
    return "".join(sorted(found))


# The ranges that the subset font serves (its unicode-range): Han, kana, CJK punctuation, full-width forms.
CJK_RANGES = ("U+2E80-2FDF", "U+3000-303F", "U+3040-30FF", "U+3100-312F", "U+3190-319F", "U+31C0-31EF",
              "U+3200-9FFF", "U+F900-FAFF", "U+FE30-FE4F", "U+FF00-FFEF")


def cjk_css(font_file: str | None) -> str:
    """The style sheet that puts the subset font first, for the CJK ranges only (Latin text keeps
    the theme's fonts; a font last in the list would lose to Chromium's own fallback in runs that
    start with Han characters and go on in Latin)."""
    if not font_file:
        return "/* no CJK font subset: Chinese uses the reader's system fonts */\n"
    return (f'@font-face {{\n  font-family: "{CJK_FAMILY}";\n  src: url("{font_file}") format("woff");\n'
            f"  unicode-range: {', '.join(CJK_RANGES)};\n  font-display: swap;\n}}\n"
            f":root {{\n  --pst-font-family-base: \"{CJK_FAMILY}\", var(--pst-font-family-base-system);\n"
            f"  --pst-font-family-heading: \"{CJK_FAMILY}\", var(--pst-font-family-base-system);\n"
            f"  --pst-font-family-monospace: var(--pst-font-family-monospace-system), \"{CJK_FAMILY}\";\n}}\n")


def write_cjk_font(chars: str, static: Path) -> str | None:
    """Subset the CJK font to ``chars`` into ``static/fonts``; its path relative to ``static``, or None."""
    if not chars:
        return None
    try:
        from fontTools import subset
        from pylopdf_fonts_zh_cn import sans_path
    except ImportError as exc:
        log(f"no CJK font subset ({exc}): Chinese will use the reader's system fonts")
        return None
    options = subset.Options()
    options.flavor = "woff"          # zlib: no brotli needed
    options.layout_features = ["*"]
    options.name_IDs = ["*"]         # keep the copyright and licence records (SIL OFL 1.1)
    options.notdef_outline = True
    font = subset.load_font(str(sans_path()), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    (static / "fonts").mkdir(parents=True, exist_ok=True)
    subset.save_font(font, str(static / "fonts" / "nndl-cjk.woff"), options)
    return "fonts/nndl-cjk.woff"


def mathjax_dir() -> Path:
    """MathJax 2.7 as the jupyter-server-mathjax package ships it."""
    try:
        import jupyter_server_mathjax
    except ImportError as exc:
        raise SystemExit("the site needs the 'jupyter-server-mathjax' package for a local MathJax "
                         "(pip install -r requirements-test.txt)") from exc
    path = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (path / "MathJax.js").exists():
        raise SystemExit(f"no MathJax.js in {path}")
    return path


# --------------------------------------------------------------------------- offline checks


def external_assets(text: str, kind: str = "html") -> list[str]:
    """The http(s) / protocol-relative URLs that a page (or a style sheet) would load by itself."""
    found = []
    if kind == "html":
        for m in _ASSET_ATTR.finditer(text):
            if m.group("tag").lower() == "link":
                rel = _LINK_REL.search(m.group(0)) or _LINK_REL.search(text[m.start():text.find(">", m.start())])
                if rel and set(rel.group("rel").lower().split()) <= _NAVIGATION_RELS:
                    continue
            found.append(m.group("url"))
        for style in re.findall(r"<style\b[^>]*>(.*?)</style>", text, flags=re.S | re.I):
            found += external_assets(style, "css")
        for attr in re.findall(r"\sstyle\s*=\s*\"([^\"]*)\"", text, flags=re.I):
            found += external_assets(attr, "css")
    else:
        found += [m.group("url") for m in _CSS_URL.finditer(text)]
    return found


def check_offline(out: Path) -> dict[str, list[str]]:
    """{file: URLs} for every built page or style sheet that would load something from the network."""
    problems = {}
    for path in sorted(out.rglob("*")):
        if path.suffix not in (".html", ".css") or not path.is_file():
            continue
        if "mathjax" in path.relative_to(out).parts:
            continue  # MathJax's own files: checked as a whole by the browser test (no request leaves)
        urls = external_assets(path.read_text(encoding="utf-8", errors="replace"),
                               "html" if path.suffix == ".html" else "css")
        if urls:
            problems[str(path.relative_to(out))] = sorted(set(urls))
    return problems


# --------------------------------------------------------------------------- build


def newest_input_mtime(notebooks: Path = NOTEBOOKS) -> float:
    """The newest of the notebooks, the site configuration and this module: what the site is built from."""
    paths = notebook_paths(notebooks) + [p for p in SITE_CONFIG.rglob("*") if p.is_file()] + [Path(__file__)]
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def is_current(out: Path = DEFAULT_OUT, notebooks: Path = NOTEBOOKS) -> bool:
    """A built site newer than everything it is built from, with the same notebooks, none skipped."""
    stamp = out / STAMP
    try:
        info = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    names = [p.name for p in notebook_paths(notebooks)]
    return (info.get("notebooks") == names and not info.get("skipped")
            and stamp.stat().st_mtime > newest_input_mtime(notebooks))


def _sphinx(src: Path, html: Path, doctrees: Path, warnings_file: Path) -> int:
    from sphinx.cmd.build import build_main

    return build_main(["-b", "html", "-q", "-d", str(doctrees), "-w", str(warnings_file), str(src), str(html)])


def _replace_output(built: Path, out: Path) -> None:
    """Swap the new site into place; refuse to delete a folder that is not a site of ours."""
    if out.exists():
        if not (out / STAMP).exists() and any(out.iterdir()):
            raise SystemExit(f"{out} exists and is not a site built by this module: choose another --out")
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        built.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        built.rename(out)


def build(out: Path = DEFAULT_OUT, notebooks: Path = NOTEBOOKS, keep_sources: Path | None = None) -> int:
    t0 = time.monotonic()
    out = out.resolve()
    paths = notebook_paths(notebooks)
    if not paths:
        raise SystemExit(f"no notebooks in {notebooks}")
    scan = read_chapters(paths)
    log(f"{len(scan.chapters)} pages from {notebooks}: " + ", ".join(c.name for c in scan.chapters))
    with tempfile.TemporaryDirectory(prefix="nndl-site-") as tmp:
        tmp = Path(tmp)
        src = keep_sources.resolve() if keep_sources else tmp / "src"
        if src.exists() and any(src.iterdir()) and not (src / NOTEBOOK_DOWNLOADS).is_dir():
            raise SystemExit(f"{src} is not empty and holds no sources of ours: choose another --keep-sources")
        write_sources(scan.chapters, scan.skipped, src)
        log(f"Sphinx sources in {src}; building (execution off, nothing fetched)")
        # The staging folder sits beside the output, so that the final rename stays on one disk;
        # Sphinx writes into staging/html (myst-nb puts its copies in the html folder's parent:
        # staging/jupyter_execute, removed with the staging folder).
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        html = staging / "html"
        try:
            warnings_file = tmp / "warnings.txt"
            code = _sphinx(src, html, tmp / "doctrees", warnings_file)
            warnings = warnings_file.read_text(errors="replace").strip() if warnings_file.exists() else ""
            if code != 0:
                log(f"Sphinx failed (exit {code})")
                return code
            problems = check_offline(html)
            if problems:
                for page, urls in problems.items():
                    print(f"[site] {page} would load from the network: {', '.join(urls)}", file=sys.stderr)
                log("FAILED: the built pages must load nothing from the network")
                return 3
            elapsed = time.monotonic() - t0
            (html / STAMP).write_text(json.dumps({
                "notebooks": [p.name for p in paths],
                "pages": {c.name: c.title for c in scan.chapters},
                "skipped": scan.skipped,
                "warnings": len(warnings.splitlines()) if warnings else 0,
                "build_s": round(elapsed, 1),
            }, ensure_ascii=False, indent=2))
            if warnings:
                (html / "_sphinx_warnings.txt").write_text(warnings + "\n")
            _replace_output(html, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if warnings:
        log(f"{len(warnings.splitlines())} Sphinx warning line(s): see {out / '_sphinx_warnings.txt'}")
    if scan.skipped:
        warn_loudly("built WITHOUT " + ", ".join(scan.skipped) + " (not valid JSON: see above)")
    log(f"built {len(scan.chapters)} pages in {time.monotonic() - t0:.0f} s: open {out / 'index.html'} "
        f"(or serve it: python -m http.server -b 127.0.0.1 -d {_shown(out)})")
    return 0


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nndl_helpers.site", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the website from the committed notebooks (offline)")
    b.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: artifacts/site)")
    b.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help=argparse.SUPPRESS)
    b.add_argument("--keep-sources", type=Path, default=None,
                   help="write the generated Sphinx sources here and keep them (for debugging)")
    args = parser.parse_args(argv)
    if args.command == "build":
        return build(args.out, args.notebooks, args.keep_sources)
    return 2


if __name__ == "__main__":
    sys.exit(main())
