"""The documentation cannot go stale: docs/pytorch.md lists exactly the public names, and the API
reference builds with warnings as errors (a public name without a docstring, a broken cross-reference
or a malformed docstring fails it; docs/_ext/require_docstrings.py names each).

docs/pytorch.md is read section by section: a heading whose first code span names an area
(``## Tensors: `minimix.Tensor` ``) opens that area; the first cell of every table row under it names
minimix objects as code spans (`` `x.max(dim)` ``, `` `nn.Linear` ``: the last dotted part before any
parenthesis is the name; spans that are not names, like `` `a + b` ``, are ignored).
"""
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, require

PAGE = REPO / "docs" / "pytorch.md"


def _public(names) -> set:
    return {n for n in names if not n.startswith("_")}


def _members(cls) -> set:
    """Public methods and properties of a class, inherited from minimix classes included."""
    return _public(dir(cls))


def _defined_here(module, prefix: str) -> set:
    """Public non-module names of a module without ``__all__`` whose objects come from ``prefix``."""
    out = set()
    for name in _public(dir(module)):
        obj = getattr(module, name)
        if not inspect.ismodule(obj) and getattr(obj, "__module__", "").startswith(prefix):
            out.add(name)
    return out


def public_names() -> dict:
    """``{area: set of public names}``, collected from the code (the areas are the page's sections)."""
    import minimix
    import minimix.models
    import minimix.nn
    import minimix.nn.functional
    import minimix.optim
    from minimix.optim import lr_scheduler

    return {
        "minimix": set(minimix.__all__),
        "minimix.Tensor": _members(minimix.Tensor),
        "minimix.nn": set(minimix.nn.__all__),
        "minimix.nn.Module": _members(minimix.nn.Module),
        "minimix.nn.functional": _defined_here(minimix.nn.functional, "minimix."),
        "minimix.optim": set(minimix.optim.__all__),
        "minimix.optim.Optimizer": _members(minimix.optim.Optimizer),
        "minimix.optim.lr_scheduler": (set(lr_scheduler.__all__) if hasattr(lr_scheduler, "__all__")
                                       else _defined_here(lr_scheduler, lr_scheduler.__name__)),
        "minimix.models": set(minimix.models.__all__),
    }


_SPAN = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def span_name(span: str):
    """The name a code span in a first column stands for (``x.max(dim)`` -> ``max``), or None."""
    head = span.strip().split("(", 1)[0].strip()
    last = head.rsplit(".", 1)[-1]
    return last if _NAME.fullmatch(last) and all(_NAME.fullmatch(p) for p in head.split(".")) else None


def listed_names(text: str) -> dict:
    """``{area: {name: [line numbers]}}`` from the page's tables (see the module docstring)."""
    listed, area, header_next = {}, None, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            spans = _SPAN.findall(line)
            area = spans[0].strip() if spans else None
            header_next = True
            continue
        if not line.startswith("|"):
            header_next = True  # the next table row is a header row
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header_next or set("".join(cells)) <= set("-: "):  # the header and its rule
            header_next = False
            continue
        if area is None:
            continue
        for span in _SPAN.findall(cells[0]):
            name = span_name(span)
            if name:
                listed.setdefault(area, {}).setdefault(name, []).append(number)
    return listed


def test_span_name_reads_first_columns():
    assert span_name("x.max(dim)") == "max"
    assert span_name("nn.Linear(in, out)") == "Linear"
    assert span_name("Tensor.T") == "T"
    assert span_name("a + b") is None
    assert span_name("x[i]") is None


def test_listed_names_reads_tables_by_section():
    text = "\n".join([
        "## Tensors: `minimix.Tensor`", "", "| minimix | PyTorch |", "|---|---|", "| `x.abs()` | `torch.abs` |",
        "", "## Notes", "", "| a | b |", "|---|---|", "| `x.zzz` | c |",
        "### more `minimix.Tensor`", "| minimix | PyTorch |", "|---|---|", "| `x.exp()`, `a + b` | same |",
    ])
    assert listed_names(text) == {"minimix.Tensor": {"abs": [5], "exp": [15]}}


