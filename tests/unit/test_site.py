"""The course's website (nndl_helpers.site): which pages, in which order, with which titles, the
"run this notebook" note, widgets, and that nothing in the generated sources loads from the network.

These tests check the generation logic on small notebooks made here; one builds a tiny site with
Sphinx (a few seconds). The real site, in a real browser, is tests/browser/test_browser.py's.
"""
from __future__ import annotations

import json
import os
import runpy
import time
from pathlib import Path

import pytest

from nndl_helpers import site

WIDGET = "application/vnd.jupyter.widget-view+json"


def _md(text: str, cid: str | None = None) -> dict:
    cell = {"cell_type": "markdown", "metadata": {}, "source": text}
    if cid:
        cell["id"] = cid
    return cell


def _code(source: str = "x = 1", outputs=(), cid: str | None = None) -> dict:
    cell = {"cell_type": "code", "metadata": {}, "source": source, "execution_count": 1, "outputs": list(outputs)}
    if cid:
        cell["id"] = cid
    return cell


def _nb(*cells, minor: int = 4) -> dict:
    return {"nbformat": 4, "nbformat_minor": minor, "cells": list(cells),
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "language_info": {"name": "python"}}}


def _write(folder: Path, name: str, nb: dict | str) -> Path:
    path = folder / name
    path.write_text(nb if isinstance(nb, str) else json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    return path


def _widget_output(text: str) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {WIDGET: {"model_id": "abc", "version_major": 2, "version_minor": 0}, "text/plain": [text]}}


# --------------------------------------------------------------------------- which notebooks, in which order


def test_pages_are_every_numbered_notebook_in_chapter_order_then_the_playground(tmp_path):
    for name in ["10_model_independent.ipynb", "02_linear.ipynb", "04b_autodiff.ipynb", "04a_ffn.ipynb",
                 "01_introduction.ipynb", "13a_vae.ipynb", "9_odd.ipynb", "playground.ipynb",
                 "scratch.ipynb", "README.md", "15_seq.ipynb"]:
        (tmp_path / name).write_text("{}")
    assert [p.name for p in site.notebook_paths(tmp_path)] == [
        "01_introduction.ipynb", "02_linear.ipynb", "04a_ffn.ipynb", "04b_autodiff.ipynb", "9_odd.ipynb",
        "10_model_independent.ipynb", "13a_vae.ipynb", "15_seq.ipynb", "playground.ipynb"]


def test_without_a_playground_the_chapters_alone(tmp_path):
    (tmp_path / "03_x.ipynb").write_text("{}")
    assert [p.name for p in site.notebook_paths(tmp_path)] == ["03_x.ipynb"]


def test_the_repository_notebooks_are_all_pages():
    paths = site.notebook_paths()
    names = [p.name for p in paths]
    assert names[-1] == "playground.ipynb"
    assert set(names[:-1]) == {p.name for p in site.NOTEBOOKS.glob("[0-9]*.ipynb")}
    numbers = [site.chapter_key(p)[1:3] for p in paths[:-1]]
    assert numbers == sorted(numbers)


# --------------------------------------------------------------------------- titles


def test_the_title_is_the_first_heading_of_any_level_outside_code_fences():
    nb = _nb(_code(), _md("Some words first.\n\n```\n# not a heading\n```\n"),
             _md("intro\n## 05a · Convolution **from scratch** (`卷积`)\n# later heading"))
    assert site.first_heading(nb) == (2, 1, "05a · Convolution **from scratch** (`卷积`)")
    assert site.plain_title("05a · Convolution **from scratch** (`卷积`) [NNDL](https://x)") == \
        "05a · Convolution from scratch (卷积) NNDL"


def test_titles_come_from_the_notebooks(tmp_path):
    a = _write(tmp_path, "02_a.ipynb", _nb(_md("# 02 · Linear regression\ntext")))
    b = _write(tmp_path, "03_b.ipynb", _nb(_code(), _md("no heading here")))
    scan = site.read_chapters([a, b])
    assert [(c.name, c.title) for c in scan.chapters] == [("02_a", "02 · Linear regression"), ("03_b", "03_b")]
    assert scan.chapters[0].heading == (0, 0) and scan.chapters[1].heading is None


