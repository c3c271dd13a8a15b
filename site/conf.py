"""Sphinx configuration of the course's website (read by ``python -m nndl_helpers.site build``).

``nndl_helpers.site`` copies this folder next to the chapter pages it generates from the
notebooks and runs Sphinx there; nothing here is meant to be built by hand. Two rules:

* no network at build time: the notebooks are never executed (myst-nb's ``nb_execution_mode``
  is "off": the committed outputs are the pages), and the theme fetches nothing;
* no network at view time: every script, style sheet, font and image is served from the site
  itself. MathJax 2 comes from the ``jupyter-server-mathjax`` package (copied to
  ``_static/mathjax``), math is drawn as SVG (no web fonts), and myst-nb's default ipywidgets
  scripts (two CDN URLs) are switched off. The builder checks the built HTML for any
  http(s) asset URL and fails when it finds one.
"""

project = "神经网络与深度学习 · the course"
author = "the course's authors"
copyright = "the course's authors"
html_title = "神经网络与深度学习 · the course"
language = "en"

extensions = ["myst_nb", "sphinx_copybutton", "sphinx.ext.mathjax"]

root_doc = "index"
smartquotes = False   # the notebooks' own quotes: titles and prose read as in JupyterLab
exclude_patterns = ["_build", "_notebooks", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["nndl-site.css", "nndl-cjk.css"]   # nndl-cjk.css: written by the builder
html_favicon = "_static/favicon.svg"                  # else the browser asks for /favicon.ico (a 404)
# The theme's light / dark mode; without a default its script logs an error on a first visit.
html_context = {"default_mode": "light"}

# The committed, executed notebooks are the pages: never run them.
nb_execution_mode = "off"
# myst-nb adds require.js and the ipywidgets embed manager from CDNs on pages with widgets;
# the builder replaces every widget output with a note, and nothing is loaded from elsewhere.
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]
nb_merge_streams = True
nb_render_markdown_format = "myst"

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_dmath_double_inline = True     # $$...$$ inside a paragraph, as in JupyterLab
# myst-parser would add a MathJax 3/4 configuration and hide whole sections from MathJax; with
# MathJax 2 the delimiters below are enough: only \( \) and \[ \], which Sphinx writes around
# each formula (a literal $ stays a dollar), and never inside code or outputs (<pre>).
myst_heading_anchors = 3
myst_update_mathjax = False
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]

# MathJax 2.7 from the jupyter-server-mathjax package (copied into _static/mathjax by the builder;
# a relative mathjax_path is served from _static). The package ships the combined configuration
# that Jupyter's classic notebook used: TeX input, HTML-CSS output with the STIX-Web fonts, all as
# files of the site. The math menu is off: nothing a reader clicks loads more.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                "processEscapes": False, "processEnvironments": False, "processRefs": False},
    "TeX": {"equationNumbers": {"autoNumber": "none"}},
    "HTML-CSS": {"availableFonts": [], "webFont": "STIX-Web", "imageFont": None, "preferredFont": None,
                 "linebreaks": {"automatic": False},
                 # MathJax's own placeholder face points at about:blank, which Chromium reports as
                 # a blocked request (a console error); a local() name that no system has behaves
                 # the same (the face never loads) and asks for nothing.
                 "styles": {"@font-face": {"font-family": "MathJax_Blank", "src": "local('MathJax_Blank')"}}},
    # The hidden MathML that MathJax adds for screen readers takes the NativeMML output's styles,
    # whose faces point at MathJax's TeX fonts (not in the package: 404s). Local names that no
    # system has ask for nothing; the MathML is invisible anyway.
    "NativeMML": {"styles": {
        f"@font-face /*{i}*/": {"font-family": family, "src": f"local('{family}')", **extra}
        for i, family, extra in [(1, "MathJax_Caligraphic-WEB", {}),
                                 (2, "MathJax_Caligraphic-WEB", {"font-weight": "bold"}),
                                 (3, "MathJax_AMS-WEB", {}), (4, "MathJax_Script-WEB", {}),
                                 (5, "MathJax_Fraktur-WEB", {}),
                                 (6, "MathJax_Fraktur-WEB", {"font-weight": "bold"})]}},
    "fast-preview": {"disabled": True},   # one pass, straight to the final rendering
    "showMathMenu": False,
    "showProcessingMessages": False,
    "messageStyle": "none",
    "menuSettings": {"zoom": "None"},
}

copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_selector = "div.highlight pre"

html_theme = "sphinx_book_theme"
html_copy_source = False          # the notebooks are offered as downloads instead
html_show_sourcelink = False
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "launch_buttons": {},
    "navigation_with_keys": False,
    "search_bar_text": "Search the course ...",
    "extra_footer": "Built from the committed, executed notebooks; run them with "
                    "<code>python course.py lab</code>.",
}
html_sidebars = {"**": ["navbar-logo.html", "search-button-field.html", "sbt-sidebar-nav.html"]}