def test_pytorch_page_lists_every_public_name_and_nothing_else():
    text = PAGE.read_text(encoding="utf-8")
    listed = listed_names(text)
    public = public_names()
    problems = []
    for area, names in public.items():
        missing = sorted(names - set(listed.get(area, {})))
        if missing:
            problems.append(f"{area}: not on the page: {', '.join(missing)}")
    for area, names in listed.items():
        if area not in public:
            problems.append(f"section `{area}` (line {min(min(v) for v in names.values())}) is no area of "
                            f"minimix the test knows: {sorted(public)}")
            continue
        stale = sorted(f"{n} (line {', '.join(map(str, lines))})" for n, lines in names.items()
                       if n not in public[area])
        if stale:
            problems.append(f"{area}: on the page but not in minimix: {', '.join(stale)}")
    assert not problems, "docs/pytorch.md is out of date:\n" + "\n".join(problems)


def test_pytorch_page_code_runs():
    """The page's Python code (moving a state dict to PyTorch and back) runs and its checks hold."""
    require("torch", "the page's code moves weights to PyTorch")
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "docs/pytorch.md has no python code block"
    namespace = {"__name__": "pytorch_page"}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)


def test_pytorch_page_rows_name_a_pytorch_counterpart():
    """Every row says what PyTorch has instead (its name, or 'none' with what is closest)."""
    empty = []
    for number, line in enumerate(PAGE.read_text(encoding="utf-8").splitlines(), 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) >= 2 and not set("".join(cells)) <= set("-: ") and not cells[1]:
            empty.append(str(number))
    assert not empty, f"docs/pytorch.md: rows without a PyTorch column, lines {', '.join(empty)}"


def test_api_reference_builds_without_warnings(tmp_path):
    """sphinx-build -W: docstrings, cross-references and the pages (docs/) are all clean."""
    require("sphinx", "the API reference is built in CI: pip install -e '.[docs]'")
    require("myst_parser", "the API reference includes Markdown pages: pip install -e '.[docs]'")
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "doctrees"),
         str(REPO / "docs"), str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stderr[-8000:]}{result.stdout[-2000:]}"
    index = (out / "index.html").read_text(encoding="utf-8")
    for page in ("pytorch.html", "lessons.html", "api/tensor.html", "api/nn.html", "api/optim.html"):
        assert f'href="{page}' in index, f"the index does not link {page}"
    assert (out / "pytorch.html").exists()
    lessons = (out / "lessons.html").read_text(encoding="utf-8")
    assert "01_autograd.ipynb" in lessons and "_downloads" in lessons, "the lessons' links do not resolve"


def test_docstring_check_names_an_undocumented_public_name(tmp_path):
    """The build's docstring check works: a public function without a docstring fails -W, named."""
    require("sphinx", "the API reference is built in CI: pip install -e '.[docs]'")
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "undocumented_mod.py").write_text('"""A module."""\n\ndef documented():\n    """Yes."""\n\n\n'
                                                  'def bare():\n    return 1\n')
    (src / "conf.py").write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(tmp_path)!r}, {str(REPO / 'docs' / '_ext')!r}]\n"
        "extensions = ['sphinx.ext.autodoc', 'require_docstrings']\n"
        "autodoc_default_options = {'members': True, 'undoc-members': True}\n"
    )
    (src / "index.rst").write_text("Test\n====\n\n.. automodule:: undocumented_mod\n")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(src), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "undocumented_mod.bare has no docstring" in result.stderr
    assert "undocumented_mod.documented " not in result.stderr


@pytest.mark.parametrize("path", ["README.md", ".ci/run"])
def test_test_command_installs_the_docs_extra(path):
    """The README's test command and CI install the same extras, so CI builds the API reference."""
    text = (REPO / path).read_text(encoding="utf-8")
    assert '-e ".[test,docs]"' in text, f"{path} should install the test and docs extras (pip install -e \".[test,docs]\")"