def test_every_repository_notebook_has_a_heading_for_its_title():
    scan = site.read_chapters(site.notebook_paths())
    missing = [c.name for c in scan.chapters if c.heading is None]
    assert not missing, f"these notebooks have no Markdown heading to title their page: {missing}"


# --------------------------------------------------------------------------- a notebook being saved


def test_a_notebook_that_is_not_valid_json_is_skipped_loudly(tmp_path, capsys):
    good = _write(tmp_path, "02_a.ipynb", _nb(_md("# A")))
    half = _write(tmp_path, "03_b.ipynb", '{"cells": [{"cell_type": "mark')
    scan = site.read_chapters([good, half])
    assert [c.name for c in scan.chapters] == ["02_a"]
    assert list(scan.skipped) == ["03_b.ipynb"]
    err = capsys.readouterr().err
    assert "SKIPPED notebooks/03_b.ipynb" in err and "not valid JSON" in err and "!!!!" in err
    page = site.index_page(scan.chapters, scan.skipped)
    assert "{warning}" in page and "`03_b.ipynb`" in page


def test_valid_json_that_is_not_a_notebook_fails(tmp_path):
    bad = _write(tmp_path, "02_a.ipynb", '{"nbformat": 4}')
    with pytest.raises(ValueError, match="not a notebook"):
        site.read_chapters([bad])


# --------------------------------------------------------------------------- the page's source


def test_the_run_note_says_how_to_run_this_notebook():
    note = site.run_note("02_linear_regression")
    assert "Run this notebook" in note and "`notebooks/02_linear_regression.ipynb`" in note
    assert "python course.py lab" in note and "Run All Cells" in note
    assert "{download}`Download the notebook <_notebooks/02_linear_regression.ipynb>`" in note
    assert "python course.py playground" in site.run_note("playground")


def _chapter(tmp_path, nb, name="02_a.ipynb"):
    return site.read_chapters([_write(tmp_path, name, nb)]).chapters[0]


def test_the_note_comes_right_under_the_title_and_the_rest_of_that_cell_follows(tmp_path):
    chapter = _chapter(tmp_path, _nb(_code(cid="c0"), _md("# 02 · Title\n\nIntro text.\n", cid="m1"),
                                     _md("## Part", cid="m2"), minor=5))
    cells = site.prepare_notebook(chapter)["cells"]
    assert [c["cell_type"] for c in cells] == ["code", "markdown", "markdown", "markdown", "markdown"]
    assert cells[1]["source"] == "# 02 · Title\n"
    assert cells[2]["source"] == site.run_note("02_a")
    assert cells[3]["source"] == "\nIntro text.\n"
    ids = [c["id"] for c in cells]
    assert len(set(ids)) == len(ids) and all(len(i) <= 64 for i in ids)
    assert chapter.nb["cells"][1]["source"] == "# 02 · Title\n\nIntro text.\n"  # the original is untouched


def test_a_notebook_without_cell_ids_gets_none(tmp_path):
    chapter = _chapter(tmp_path, _nb(_md("# T"), minor=4))
    cells = site.prepare_notebook(chapter)["cells"]
    assert len(cells) == 2 and not any("id" in c for c in cells)


def test_a_notebook_without_a_heading_is_titled_by_its_name(tmp_path):
    chapter = _chapter(tmp_path, _nb(_code(cid="c0"), minor=5), name="07c_x.ipynb")
    cells = site.prepare_notebook(chapter)["cells"]
    assert cells[0]["source"] == "# 07c_x\n" and cells[1]["source"] == site.run_note("07c_x")


