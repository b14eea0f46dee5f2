"""Build the lesson notebooks from their readable sources: ``lessons/_src/NN_name.py`` -> ``lessons/NN_name.ipynb``.

    python lessons/_build.py                      # rewrite every notebook from its source
    python lessons/_build.py 02_convolution 04    # only these lessons (a name, its number, or a path)
    python lessons/_build.py --check [LESSON...]  # exit 1 if a committed notebook differs from its source

The sources use the "percent" cell format (as jupytext reads it):

    # %% [markdown]
    # # A title
    # Text with $\\LaTeX$.

    # %%
    x = 1                               # a code cell

    # %% tags=["solution"]
    def f(x):                           # an exercise, solved; `python -m minimix.lessons.strip_solutions`
        ### BEGIN SOLUTION              # replaces the lines between the markers with a stub
        return x
        ### END SOLUTION

Edit the ``.py`` source, run this script, commit both. The notebooks are written without outputs
or execution counts, with stable cell ids, so their diffs show only what changed.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "_src"
CELL = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")

METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python", "pygments_lexer": "ipython3"},
}


def _trim(lines: list) -> list:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _uncomment(line: str, where: str) -> str:
    if line == "#" or not line.strip():
        return ""
    if not line.startswith("# "):
        raise ValueError(f"{where}: a markdown line must start with '# ', got {line!r}")
    return line[2:]


def parse(text: str, name: str = "source") -> list:
    """The cells of a percent-format source, as nbformat 4 cell dicts."""
    cells, kind, tags, body = [], None, [], []

    def close():
        lines = _trim(body)
        if kind is None:
            if lines:
                raise ValueError(f"{name}: text before the first '# %%' cell marker")
            return
        if not lines:
            raise ValueError(f"{name}: empty cell #{len(cells) + 1}")
        if kind == "markdown":
            lines = [_uncomment(line, f"{name}, markdown cell #{len(cells) + 1}") for line in lines]
        source = "\n".join(lines)
        cell_id = f"cell-{len(cells) + 1:02d}"
        if kind == "markdown":
            cells.append({"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": _lines(source)})
        else:
            metadata = {"tags": tags} if tags else {}
            cells.append({"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": metadata,
                          "outputs": [], "source": _lines(source)})

    for line in text.split("\n"):
        match = CELL.match(line)
        if match:
            close()
            kind = "markdown" if match.group("markdown") else "code"
            tags = json.loads(match.group("tags")) if match.group("tags") else []
            body = []
        else:
            body.append(line)
    close()
    return cells


def _lines(source: str) -> list:
    """nbformat's on-disk form of a source: a list of lines, each but the last ending in newline."""
    lines = source.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def notebook_text(source_path: Path) -> str:
    notebook = {"cells": parse(source_path.read_text(encoding="utf-8"), source_path.name), "metadata": METADATA,
                "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def targets() -> dict:
    """{notebook path: its source path} for every lesson source."""
    return {HERE / f"{source.stem}.ipynb": source for source in sorted(SOURCES.glob("[0-9][0-9]_*.py"))}


def select(names=()) -> dict:
    """``targets()`` restricted to the lessons named (all for none): "02_convolution", "02", or a path to
    the source or the notebook. A name that matches no lesson is a ValueError."""
    every = targets()
    if not names:
        return every
    chosen = {}
    for name in names:
        stem = Path(name).stem
        matches = {nb: src for nb, src in every.items() if src.stem == stem or src.stem.split("_")[0] == stem}
        if not matches:
            raise ValueError(f"no lesson {name!r}; the lessons are {', '.join(src.stem for src in every.values())}")
        chosen.update(matches)
    return chosen


def stale(names=()) -> list:
    """Notebooks missing or different from what their source builds (of the lessons named, else all)."""
    return [nb for nb, src in select(names).items()
            if not nb.is_file() or nb.read_text(encoding="utf-8") != notebook_text(src)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    names = [a for a in argv if a != "--check"]
    if any(a.startswith("-") for a in names):
        print(__doc__)
        return 2
    try:
        chosen = select(names)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if check:
        out_of_date = stale(names)
        for nb in out_of_date:
            print(f"{nb.name} is out of date: run `python lessons/_build.py {nb.stem}`")
        return 1 if out_of_date else 0
    for nb, src in chosen.items():
        nb.write_text(notebook_text(src), encoding="utf-8")
        print(f"wrote {nb.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
