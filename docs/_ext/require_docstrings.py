"""Sphinx extension: every public name the API reference documents must have a docstring.

Sphinx itself says nothing about an object without a docstring (autodoc shows its signature and an
empty body). This extension looks at every object autodoc documents (``undoc-members`` is on in
``conf.py``, so none is left out silently) and warns, naming the object, when it has no docstring:
a class needs its own; a method may share the one of the method it overrides (``forward``). Under ``sphinx-build -W`` the warning fails the build.

Not counted as docstrings: the ``ClassName(field, ...)`` text that ``dataclasses`` and
``namedtuple`` write for a class without one, and the docstring of an attribute's type (an int
constant is not documented by ``int.__doc__``).
"""
import dataclasses
import inspect

from sphinx.util import logging

logger = logging.getLogger(__name__)

# what autodoc reports for objects whose docstring is their own, not their value's type's
_CHECKED = {"module", "class", "exception", "function", "method", "property", "classmethod", "staticmethod",
            "decorator"}


def _generated_class_doc(obj) -> bool:
    """True where a class's only docstring was written by dataclasses or namedtuple."""
    doc = obj.__doc__ or ""
    generated = dataclasses.is_dataclass(obj) or (issubclass(obj, tuple) and hasattr(obj, "_fields"))
    return generated and doc.startswith(f"{obj.__name__}(")


def _has_docstring(what: str, obj) -> bool:
    if isinstance(obj, property):
        obj = obj.fget
    if inspect.isclass(obj):  # a class's own: inspect.getdoc would lend it its base class's (Module's)
        doc = obj.__dict__.get("__doc__")
    else:  # a method overriding a documented one (forward, update, lr_at) shares that docstring
        doc = inspect.getdoc(obj)
    if not doc or not doc.strip():
        return False
    if what in ("class", "exception") and inspect.isclass(obj) and _generated_class_doc(obj):
        return False
    return True


def check_docstring(app, what, name, obj, options, lines):
    """``autodoc-process-docstring`` hook: warn about a public object without a docstring."""
    if what not in _CHECKED:
        return  # data and attributes: their docstrings are '#:' comments, checked by what autodoc found
    if name.rsplit(".", 1)[-1].startswith("_"):
        return
    if not _has_docstring(what, obj):
        logger.warning("public %s %s has no docstring (every public name needs one: it is the API reference)",
                       what, name, type="minimix", subtype="docstring")


def setup(app):
    """Register the hook; safe for parallel reads."""
    app.connect("autodoc-process-docstring", check_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
