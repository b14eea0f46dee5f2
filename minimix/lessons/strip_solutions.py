"""Make the learner's version of the lessons: solutions replaced by stubs, outputs cleared.

    python -m minimix.lessons.strip_solutions lessons/ exercises/

The notebooks in ``lessons/`` ship with every exercise solved, so that CI can run them top to
bottom. An exercise cell is a code cell tagged ``solution`` (cell metadata ``"tags": ["solution"]``).
In the learner's copy:

* if the cell marks its solution with lines ``### BEGIN SOLUTION`` and ``### END SOLUTION``, only
  the lines between them are replaced (the function's signature and docstring stay), by
  ``# YOUR CODE HERE`` and ``raise NotImplementedError`` at the marker's indentation;
* otherwise the whole cell becomes that stub;
* every code cell loses its outputs and execution count.

The check cell after each exercise then reports ``FAIL ... NotImplementedError`` until the learner
has written the function.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

TAG = "solution"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError")


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def strip_source(source: str, where: str = "cell") -> str:
    """The learner's version of one solution cell's source (see the module docstring)."""
    lines = source.split("\n")
    if not any(line.strip() == BEGIN for line in lines):
        if any(line.strip() == END for line in lines):
            raise ValueError(f"{where}: has '{END}' without '{BEGIN}'")
        return "\n".join(STUB)
    out, inside = [], False
    for number, line in enumerate(lines, 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: '{BEGIN}' inside another solution block")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in STUB]
        elif marker == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: '{END}' without '{BEGIN}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '{BEGIN}' is never closed by '{END}'")
    return "\n".join(out)


def is_solution(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and TAG in cell.get("metadata", {}).get("tags", [])


def strip_notebook(notebook: dict, name: str = "notebook") -> dict:
    """A copy of ``notebook`` (nbformat 4 JSON as a dict) with solutions stubbed and outputs cleared."""
    notebook = copy.deepcopy(notebook)
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        if is_solution(cell):
            cell["source"] = strip_source(_text(cell["source"]), f"{name}, cell {index}")
    return notebook


def write_notebook(notebook: dict, path: Path):
    """Write as nbformat does (one-space indent, sorted keys, trailing newline)."""
    path.write_text(json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def strip_path(source, out_dir) -> list:
    """Strip one notebook, or every ``*.ipynb`` in a folder, into ``out_dir``; returns the written paths."""
    source, out_dir = Path(source), Path(out_dir)
    if source.is_dir():
        notebooks = sorted(source.glob("*.ipynb"))
        if not notebooks:
            raise FileNotFoundError(f"strip_solutions: no .ipynb files in {source}")
    elif source.suffix == ".ipynb" and source.is_file():
        notebooks = [source]
    else:
        raise FileNotFoundError(f"strip_solutions: {source} is neither a folder of notebooks nor an .ipynb file")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        target = out_dir / path.name
        if target.resolve() == path.resolve():
            raise ValueError(f"strip_solutions: refusing to overwrite the solved notebook {path}; "
                             "choose another output folder")
        try:
            notebook = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"strip_solutions: {path} is not a valid notebook (JSON error: {error})") from None
        write_notebook(strip_notebook(notebook, path.name), target)
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minimix.lessons.strip_solutions",
        description="Write the learner's copy of the lesson notebooks: cells tagged 'solution' become "
                    "'# YOUR CODE HERE / raise NotImplementedError' stubs, outputs are cleared.")
    parser.add_argument("source", help="a folder of notebooks (e.g. lessons/) or one .ipynb")
    parser.add_argument("out_dir", help="folder for the learner's notebooks (must not be the source folder)")
    args = parser.parse_args(argv)
    try:
        written = strip_path(args.source, args.out_dir)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
