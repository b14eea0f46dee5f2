"""The machinery behind the exercise checks: run a learner's function on cases, compare, report.

Every ``check_*`` function in :mod:`minimix.lessons.checks` builds a list of :class:`Case`
(arguments, and the answer computed by minimix itself) and hands it to :func:`run_check`,
which calls the learner's function on each case in turn and stops at the first wrong answer::

    PASS check_split_channels: 24 cases agree with minimix.nn.split_channels
    FAIL check_split_channels: case 7 of 24, split_channels(40, 3, 'exponential')
      element [2]: got 9, expected 10

The learner's function gets fresh copies of the arguments (so an in-place edit cannot change the
expected answer), and an exception it raises -- ``NotImplementedError`` from an unsolved stub
included -- is reported as a FAIL instead of stopping the notebook.

A check returns a :class:`CheckResult`: true when every case passed (``if check_op(...):``,
``ok = check_im2col(im2col)``), and shown as nothing in a notebook, so that a check cell's output is
its PASS/FAIL line alone (a plain ``True`` would be echoed under it as the cell's value).
:func:`yours_or_library` is how a lesson's later cells keep running while an exercise is unsolved.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import numbers
import sys
import traceback

import numpy as np


@dataclasses.dataclass
class Case:
    """One call ``fn(*args, **kwargs)`` and the answer minimix gives for it.

    ``describe`` is how the call is shown in a FAIL message (e.g. ``"im2col(x (2, 5, 5), k=3)"``);
    ``rtol``/``atol``, when set, replace the check's tolerances for this case (float32 cases).
    """

    describe: str
    args: tuple
    expected: object
    kwargs: dict = dataclasses.field(default_factory=dict)
    rtol: float | None = None  # this case's tolerances (None: the check's)
    atol: float | None = None


class CheckResult:
    """What every check returns: true when all its cases passed, false otherwise.

    It behaves as a bool where one is asked for (``if``, ``and``, ``not``, ``assert``; ``.passed`` is the
    plain bool) but, unlike ``True``, a notebook does not echo it when a check is a cell's last line: the
    PASS/FAIL line printed by :func:`run_check` is the whole output.
    """

    __slots__ = ("name", "passed")

    def __init__(self, name: str, passed: bool):
        self.name, self.passed = name, bool(passed)

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"<{self.name}: {'PASS' if self.passed else 'FAIL'}>"

    def _ipython_display_(self):
        """IPython displays this instead of the value: nothing (the PASS/FAIL line is already printed)."""


def run_check(name: str, fn, cases, reference: str, rtol: float = 1e-6, atol: float = 1e-8,
              errstate: dict | None = None) -> CheckResult:
    """Call ``fn`` on every case; print ``PASS``/``FAIL`` (with the first mismatch) and return a
    :class:`CheckResult` (true on PASS).

    ``reference`` names the minimix function the answers come from (shown in the PASS line).
    Arrays are compared with ``|got - expected| <= atol + rtol * |expected|`` element-wise (a case may
    set its own ``rtol``/``atol``). ``errstate`` (e.g. ``{"over": "raise"}``) is applied with
    ``np.errstate`` around the learner's call, so that an overflow NumPy would only warn about fails the
    check.
    """
    if not callable(fn):
        raise TypeError(f"{name}: expected your function, got {type(fn).__name__} {fn!r}")
    stand_in = getattr(fn, "lesson_stand_in", None)
    if stand_in is not None:  # yours_or_library's replacement, not the learner's function
        print(f"FAIL {name}: this is {stand_in}, used in place of your function while it failed; "
              "run your exercise cell again, then this check")
        return CheckResult(name, False)
    cases = list(cases)
    for number, case in enumerate(cases, 1):
        where = f"case {number} of {len(cases)}, {case.describe}"
        try:
            with np.errstate(**(errstate or {})):
                got = fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        except NotImplementedError:
            print(f"FAIL {name}: {where}\n  your function raised NotImplementedError (not written yet?)")
            return CheckResult(name, False)
        except Exception as error:  # the learner's bug: show it, do not crash the notebook
            frame = traceback.extract_tb(error.__traceback__)[-1]
            hint = ""
            if isinstance(error, FloatingPointError):
                hint = ("\n  (outside the check NumPy only prints a RuntimeWarning and carries on with inf; "
                        "the check treats it as an error)")
            print(f"FAIL {name}: {where}\n  your function raised {type(error).__name__}: {error}\n"
                  f"  (at line {frame.lineno} of {frame.filename}: {frame.line}){hint}")
            return CheckResult(name, False)
        problem = difference(got, case.expected, rtol if case.rtol is None else case.rtol,
                             atol if case.atol is None else case.atol)
        if problem is not None:
            print(f"FAIL {name}: {where}\n  {problem}")
            return CheckResult(name, False)
    print(f"PASS {name}: {len(cases)} cases agree with {reference}")
    return CheckResult(name, True)


def yours_or_library(passed, yours, library, name: str | None = None):
    """``yours`` if its check ``passed``, else a stand-in that calls ``library``, with a printed note.

    The cells after an exercise use the function this returns, so that a lesson runs top to bottom
    while an exercise is still unsolved (showing minimix's results, and saying so)::

        normalize = yours_or_library(check_normalize(normalize), normalize, minimix.data.normalize)

    ``name`` is how your function is named in the note (default: its ``__name__``). The stand-in is
    marked: a check given it fails and asks for your exercise cell to be run again, so re-running a
    check cell can never pass minimix's own function off as yours.
    """
    if passed:
        return yours
    name = name or getattr(yours, "__name__", None) or repr(yours)
    where = _public_name(library)
    print(f"(your {name} does not pass its check yet: the cells below use {where} instead)")

    @functools.wraps(library)
    def stand_in(*args, **kwargs):
        return library(*args, **kwargs)

    stand_in.lesson_stand_in = where
    return stand_in


def _public_name(fn) -> str:
    """``minimix.data.normalize`` rather than the defining ``minimix.data.augment.normalize``: the
    shortest package path from which ``fn`` can be imported."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not name:
        return repr(fn)
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        if getattr(sys.modules.get(".".join(parts[:i])), name, None) is fn:
            return ".".join(parts[:i] + [name])
    return f"{module}.{name}"


def difference(got, expected, rtol=1e-6, atol=1e-8, path="") -> str | None:
    """None when ``got`` matches ``expected``, else a sentence describing the first mismatch.

    Handles numbers, sequences (compared element by element, so a list may answer a tuple) and
    NumPy arrays (shape first, then the first element out of tolerance).
    """
    at = f"{path}: " if path else ""
    if isinstance(expected, np.ndarray):
        try:
            got_array = np.asarray(got)  # a minimix Tensor converts too
        except Exception:  # noqa: BLE001 - anything that is not array-like
            return f"{at}got a {type(got).__name__}, expected an array of shape {expected.shape}"
        if got_array.shape != expected.shape:
            return f"{at}got shape {got_array.shape}, expected shape {expected.shape}"
        if expected.dtype.kind in "biu":
            bad = got_array != expected
        else:
            if got_array.dtype.kind not in "biuf":
                return f"{at}got an array of dtype {got_array.dtype}, expected numbers"
            bad = ~np.isclose(got_array, expected, rtol=rtol, atol=atol)
        if not bad.any():
            return None
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        return (f"{at}element {list(index)}: got {_show(got_array[index])}, expected {_show(expected[index])} "
                f"({int(bad.sum())} of {bad.size} elements differ)")
    if isinstance(expected, dict):  # named parts of one answer: {"forward value": ..., ...}
        for key, e in expected.items():
            if not isinstance(got, dict) or key not in got:
                return f"{at}the answer has no {key!r}"
            problem = difference(got[key], e, rtol, atol, f"{path}{key}" if not path else f"{path}.{key}")
            if problem is not None:
                return problem
        return None
    if isinstance(expected, (list, tuple)):
        if isinstance(got, np.ndarray):
            got = got.tolist()
        if not isinstance(got, (list, tuple)):
            return f"{at}got {got!r}, expected a sequence {expected!r}"
        if len(got) != len(expected):
            return f"{at}got {len(got)} values {list(got)!r}, expected {len(expected)}: {list(expected)!r}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = difference(g, e, rtol, atol, f"{path}[{i}]" if path else f"element [{i}]")
            if problem is not None:
                return problem
        return None
    if isinstance(expected, numbers.Number):
        if not isinstance(got, (numbers.Number, np.generic)) and not (isinstance(got, np.ndarray) and got.size == 1):
            return f"{at}got {type(got).__name__} {got!r}, expected the number {expected!r}"
        value = float(np.asarray(got).reshape(()))
        if isinstance(expected, numbers.Integral) and value != expected:
            return f"{at}got {_show(got)}, expected {_show(expected)}"
        if not np.isclose(value, float(expected), rtol=rtol, atol=atol):
            return f"{at}got {_show(got)}, expected {_show(expected)}"
        return None
    return None if got == expected else f"{at}got {got!r}, expected {expected!r}"


def _show(value) -> str:
    """A value as the learner would type it (``0.25``, not ``np.float64(0.25)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def shape_text(array) -> str:
    """``"(2, 3, 5, 5)"``: how an array argument is shown in a case description."""
    return str(tuple(np.shape(array)))