def test_widgets_become_a_note_naming_their_controls_and_progress_bars_go(tmp_path):
    slider = _widget_output("interactive(children=(IntSlider(value=3, description='beam width', max=8), "
                            "Dropdown(description='<src>', options=('a',)), Output()), …")
    bar = _widget_output("GRU language model, epoch 1/2:   0%|          | 0/65 [00:00<?, ?it/s]")
    png = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=", "text/plain": ["<Figure>"]}}
    chapter = _chapter(tmp_path, _nb(_md("# T"), _code(outputs=[bar, slider, png])))
    outputs = site.prepare_notebook(chapter)["cells"][-1]["outputs"]
    assert len(outputs) == 2 and outputs[1] == png
    html = outputs[0]["data"]["text/html"]
    assert set(outputs[0]["data"]) == {"text/html"}
    assert "<code>beam width</code>" in html and "<code>&lt;src&gt;</code>" in html and "run this notebook" in html


def test_no_repository_notebook_page_keeps_a_widget_output():
    for chapter in site.read_chapters(site.notebook_paths()).chapters:
        nb = site.prepare_notebook(chapter)
        assert "widgets" not in nb["metadata"]
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                assert not set(out.get("data", {})) & set(site.WIDGET_MIMES), chapter.name


def test_the_index_lists_the_chapters_in_order_and_the_playground_apart(tmp_path):
    paths = [_write(tmp_path, n, _nb(_md(f"# {n}"))) for n in ["01_a.ipynb", "02_b.ipynb", "playground.ipynb"]]
    page = site.index_page(site.read_chapters(paths).chapters, {})
    chapters, playground = page.split(":caption: Chapters")[1].split(":caption: Playground")
    assert chapters.index("01_a") < chapters.index("02_b") and "playground" not in chapters
    assert "playground" in playground
    assert "python course.py lab" in page and "{warning}" not in page


# --------------------------------------------------------------------------- nothing from the network


@pytest.mark.parametrize("html", [
    '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>',
    '<script defer="defer" src="//cdnjs.cloudflare.com/require.js"></script>',
    '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Lato">',
    '<link href="https://fonts.gstatic.com/x.woff2" rel="preload" as="font">',
    '<img alt="x" src="http://example.org/a.png">',
    '<style>@import url("https://fonts.googleapis.com/css2?family=Noto");</style>',
    '<div style="background: url(https://example.org/bg.png)"></div>',
    '<iframe src="https://www.youtube.com/embed/x"></iframe>',
])
def test_an_external_asset_is_found(html):
    assert site.external_assets(html)


@pytest.mark.parametrize("html", [
    '<a href="https://playground.tensorflow.org">a link to follow</a>',
    '<link rel="canonical" href="https://example.org/page.html">',
    '<script src="_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"></script>',
    '<link rel="stylesheet" href="_static/styles/theme.css">',
    '<img src="_images/fig.png"><svg xmlns="http://www.w3.org/2000/svg"></svg>',
])
def test_a_local_asset_or_a_link_is_not(html):
    assert site.external_assets(html) == []


def test_check_offline_names_the_page_and_the_url(tmp_path):
    (tmp_path / "ok.html").write_text('<script src="_static/a.js"></script>')
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "bad.css").write_text('@font-face { src: url("https://fonts.gstatic.com/f.woff2") }')
    (tmp_path / "bad.html").write_text('<script src="https://cdn.example/x.js"></script>')
    assert site.check_offline(tmp_path) == {"_static/bad.css": ["https://fonts.gstatic.com/f.woff2"],
                                            "bad.html": ["https://cdn.example/x.js"]}


def test_the_site_configuration_names_no_external_asset():
    for path in site.SITE_CONFIG.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".css", ".svg", ".js"):
            kind = "css" if path.suffix == ".css" else "html"
            assert not site.external_assets(path.read_text(encoding="utf-8"), kind), path
    conf = runpy.run_path(str(site.SITE_CONFIG / "conf.py"))
    assert conf["nb_execution_mode"] == "off"                 # never run a notebook (nor fetch a kernel)
    assert conf["nb_ipywidgets_js"] == {}                     # myst-nb's default: two CDN scripts
    assert "//" not in conf["mathjax_path"] and not conf["mathjax_path"].startswith("http")
    assert not conf.get("intersphinx_mapping")
    assets = [*conf.get("html_js_files", []), *conf.get("html_css_files", []), conf.get("html_favicon", ""),
              conf.get("html_logo") or ""]
    assert not [a for a in assets if "//" in str(a)]
    assert conf["html_theme_options"].get("launch_buttons") == {}
    blob = json.dumps({k: v for k, v in conf.items() if not k.startswith("_") and
                       isinstance(v, (str, int, float, list, dict, tuple, type(None)))}, default=str)
    assert "cdn" not in blob.lower() and "googleapis" not in blob


