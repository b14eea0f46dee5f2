"""The losses against PyTorch: cross_entropy and nll_loss (weights, ignore_index, label smoothing, N-d
inputs, every reduction), mse_loss, l1_loss, binary_cross_entropy_with_logits, and their modules."""
import numpy as np
import pytest
from parity import DTYPES, check_parity, randn, torch

import minimix as mm
import minimix.nn as nn
import minimix.nn.functional as F

TF = torch.nn.functional
REDUCTIONS = ["mean", "sum", "none"]


def _targets(shape, c, seed, ignore=None, every=3):
    """Integer class indices of ``shape`` in [0, c); every ``every``-th one set to ``ignore`` (when given)."""
    t = np.random.default_rng(seed).integers(0, c, shape)
    if ignore is not None and t.size:
        t.reshape(-1)[::every] = ignore
    return t


# (input shape, target shape, classes): rows, a batch of 1, an empty batch, one class, N-d (per position), unbatched
CLASS_CASES = {
    "rows": ((6, 5), (6,), 5),
    "batch1": ((1, 3), (1,), 3),
    "empty": ((0, 4), (0,), 4),
    "one-class": ((4, 1), (4,), 1),
    "per-pixel": ((2, 4, 3, 5), (2, 3, 5), 4),
    "sequence": ((3, 3, 7), (3, 7), 3),
    "unbatched": ((5,), (), 5),
}


@DTYPES
@pytest.mark.parametrize("case", CLASS_CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
def test_cross_entropy_matches_torch(case, reduction, weighted, label_smoothing, dtype):
    x_shape, t_shape, c = CLASS_CASES[case]
    ignore = -100 if len(t_shape) else None  # the default ignore_index, on every third target
    target = _targets(t_shape, c, seed=len(x_shape), ignore=ignore)
    weight = 0.5 + randn(c, seed=4) ** 2
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    check_parity(lambda x, w, t: F.cross_entropy(x, t, w if weighted else None, **kwargs),
                 lambda x, w, t: TF.cross_entropy(x, t, w if weighted else None, **kwargs),
                 [2.0 * randn(*x_shape), weight, target], dtype, requires_grad=[True, False, False])


@DTYPES
@pytest.mark.parametrize("layout", ["F", "channels_last", "reversed", "sliced"])
@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 3, 2)], ids=str)
def test_cross_entropy_reads_any_layout(layout, shape, dtype):
    target = _targets((shape[0],) + shape[2:], shape[1], seed=1)
    check_parity(lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1, reduction="sum"),
                 lambda x, t: TF.cross_entropy(x, t, label_smoothing=0.1, reduction="sum"),
                 [randn(*shape), target], dtype, layout=layout)


@DTYPES
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [1, -1])
def test_cross_entropy_custom_ignore_index_and_all_ignored(reduction, ignore_index, dtype):
    """A class index as ignore_index (its rows count for nothing, also in the weighted mean's divisor),
    and a batch whose every target is ignored (mean: 0/0 = nan, gradient 0, as torch)."""
    weight = 0.5 + randn(4, seed=4) ** 2
    for target in (np.array([1, 0, 3, 1, 2, 1]), np.full(3, ignore_index)):
        target = np.where(target == 1, ignore_index, target)
        for smoothing in (0.0, 0.3):
            kwargs = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=smoothing)
            check_parity(lambda x, w, t: F.cross_entropy(x, t, w, **kwargs),
                         lambda x, w, t: TF.cross_entropy(x, t, w, **kwargs),
                         [randn(len(target), 4), weight, target], dtype, requires_grad=[True, False, False])


def test_cross_entropy_extreme_logits_stay_finite():
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        check_parity(lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
                     lambda x, t: TF.cross_entropy(x, t, label_smoothing=0.1), [x, np.array([1, 2])], np.float64)


