"""Sphinx configuration of minimix's API reference.

Build (warnings are errors, as in CI)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

then open ``docs/_build/html/index.html``. ``tests/test_docs.py`` runs the same build.
"""
import os
import re
import sys
from pathlib import Path

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # minimix from this checkout, installed or not
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

project = "minimix"
author = "minimix authors"
copyright = "minimix authors"  # noqa: A001 - Sphinx's name
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
    "require_docstrings",  # docs/_ext: a public name without a docstring is a warning, so -W fails
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "results"]
myst_heading_anchors = 3

autodoc_default_options = {
    "members": True,
    "undoc-members": True,  # so that require_docstrings sees (and names) every public member
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_member_order = "bysource"
autoclass_content = "both"  # the class docstring, then __init__'s (where the arguments are described)
autodoc_typehints = "signature"
autodoc_inherit_docstrings = True  # an override (Module.forward...) keeps its base class's docstring
napoleon_google_docstring = True
napoleon_numpy_docstring = True
# "Attributes:" sections as :ivar: fields: as attribute entries they would describe the members that
# undoc-members documents a second time (a duplicate-object warning).
napoleon_use_ivar = True

# A broken cross-reference (:func:`minimix.nope`) is a warning, so -W fails the build.
nitpicky = True
# What nitpicky may not complain about, each for a reason: these are types from outside minimix, named in
# type hints, that have no page here (the build is offline, so there is no intersphinx inventory to link).
nitpick_ignore_regex = [
    (r"py:.*", r"(np|numpy)(\..*)?"),           # NumPy types: np.ndarray, np.random.Generator, np.dtype
    (r"py:.*", r"(typing|collections|pathlib|os|io|types)\..*"),  # standard-library types
    (r"py:class", r"(Path|OrderedDict|Callable|Iterable|Iterator|Sequence|Mapping|Any|Optional)"),
    (r"py:class", r"(int|float|str|bool|bytes|dict|list|tuple|set|object|type|None|NoneType|callable)"),
    (r"py:class", r"(optional|default .*|array-like|array_like|ndarray|function)"),  # napoleon's words
    # private base classes shown by show-inheritance (minimix.models.blocks._Block): private, so undocumented
    (r"py:class", r"minimix(\.\w+)*\._\w+"),
]

html_theme = "alabaster"
html_title = "minimix API reference"
html_static_path = []


def _lessons_links(app, relative_path, parent_docname, content):
    """lessons/README.md, included by docs/lessons.md, links relative to lessons/ (``01_autograd.ipynb``):
    make its relative links relative to docs/, so that they resolve (a notebook becomes a download)."""
    if Path(relative_path).as_posix().endswith("lessons/README.md"):
        content[0] = re.sub(r"\]\((?![a-z][a-z0-9+.-]*:|#|/)([^)\s]+)\)", r"](../lessons/\1)", content[0])


def setup(app):
    """Connect :func:`_lessons_links` to the ``include-read`` event."""
    app.connect("include-read", _lessons_links)