def test_generated_sources_are_complete_and_local(tmp_path):
    paths = [_write(tmp_path, "02_a.ipynb", _nb(_md("# 02 · A 线性回归"))),
             _write(tmp_path, "playground.ipynb", _nb(_md("# Playground")))]
    scan = site.read_chapters(paths)
    src = tmp_path / "src"
    site.write_sources(scan.chapters, scan.skipped, src, cjk_font=False)
    assert (src / "conf.py").read_text() == (site.SITE_CONFIG / "conf.py").read_text()
    conf = runpy.run_path(str(src / "conf.py"))
    mathjax, _, query = conf["mathjax_path"].partition("?")
    assert (src / "_static" / mathjax).is_file()
    assert (src / "_static" / "mathjax" / "config" / (query.split("=")[1] + ".js")).is_file()
    for css in conf["html_css_files"]:
        assert (src / "_static" / css).is_file(), css
    assert (src / conf["html_favicon"]).is_file()
    assert (src / "_notebooks" / "02_a.ipynb").read_text() == paths[0].read_text()
    page = json.loads((src / "02_a.ipynb").read_text(encoding="utf-8"))
    assert page["cells"][1]["source"] == site.run_note("02_a")
    for path in [src / "index.md", *src.glob("*.ipynb"), *(src / "_static").glob("*.css")]:
        assert not site.external_assets(path.read_text(encoding="utf-8"), "css" if path.suffix == ".css" else "html")


def test_the_cjk_font_subset_is_served_by_the_site(tmp_path):
    assert site.cjk_characters(["abc 线性回归", "回归 · x"]) == "".join(sorted("线性回归"))
    css = site.cjk_css("fonts/nndl-cjk.woff")
    assert 'url("fonts/nndl-cjk.woff")' in css and "unicode-range: U+2E80-2FDF" in css
    assert not site.external_assets(css, "css")
    assert "system fonts" in site.cjk_css(None)
    pytest.importorskip("fontTools")
    pytest.importorskip("pylopdf_fonts_zh_cn")
    assert site.write_cjk_font("线性回归", tmp_path) == "fonts/nndl-cjk.woff"
    from fontTools.ttLib import TTFont
    cmap = TTFont(str(tmp_path / "fonts" / "nndl-cjk.woff")).getBestCmap()
    assert {ord(c) for c in "线性回归"} <= set(cmap) and len(cmap) < 50


# --------------------------------------------------------------------------- reuse, output, command line


def _stamp(out: Path, names: list[str], skipped=None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / site.STAMP).write_text(json.dumps({"notebooks": names, "skipped": skipped or {}}))


def test_a_built_site_is_current_until_a_notebook_changes(tmp_path, monkeypatch):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    a = _write(nbs, "02_a.ipynb", _nb(_md("# A")))
    past = time.time() - 100
    monkeypatch.setattr(site, "newest_input_mtime", lambda notebooks=None: max(p.stat().st_mtime for p in nbs.iterdir()))
    os.utime(a, (past, past))
    out = tmp_path / "out"
    _stamp(out, ["02_a.ipynb"])
    assert site.is_current(out, nbs)
    a.write_text(a.read_text())                   # saved again: newer than the site
    assert not site.is_current(out, nbs)
    os.utime(a, (past, past))
    _write(nbs, "03_b.ipynb", _nb(_md("# B")))    # a new notebook
    os.utime(nbs / "03_b.ipynb", (past, past))
    assert not site.is_current(out, nbs)
    _stamp(out, ["02_a.ipynb", "03_b.ipynb"], skipped={"03_b.ipynb": "not valid JSON"})
    assert not site.is_current(out, nbs)          # built without one: build again
    _stamp(out, ["02_a.ipynb", "03_b.ipynb"])
    assert site.is_current(out, nbs)
    assert not site.is_current(tmp_path / "nowhere", nbs)