@DTYPES
@pytest.mark.parametrize("case", CLASS_CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_nll_loss_matches_torch(case, reduction, weighted, dtype):
    x_shape, t_shape, c = CLASS_CASES[case]
    target = _targets(t_shape, c, seed=2, ignore=-100 if len(t_shape) else None, every=2)
    weight = 0.5 + randn(c, seed=4) ** 2
    check_parity(lambda x, w, t: F.nll_loss(x, t, w if weighted else None, reduction=reduction),
                 lambda x, w, t: TF.nll_loss(x, t, w if weighted else None, reduction=reduction),
                 [randn(*x_shape) - 2.0, weight, target], dtype, requires_grad=[True, False, False], layout="F")


@DTYPES
def test_cross_entropy_is_nll_of_log_softmax(dtype):
    x, t = mm.Tensor(randn(4, 3, 2).astype(dtype)), _targets((4, 2), 3, seed=0)
    a = F.cross_entropy(x, t, reduction="none")
    b = F.nll_loss(F.log_softmax(x, dim=1), t, reduction="none")
    np.testing.assert_allclose(a.data, b.data, rtol=1e-12 if dtype == np.float64 else 1e-5)


# -- value-by-value losses ----------------------------------------------------------------------------------
VALUE_SHAPES = [(), (1,), (4, 3), (0, 5), (2, 3, 4, 5)]


@DTYPES
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
@pytest.mark.parametrize("shape", VALUE_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_and_l1_match_torch(name, shape, reduction, dtype):
    x, y = randn(*shape), randn(*shape, seed=1)
    if x.size > 2:
        y.reshape(-1)[::3] = x.reshape(-1)[::3]  # ties: l1's gradient is 0 there, as torch's
    check_parity(lambda a, b: getattr(F, name)(a, b, reduction=reduction),
                 lambda a, b: getattr(TF, name)(a, b, reduction=reduction), [x, y], dtype,
                 layout=["reversed", "sliced"] if shape else "C")  # a 0-d array has one layout


@DTYPES
@pytest.mark.parametrize("shape, weight_shape, pos_weight_shape", [
    ((4, 3), None, None), ((4, 3), (3,), (3,)), ((1,), (1,), None), ((0, 3), None, (3,)),
    ((2, 3, 5), (2, 3, 5), (5,)), ((6, 2), (6, 1), None),
], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_matches_torch(shape, weight_shape, pos_weight_shape, reduction, dtype):
    x = 3.0 * randn(*shape)
    y = np.random.default_rng(1).uniform(0.0, 1.0, shape)  # soft targets in [0, 1]: the target gets a gradient
    weight = None if weight_shape is None else 0.5 + randn(*weight_shape, seed=2) ** 2
    pos_weight = None if pos_weight_shape is None else 0.5 + randn(*pos_weight_shape, seed=3) ** 2
    check_parity(lambda a, b, w, p: F.binary_cross_entropy_with_logits(a, b, w, reduction=reduction, pos_weight=p),
                 lambda a, b, w, p: TF.binary_cross_entropy_with_logits(a, b, w, reduction=reduction, pos_weight=p),
                 [x, y, weight, pos_weight], dtype, requires_grad=[True, True, False, False], layout="F")


def test_binary_cross_entropy_with_logits_extreme_logits_stay_finite():
    x = np.array([1000.0, -1000.0, 40.0, -40.0, 0.0])
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.5])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        check_parity(lambda a, b, p: F.binary_cross_entropy_with_logits(a, b, pos_weight=p),
                     lambda a, b, p: TF.binary_cross_entropy_with_logits(a, b, pos_weight=p),
                     [x, y, np.full(5, 2.0)], np.float64, requires_grad=[True, True, False])


# -- modules --------------------------------------------------------------------------------------------------
MODULES = {  # name: (minimix module, torch module, input shape, target maker)
    "CrossEntropyLoss": (lambda w: nn.CrossEntropyLoss(w, ignore_index=2, label_smoothing=0.2),
                         lambda w: torch.nn.CrossEntropyLoss(w, ignore_index=2, label_smoothing=0.2),
                         (5, 4, 3), lambda: _targets((5, 3), 4, seed=3)),
    "CrossEntropyLoss-sum": (lambda w: nn.CrossEntropyLoss(reduction="sum"),
                             lambda w: torch.nn.CrossEntropyLoss(reduction="sum"), (3, 4), lambda: _targets(3, 4, 3)),
    "NLLLoss": (lambda w: nn.NLLLoss(w, reduction="none"), lambda w: torch.nn.NLLLoss(w, reduction="none"),
                (6, 4), lambda: _targets(6, 4, seed=3, ignore=-100)),
    "MSELoss": (lambda w: nn.MSELoss(), lambda w: torch.nn.MSELoss(), (3, 2, 2), lambda: randn(3, 2, 2, seed=5)),
    "L1Loss": (lambda w: nn.L1Loss(reduction="sum"), lambda w: torch.nn.L1Loss(reduction="sum"), (7,),
               lambda: randn(7, seed=5)),
    "BCEWithLogitsLoss": (lambda w: nn.BCEWithLogitsLoss(w, pos_weight=w[::-1].copy()),
                          lambda w: torch.nn.BCEWithLogitsLoss(w, pos_weight=w.flip(0)), (5, 4),
                          lambda: (randn(5, 4, seed=5) > 0).astype(np.float64)),
}


@pytest.mark.parametrize("name", MODULES)
def test_loss_modules_match_torch(name):
    make, make_torch, shape, target = MODULES[name]
    weight = 0.5 + randn(4, seed=4) ** 2
    ours, theirs = make(weight), make_torch(torch.tensor(weight))
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # weight and pos_weight are buffers, as in torch
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[k], v.numpy(), err_msg=k)
    check_parity(lambda x, t: ours(x, t), lambda x, t: theirs(x, t), [randn(*shape), target()], np.float64,
                 requires_grad=[True, False])


# -- errors ---------------------------------------------------------------------------------------------------
def test_loss_errors_name_the_problem():
    x = mm.Tensor(randn(4, 3))
    with pytest.raises(ValueError, match=r"cross_entropy: reduction must be one of \('mean', 'sum', 'none'\), got 'avg'"):
        F.cross_entropy(x, np.array([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(TypeError, match=r"weight \(the third argument, as in PyTorch\).*label_smoothing=0.1"):
        F.cross_entropy(x, np.array([0, 1, 2, 0]), 0.1)
    with pytest.raises(ValueError, match=r"weight must be a float array of shape \(3,\) \(one per class\), got shape \(4,\)"):
        F.cross_entropy(x, np.array([0, 1, 2, 0]), np.ones(4))
    with pytest.raises(ValueError, match=r"target values must be in \[0, 3\) \(or ignore_index -100\), got min -1"):
        F.nll_loss(x, np.array([0, -1, 2, 0]))
    with pytest.raises(ValueError, match=r"target must be integer class indices of shape \(2, 5\) for input .* "
                                         r"\(2, 3, 5\), got shape \(2,\)"):
        F.cross_entropy(mm.Tensor(randn(2, 3, 5)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"mse_loss: input \(4, 1\) and target \(4,\) must have the same shape"):
        F.mse_loss(mm.Tensor(randn(4, 1)), mm.Tensor(randn(4)))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(4,\) must broadcast to input \(4, 3\)"):
        F.binary_cross_entropy_with_logits(x, mm.Tensor(np.zeros((4, 3))), pos_weight=np.ones(4))
    with pytest.raises(ValueError, match=r"MSELoss: reduction must be one of"):
        nn.MSELoss(reduction="elementwise_mean")
