"""minimix.lessons: every exercise check passes a correct answer and fails a wrong one; the
solution stripper; the course helpers (fast mode, data fallback, checkpoint lookup)."""
import json

import numpy as np
import pytest
from conftest import require

import minimix as mm
from minimix import lessons
from minimix.data import CIFAR10_MEAN, CIFAR10_STD
from minimix.lessons import course, strip_solutions
from minimix.lessons.checking import Case, difference, run_check
from minimix.tensor import Function


# -- correct answers, written independently of the library -----------------------------------------
def sigmoid_backward(x, g):
    s = 0.5 * (1 + np.tanh(x / 2))  # overflow-free sigmoid
    return g * s * (1 - s)


class SiLU(Function):
    def forward(self, x):
        self.x, self.s = x, 0.5 * (1 + np.tanh(x / 2))
        return x * self.s

    def backward(self, g):
        return (g * self.s * (1 + self.x * (1 - self.s)),)


class SiLUWrongBackward(SiLU):
    def backward(self, g):
        return (g * self.s,)  # forgets the x * s * (1 - s) term


def output_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def windows(x, k, s, p):
    """(C, k, k, OH, OW): every (p, q) kernel offset's strided slab of the padded input."""
    c, h, w = x.shape[-3:]
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])
    oh, ow = output_size(h, k, s, p, 1), output_size(w, k, s, p, 1)
    return np.stack([np.stack([xp[..., i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s] for j in range(k)], -3)
                     for i in range(k)], -4)


def im2col(x, k, s, p):
    return windows(x, k, s, p).reshape(x.shape[0] * k * k, -1)


def im2col_offset_major(x, k, s, p):  # rows ordered (p, q, c) instead of (c, p, q)
    c = x.shape[0]
    return im2col(x, k, s, p).reshape(c, k * k, -1).transpose(1, 0, 2).reshape(c * k * k, -1)


def depthwise_forward(x, w, s, p):
    return np.einsum("ncijhw,cij->nchw", windows(x, w.shape[-1], s, p), w)


def depthwise_backward_weight(x, gy, k, s, p):
    return np.einsum("ncijhw,nchw->cij", windows(x, k, s, p), gy)


def depthwise_backward_input(gy, w, input_hw, s, p):
    n, c, oh, ow = gy.shape
    k = w.shape[-1]
    h, wd = input_hw
    gxp = np.zeros((n, c, h + 2 * p, wd + 2 * p))
    for i in range(k):
        for j in range(k):
            gxp[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s] += gy * w[None, :, i, j, None, None]
    return gxp[:, :, p:p + h, p:p + wd]


def depthwise_forward_unchecked_bounds(x, w, s, p):
    """The loop kernel's classic slip: an input row r < 0 wraps around (x[-1] is the last row) instead of
    reading the zero padding; columns are checked."""
    n, c, h, wd = x.shape
    k = w.shape[-1]
    oh, ow = output_size(h, k, s, p, 1), output_size(wd, k, s, p, 1)
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for u in range(k):
                r = i * s - p + u
                if r < h:  # forgets r >= 0
                    for v in range(k):
                        q = j * s - p + v
                        if 0 <= q < wd:
                            y[:, :, i, j] += x[:, :, r, q] * w[:, u, v]
    return y