def test_the_output_replaces_only_a_site_of_ours(tmp_path):
    built = tmp_path / "built"
    built.mkdir()
    (built / "index.html").write_text("new")
    mine = tmp_path / "mine"
    (mine / "old.html").parent.mkdir()
    (mine / "old.html").write_text("old")
    with pytest.raises(SystemExit, match="not a site built by this module"):
        site._replace_output(built, mine)
    _stamp(mine, [])
    site._replace_output(built, mine)
    assert sorted(p.name for p in mine.iterdir()) == ["index.html"]


def test_the_command_line(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(site, "build", lambda out, notebooks, keep: calls.append((out, notebooks, keep)) or 0)
    assert site.main(["build"]) == 0
    assert site.main(["build", "--out", str(tmp_path / "x"), "--keep-sources", str(tmp_path / "s")]) == 0
    assert calls == [(site.DEFAULT_OUT, site.NOTEBOOKS, None), (tmp_path / "x", site.NOTEBOOKS, tmp_path / "s")]
    assert site.DEFAULT_OUT == Path(site.REPO, "artifacts", "site")


def test_keep_sources_never_empties_a_folder_of_someone_else(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write(nbs, "02_a.ipynb", _nb(_md("# A")))
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    with pytest.raises(SystemExit, match="holds no sources of ours"):
        site.build(tmp_path / "out", nbs, keep_sources=precious)
    assert (precious / "thesis.tex").exists() and not (tmp_path / "out").exists()


def test_the_default_output_is_git_ignored():
    ignored = (site.REPO / ".gitignore").read_text().splitlines()
    assert "artifacts/" in ignored


# --------------------------------------------------------------------------- one small real build


def test_a_tiny_site_builds_offline_with_its_note_math_and_search(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    pytest.importorskip("sphinx_book_theme")
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    slider = _widget_output("interactive(children=(FloatSlider(value=1.0, description='gamma'), Output()), …")
    _write(nbs, "02_a.ipynb", _nb(_md("# 02 · Backpropagation 反向传播\n\nThe loss $L(\\theta)$ and\n\n"
                                      "$$\\nabla_\\theta L = 0$$\n\nSee [the next](10_b.ipynb)."),
                                  _code("print(1)", [slider, {"output_type": "stream", "name": "stdout",
                                                               "text": "1\n"}])))
    _write(nbs, "10_b.ipynb", _nb(_md("# 10 · Later")))
    _write(nbs, "playground.ipynb", _nb(_md("# Playground")))
    _write(nbs, "11_c.ipynb", '{"cells": [')            # being saved: skipped, the build goes on
    out = tmp_path / "site"
    assert site.build(out, nbs) == 0
    info = json.loads((out / site.STAMP).read_text())
    assert list(info["pages"]) == ["02_a", "10_b", "playground"] and list(info["skipped"]) == ["11_c.ipynb"]
    page = (out / "02_a.html").read_text(encoding="utf-8")
    assert "Run this notebook" in page and "nndl-widget-note" in page and "<code>gamma</code>" in page
    assert 'src="_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full' in page
    assert 'class="math notranslate nohighlight"' in page and 'href="10_b.html"' in page
    assert "copybutton.js" in page
    assert (out / "_static" / "mathjax" / "MathJax.js").is_file() and (out / "search.html").is_file()
    assert "backpropagation" in (out / "searchindex.js").read_text().lower()
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.index('href="02_a.html"') < index.index('href="10_b.html"') < index.index('href="playground.html"')
    assert site.check_offline(out) == {}
    assert not list(out.glob("_sources/**/*.ipynb"))        # the notebooks are downloads instead
    assert list((out / "_downloads").rglob("02_a.ipynb"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks", "site"]   # no staging, no jupyter_execute
