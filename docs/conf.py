"""Sphinx configuration: MyST Markdown pages, the API reference from the docstrings (autodoc with
napoleon for their Google style), the equations in MathJax. Built by README.md's docs command
with warnings as errors."""

from __future__ import annotations

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the source tree's skip_rnn, installed or not

import skip_rnn  # noqa: E402

project = "skip-rnn"
author = "the skip-rnn authors"
copyright = "the skip-rnn authors"  # noqa: A001 - Sphinx's name
release = version = skip_rnn.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3  # the pages link to each other's sections by their slugs

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"skip-rnn {release}"

# The README is the front page: docs/index.md is README.md, its links made relative to docs/.
_README_LINKS = [
    (r"\]\(docs/([^)]*)\)", r"](\1)"),
    (r"\]\(RESULTS\.md", "](results.md"),
    (r"\]\(BENCHMARKS\.md", "](benchmarks.md"),
    (r"\]\(CHANGELOG\.md", "](changelog.md"),
]


def _front_page(app, docname, source):
    if docname != "index":
        return
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    for pattern, replacement in _README_LINKS:
        text = re.sub(pattern, replacement, text)
    toctree = source[0].split("<!-- the pages -->", 1)[1]
    source[0] = text + toctree


def setup(app):
    app.connect("source-read", _front_page)