def split_channels(c, g, rule):
    if rule == "equal":
        sizes = [c // g] * g
        sizes[0] += c - sum(sizes)
        return sizes
    sizes = [c // 2 ** i for i in range(1, g)]
    return sizes + [c - sum(sizes)]


def mixconv_params(c, kernels, rule):
    return sum(ci * k * k for ci, k in zip(split_channels(c, len(kernels), rule), kernels))


def mixconv_macs(c, kernels, h, w, rule):
    return h * w * mixconv_params(c, kernels, rule)


def round_filters(c, width, divisor=8):
    scaled = c * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def block_params(a):
    def grouped(cin, cout, groups):
        return sum(i * o for i, o in zip(split_channels(cin, groups, "equal"), split_channels(cout, groups, "equal")))

    mid = a.in_channels * a.expand_ratio
    n = 0 if a.expand_ratio == 1 else grouped(a.in_channels, mid, len(a.expand_kernel_sizes)) + 2 * mid
    n += mixconv_params(mid, a.kernel_sizes, "equal") + 2 * mid
    if a.se_ratio:
        r = max(1, int(a.in_channels * a.se_ratio))
        n += 2 * mid * r + r + mid
    return n + grouped(mid, a.out_channels, len(a.project_kernel_sizes)) + 2 * a.out_channels


def normalize(images):
    return ((images / np.float32(255) - CIFAR10_MEAN) / CIFAR10_STD).transpose(0, 3, 1, 2)


def confusion(predictions, labels, c):
    m = np.zeros((c, c), dtype=int)
    np.add.at(m, (labels, predictions), 1)
    return m


def cross_entropy(logits, labels, eps):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n, c = logits.shape
    q = np.full_like(logp, eps / c)
    q[np.arange(n), labels] += 1 - eps
    return float(-(q * logp).sum() / n)


CASES = [  # (check, correct answer, wrong answer)
    (lessons.check_sigmoid_backward, sigmoid_backward, lambda x, g: g * sigmoid_backward(x, np.ones_like(x)) ** 0.5),
    (lambda fn: lessons.check_op(fn, mm.ops.silu), SiLU.apply, SiLUWrongBackward.apply),
    (lessons.check_conv_output_size, output_size, lambda n, k, s, p, d: (n + 2 * p - k) // s + 1),
    (lessons.check_im2col, im2col, im2col_offset_major),
    (lessons.check_depthwise_forward, depthwise_forward, depthwise_forward_unchecked_bounds),
    (lessons.check_depthwise_backward_weight, depthwise_backward_weight,
     lambda x, gy, k, s, p: depthwise_backward_weight(x, gy, k, s, p)[:, ::-1, ::-1]),  # convolution, not correlation
    (lessons.check_depthwise_backward_input, depthwise_backward_input,
     lambda gy, w, hw, s, p: depthwise_backward_input(gy, w[:, ::-1, ::-1], hw, s, p)),
    (lessons.check_split_channels, split_channels, lambda c, g, rule: split_channels(c, g, "equal")),
    (lessons.check_mixconv_params, mixconv_params, lambda c, kernels, rule: c * max(kernels) ** 2),
    (lessons.check_mixconv_macs, mixconv_macs, lambda c, kernels, h, w, rule: 2 * mixconv_macs(c, kernels, h, w, rule)),
    (lessons.check_round_filters, round_filters, lambda c, width: int(c * width)),
    (lessons.check_block_params, block_params, lambda a: block_params(a.replace(se_ratio=None))),
    (lessons.check_normalize, normalize, lambda images: (images / np.float32(255)).transpose(0, 3, 1, 2)),
    (lessons.check_confusion_matrix, confusion, lambda p, y, c: confusion(y, p, c)),
    (lessons.check_cross_entropy, cross_entropy, lambda z, y, eps: cross_entropy(z, y, label_smoothing=0.0)),
    (lessons.check_rf_recurrence, lambda r, j, k, s, d: (r + d * (k - 1) * j, j * s),
     lambda r, j, k, s, d: (r + (k - 1) * j, j * s)),  # forgets dilation
    (lessons.check_seed_separation,
     lambda a, b: 0 if min(len(a), len(b)) < 2 else (min(a) > max(b)) - (max(a) < min(b)),
     lambda a, b: 0 if min(len(a), len(b)) < 2 else int(np.sign(np.mean(a) - np.mean(b)))),  # means, not ranges
]
IDS = ["sigmoid_backward", "op", "conv_output_size", "im2col", "depthwise_forward", "depthwise_weight",
       "depthwise_input", "split_channels", "mixconv_params", "mixconv_macs", "round_filters", "block_params", "normalize",
       "confusion_matrix", "cross_entropy", "rf_recurrence", "seed_separation"]


@pytest.mark.parametrize("check, good, bad", CASES, ids=IDS)
def test_check_passes_a_correct_answer_and_fails_a_wrong_one(check, good, bad, capsys):
    assert check(good).passed is True
    assert "PASS" in capsys.readouterr().out
    assert check(bad).passed is False
    out = capsys.readouterr().out
    assert out.startswith("FAIL") and "expected" in out


def test_every_public_check_is_tested():
    tested = {c.__name__ for c, _, _ in CASES if c.__name__.startswith("check_")} | {"check_op"}
    public = {name for name in lessons.__all__ if name.startswith("check_")}
    assert public == tested


def test_the_depthwise_checks_take_numba_loop_kernels(capsys):
    """Lesson 3's exercises are Numba kernels: the checks' arguments (arrays, ints, an (H, W) tuple)
    must be types Numba compiles for, and a compiled kernel's answers are compared like any other."""
    numba = require("numba", "lesson 3's exercises are Numba kernels")

    @numba.njit
    def forward(x, w, stride, padding):
        n, c, h, wd = x.shape
        k = w.shape[-1]
        oh, ow = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
        y = np.zeros((n, c, oh, ow), dtype=x.dtype)
        for b in range(n):
            for ch in range(c):
                for i in range(oh):
                    for j in range(ow):
                        for u in range(k):
                            for v in range(k):
                                r, q = i * stride - padding + u, j * stride - padding + v
                                if 0 <= r < h and 0 <= q < wd:
                                    y[b, ch, i, j] += x[b, ch, r, q] * w[ch, u, v]
        return y

    @numba.njit
    def backward_input(gy, w, input_hw, stride, padding):
        n, c, oh, ow = gy.shape
        k = w.shape[-1]
        h, wd = input_hw
        gx = np.zeros((n, c, h, wd), dtype=gy.dtype)
        for b in range(n):
            for ch in range(c):
                for i in range(oh):
                    for j in range(ow):
                        for u in range(k):
                            for v in range(k):
                                r, q = i * stride - padding + u, j * stride - padding + v
                                if 0 <= r < h and 0 <= q < wd:
                                    gx[b, ch, r, q] += gy[b, ch, i, j] * w[ch, u, v]
        return gx

    @numba.njit
    def backward_weight(x, gy, kernel_size, stride, padding):
        n, c, h, wd = x.shape
        oh, ow = gy.shape[2], gy.shape[3]
        gw = np.zeros((c, kernel_size, kernel_size), dtype=x.dtype)
        for b in range(n):
            for ch in range(c):
                for i in range(oh):
                    for j in range(ow):
                        for u in range(kernel_size):
                            for v in range(kernel_size):
                                r, q = i * stride - padding + u, j * stride - padding + v
                                if 0 <= r < h and 0 <= q < wd:
                                    gw[ch, u, v] += gy[b, ch, i, j] * x[b, ch, r, q]
        return gw

    assert lessons.check_depthwise_forward(forward)
    assert lessons.check_depthwise_backward_input(backward_input)
    assert lessons.check_depthwise_backward_weight(backward_weight)
    assert capsys.readouterr().out.count("PASS") == 3


def test_an_unsolved_stub_fails_with_a_clear_message(capsys):
    def stub(*args):
        raise NotImplementedError

    assert not lessons.check_split_channels(stub)
    assert "NotImplementedError (not written yet?)" in capsys.readouterr().out


def test_an_exception_in_the_learners_code_is_reported_not_raised(capsys):
    assert not lessons.check_round_filters(lambda c, w: c / 0)
    out = capsys.readouterr().out
    assert "ZeroDivisionError" in out and "c / 0" in out


def test_check_rejects_something_that_is_not_a_function():
    with pytest.raises(TypeError, match="expected your function"):
        lessons.check_im2col(np.zeros(3))


@pytest.mark.parametrize("got, expected, message", [
    (np.zeros((2, 3)), np.zeros((3, 2)), "got shape (2, 3), expected shape (3, 2)"),
    (np.array([1.0, 2.5]), np.array([1.0, 2.0]), "element [1]: got 2.5, expected 2.0 (1 of 2"),
    ([1, 2], (1, 2, 3), "got 2 values"),
    ((1, 5), (1, 4), "element [1]: got 5, expected 4"),
    (3.5, 3, "got 3.5, expected 3"),
    ("a", 3, "expected the number 3"),
    ({"forward value": np.ones(2)}, {"forward value": np.ones(2), "gradient of input 0": np.ones(2)},
     "no 'gradient of input 0'"),
])
def test_difference_describes_the_first_mismatch(got, expected, message):
    assert message in difference(got, expected)


def test_difference_accepts_equal_answers_in_other_containers():
    assert difference([14, 13, 13], [14, 13, 13]) is None
    assert difference(np.array([3, 1]), (3, 1)) is None
    assert difference(mm.Tensor(np.ones(3)), np.ones(3)) is None
    assert difference(np.int64(7), 7) is None


def test_run_check_reports_the_case_description(capsys):
    cases = [Case("f(1)", (1,), 2), Case("f(2)", (2,), 4)]
    assert run_check("check_f", lambda v: v + 1, cases, "doubling").passed is False
    assert "case 2 of 2, f(2)\n  got 3, expected 4" in capsys.readouterr().out


def test_a_check_result_is_a_bool_that_a_notebook_does_not_echo(capsys):
    """A check cell's output is its PASS/FAIL line only: the result is truthy or falsy, but IPython's
    display of it (a check as a cell's last line) is empty, where a bool would add 'True' under PASS."""
    passed = run_check("check_f", lambda v: 2 * v, [Case("f(1)", (1,), 2)], "doubling")
    failed = run_check("check_f", lambda v: v, [Case("f(1)", (1,), 2)], "doubling")
    assert passed and not failed
    assert (passed.passed, failed.passed) == (True, False)
    assert repr(passed) == "<check_f: PASS>" and repr(failed) == "<check_f: FAIL>"
    formatters = require("IPython.core.formatters", "the notebook display of a check result needs IPython")
    assert formatters.DisplayFormatter().format(passed) == ({}, {})
    assert formatters.DisplayFormatter().format(True) != ({}, {})  # what a plain bool would show


def sigmoid_backward_naive(x, g):
    s = 1 / (1 + np.exp(-x))  # overflows for x < -88.7 in float32, x < -709.8 in float64
    return g * s * (1 - s)


def sigmoid_backward_stable(x, g):
    e = np.exp(-np.abs(x))  # never more than 1
    s = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return g * s * (1 - s)


def sigmoid_backward_naive_in_float64(x, g):
    s = 1 / (1 + np.exp(-x.astype(np.float64)))  # fine at +-100, overflows at +-1000
    return (g * s * (1 - s)).astype(x.dtype)


def test_the_sigmoid_check_fails_the_naive_formula_in_both_dtypes(capsys):
    """Lesson 1's claim: exp(-x) overflows beyond ~88.7 in float32 and ~709.8 in float64, and the check
    sees it (x = +-100 in float32, +-1000 in float64), although NumPy only warns and 1 / (1 + inf) = 0
    is even the right value."""
    with np.errstate(over="ignore"):  # what a learner's notebook does: warn, and carry on
        assert np.isinf(np.exp(np.float32(100))) and np.isfinite(np.exp(np.float32(88)))
        assert np.isinf(np.exp(np.float64(1000))) and np.isfinite(np.exp(np.float64(709)))
    assert not lessons.check_sigmoid_backward(sigmoid_backward_naive)
    out = capsys.readouterr().out
    assert "float32 with x = +-100" in out and "FloatingPointError: overflow encountered in exp" in out
    assert not lessons.check_sigmoid_backward(sigmoid_backward_naive_in_float64)
    out = capsys.readouterr().out
    assert "float64 with x = +-1000" in out and "overflow" in out
    assert lessons.check_sigmoid_backward(sigmoid_backward_stable)
    assert lessons.check_sigmoid_backward(sigmoid_backward)
    assert capsys.readouterr().out.count("PASS") == 2


def test_the_overflow_rule_is_the_sigmoid_checks_alone():
    """np.errstate is restored after the check: the learner's notebook keeps NumPy's warn-and-continue."""
    before = np.geterr()
    lessons.check_sigmoid_backward(sigmoid_backward_naive)
    assert np.geterr() == before


def test_yours_or_library_picks_the_library_while_an_exercise_fails(capsys):
    from minimix.data import normalize as library
    from minimix.lessons import yours_or_library

    def normalize(images):
        raise NotImplementedError

    assert yours_or_library(True, normalize, library) is normalize
    assert capsys.readouterr().out == ""
    stand_in = yours_or_library(lessons.check_normalize(normalize), normalize, library)
    out = capsys.readouterr().out
    assert "(your normalize does not pass its check yet: the cells below use minimix.data.normalize instead)" in out
    images = np.zeros((1, 2, 2, 3), np.uint8)
    np.testing.assert_array_equal(stand_in(images), library(images))
    # re-running the check cell now (without the exercise cell) must not pass minimix's function as yours
    assert not lessons.check_normalize(stand_in)
    assert "run your exercise cell again" in capsys.readouterr().out


# -- strip_solutions -------------------------------------------------------------------------------
def _notebook(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _code(source, tags=(), outputs=()):
    return {"cell_type": "code", "id": "x", "metadata": {"tags": list(tags)} if tags else {},
            "source": source, "outputs": list(outputs), "execution_count": 3 if outputs else None}


MARKED = '''def relu_backward(x, g):
    """dL/dx of relu."""
    ### BEGIN SOLUTION
    mask = x > 0
    return g * mask
    ### END SOLUTION

print("defined")'''


def test_strip_keeps_the_signature_and_replaces_the_marked_block():
    out = strip_solutions.strip_source(MARKED)
    assert out == ('def relu_backward(x, g):\n    """dL/dx of relu."""\n    # YOUR CODE HERE\n'
                   '    raise NotImplementedError\n\nprint("defined")')


def test_strip_replaces_an_unmarked_solution_cell_whole():
    assert strip_solutions.strip_source("x = 1\ny = 2") == "# YOUR CODE HERE\nraise NotImplementedError"


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_strip_rejects_unbalanced_markers(source, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions.strip_source(source, "lesson.ipynb, cell 4")


def test_strip_notebook_stubs_only_solution_cells_and_clears_outputs():
    output = {"output_type": "stream", "name": "stdout", "text": "hi\n"}
    nb = _notebook({"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# Title"},
                   _code("import numpy as np", outputs=[output]),
                   _code(["x = 1\n", "y = 2"], tags=["solution"], outputs=[output]),
                   _code(MARKED, tags=["solution"]))
    out = strip_solutions.strip_notebook(nb)
    cells = out["cells"]
    assert cells[0] == nb["cells"][0]
    assert cells[1]["source"] == "import numpy as np" and cells[1]["outputs"] == []
    assert cells[1]["execution_count"] is None
    assert cells[2]["source"] == "# YOUR CODE HERE\nraise NotImplementedError"
    assert "def relu_backward(x, g):" in cells[3]["source"] and "mask" not in cells[3]["source"]
    assert nb["cells"][2]["outputs"] == [output]  # the input notebook is not modified


def test_strip_solutions_command_writes_the_learners_copy(tmp_path, capsys):
    src = tmp_path / "lessons"
    src.mkdir()
    strip_solutions.write_notebook(_notebook(_code("secret = 42", tags=["solution"])), src / "01_a.ipynb")
    strip_solutions.write_notebook(_notebook(_code("print(1)")), src / "02_b.ipynb")
    out = tmp_path / "learner"
    assert strip_solutions.main([str(src), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["01_a.ipynb", "02_b.ipynb"]
    stripped = json.loads((out / "01_a.ipynb").read_text())
    assert "secret" not in stripped["cells"][0]["source"]
    assert "wrote" in capsys.readouterr().out
    # refusing to overwrite the solutions, and a clear error for a missing folder
    assert strip_solutions.main([str(src), str(src)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert strip_solutions.main([str(tmp_path / "nowhere"), str(out)]) == 2
    assert "neither a folder" in capsys.readouterr().err


def test_the_shipped_lessons_strip_cleanly(tmp_path):
    from pathlib import Path

    lessons_dir = Path(__file__).resolve().parent.parent / "lessons"
    written = strip_solutions.strip_path(lessons_dir, tmp_path)
    assert len(written) >= 7
    for path in written:
        nb = json.loads(path.read_text())
        solution_cells = [c for c in nb["cells"] if strip_solutions.is_solution(c)]
        assert solution_cells, f"{path.name} has no exercise (no cell tagged 'solution')"
        for cell in solution_cells:
            source = strip_solutions._text(cell["source"])
            assert "raise NotImplementedError" in source
            compile(source, f"{path.name} exercise", "exec")  # the learner's stub is valid Python


# -- course helpers --------------------------------------------------------------------------------
@pytest.mark.parametrize("value, fast", [("1", True), ("true", True), ("", False), ("0", False)])
def test_fast_mode_reads_the_environment(monkeypatch, value, fast):
    monkeypatch.setenv("MINIMIX_FAST", value)
    assert course.fast_mode(verbose=False) is fast


def test_load_data_falls_back_to_the_labelled_synthetic_set(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MINIMIX_DATA", str(tmp_path))  # an empty folder: no CIFAR-10 there
    data = course.load_data(train_limit=60, test_limit=20)
    assert data.synthetic
    assert "SYNTHETIC" in capsys.readouterr().out
    assert data.train_images.shape == (60, 32, 32, 3) and data.train_images.dtype == np.uint8
    assert data.test_labels.shape == (20,) and data.test_labels.dtype == np.int64
    assert np.bincount(data.train_labels, minlength=10).tolist() == [6] * 10
    assert len(data.classes) == 10


def test_the_synthetic_classes_differ_in_their_pictures():
    from minimix.lessons.synthetic import synthetic_images

    images, labels = synthetic_images(400, seed=3)
    x = images.astype(np.float64)
    warm = x[labels < 5][..., 0].mean() - x[labels < 5][..., 2].mean()
    cold = x[labels >= 5][..., 0].mean() - x[labels >= 5][..., 2].mean()
    assert warm > 50 and cold < -50  # red-dominated vs blue-dominated
    horizontal = np.abs(np.diff(x[labels == 0], axis=1)).mean()  # 0 deg: stripes vary along the columns
    vertical = np.abs(np.diff(x[labels == 0], axis=2)).mean()
    assert vertical > 1.5 * horizontal


# find_checkpoint / load_trained_model: tests/test_lessons_course.py


def test_best_time_returns_the_fastest_call():
    calls = []
    assert course.best_time(lambda: calls.append(1), repeat=4) >= 0 and len(calls) == 4
    with pytest.raises(ValueError, match="repeat"):
        course.best_time(lambda: None, repeat=0)
