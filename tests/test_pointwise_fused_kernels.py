"""minimix.kernels.pointwise_fused: grouped 1x1 conv -> scale/shift -> activation (-> + residual), with
squeeze-excite's gate on the input channels, against PyTorch (float64 tight, float32 loose)."""
import numpy as np
import pytest
import torch
from parity import DTYPES, randn

from minimix.kernels import pointwise_fused, threads


def _torch_expected(x, weights, in_splits, coef, activation, residual, gate):
    """act(conv1x1(x * gate) with a block-diagonal weight * scale + shift) + residual, in torch float64."""
    c = x.shape[1]
    full = np.zeros((sum(w.shape[0] for w in weights), c))
    row = col = 0
    for w, ci in zip(weights, in_splits):
        full[row:row + w.shape[0], col:col + ci] = w
        row, col = row + w.shape[0], col + ci
    t = torch.from_numpy(x.astype(np.float64))
    if gate is not None:
        t = t * torch.from_numpy(gate.astype(np.float64))[:, :, None, None]
    z = torch.nn.functional.conv2d(t, torch.from_numpy(full)[:, :, None, None])
    z = z * torch.from_numpy(coef[0].astype(np.float64))[None, :, None, None] \
        + torch.from_numpy(coef[1].astype(np.float64))[None, :, None, None]
    y = {None: z, "relu": torch.relu(z), "silu": torch.nn.functional.silu(z)}[activation]
    if residual is not None:
        y = y + torch.from_numpy(residual.astype(np.float64))
    return y.numpy()


@DTYPES
@pytest.mark.parametrize("n, in_splits, out_splits, hw, activation, with_residual, with_gate", [
    (1, (5,), (7,), (3, 4), "silu", False, False),              # batch 1, non-square, one group
    (3, (4, 3, 3), (3, 3, 2), (5, 5), "relu", True, True),     # 10 channels over 3 groups, SE gate, residual
    (9, (6, 5), (8, 7), (4, 6), None, True, False),            # many sub-blocks (see below) and both threads
    (2, (8,), (8,), (1, 1), "silu", False, True),              # 1x1 maps
    (4, (5, 4), (3, 6), (2, 2), "silu", True, True),           # gate on group 0's weights (3 <= 4 pixels), group 1's input
])
def test_pointwise_bn_act_matches_torch(dtype, n, in_splits, out_splits, hw, activation, with_residual, with_gate,
                                        monkeypatch):
    monkeypatch.setattr(pointwise_fused, "_BLOCK_BYTES", 64)  # one image per sub-block
    monkeypatch.setattr(pointwise_fused, "_MIN_CHUNK_ELEMENTS", 1)  # split images over threads even when tiny
    c, o = sum(in_splits), sum(out_splits)
    x = (randn(n, c, *hw, seed=1) * 2).astype(dtype)
    weights = [randn(oi, ci, seed=10 + i).astype(dtype) for i, (oi, ci) in enumerate(zip(out_splits, in_splits))]
    coef = np.stack([1 + randn(o, seed=3) ** 2, randn(o, seed=4)]).astype(dtype)
    residual = randn(n, o, *hw, seed=5).astype(dtype) if with_residual else None
    gate = (1 / (1 + np.exp(-randn(n, c, seed=6)))).astype(dtype) if with_gate else None
    y = pointwise_fused.pointwise_bn_act(x, weights, in_splits, coef, activation, residual=residual, gate=gate)
    expected = _torch_expected(x, weights, in_splits, coef, activation, residual, gate)
    assert y.dtype == dtype and y.shape == (n, o, *hw)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y, expected, **tol)


def test_pointwise_bn_act_reads_non_contiguous_input():
    x = np.ascontiguousarray(randn(2, 3, 4, 5).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # channels-last storage
    w, coef = randn(4, 3, seed=1), np.stack([np.ones(4), np.zeros(4)])
    y = pointwise_fused.pointwise_bn_act(x, [w], (3,), coef)
    np.testing.assert_allclose(y, _torch_expected(x, [w], (3,), coef, None, None, None), rtol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_splits=(2, 2)), r"in_splits \[2, 2\] must split x's 3 channels"),
    (dict(weights=[np.zeros((4, 2))]), r"weights\[0\] must be \(O_i, 3\), got shape \(4, 2\)"),
    (dict(coef=np.zeros((2, 5))), r"coef must be \(2, 4\)"),
    (dict(residual=np.zeros((2, 4, 4, 4))), r"residual must be \(2, 4, 4, 5\)"),
    (dict(gate=np.zeros((2, 4))), r"gate must be \(2, 3\)"),
])
def test_pointwise_bn_act_names_bad_arguments(kwargs, message):
    args = dict(x=randn(2, 3, 4, 5), weights=[randn(4, 3, seed=1)], in_splits=(3,),
                coef=np.stack([np.ones(4), np.zeros(4)]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pointwise_fused.pointwise_bn_act(**args)


@DTYPES
@pytest.mark.parametrize("n, in_splits, out_splits, hw", [
    (1, (5,), (7,), (3, 4)),             # batch 1, non-square
    (4, (4, 3, 3), (3, 3, 2), (5, 5)),   # 10 channels over 3 groups
    (9, (6, 5), (8, 7), (2, 6)),         # many sub-blocks and both threads
])
def test_excite_pointwise_backward_matches_torch(dtype, n, in_splits, out_splits, hw, monkeypatch):
    monkeypatch.setattr(pointwise_fused, "_BLOCK_BYTES", 64)
    monkeypatch.setattr(pointwise_fused, "_MIN_CHUNK_ELEMENTS", 1)
    c = sum(in_splits)
    x = randn(n, c, *hw, seed=1).astype(dtype)
    gate = (1 / (1 + np.exp(-randn(n, c, seed=2)))).astype(dtype)
    weights = [randn(oi, ci, seed=10 + i).astype(dtype) for i, (oi, ci) in enumerate(zip(out_splits, in_splits))]
    gy = randn(n, sum(out_splits), *hw, seed=3).astype(dtype)
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    tg = torch.from_numpy(gate.astype(np.float64)).requires_grad_()
    tws = [torch.from_numpy(w.astype(np.float64)).requires_grad_() for w in weights]
    parts = torch.split(tx * tg[:, :, None, None], list(in_splits), dim=1)
    ty = torch.cat([torch.nn.functional.conv2d(p, w[:, :, None, None]) for p, w in zip(parts, tws)], dim=1)
    ty.backward(torch.from_numpy(gy.astype(np.float64)))
    y = pointwise_fused.pointwise_bn_act(x, weights, in_splits, None, gate=gate)
    gx, g_gate, gws = pointwise_fused.excite_pointwise_backward(gy, x, gate, weights, in_splits)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(g_gate, tg.grad.numpy(), **tol)
    for gw, tw in zip(gws, tws):
        assert gw.dtype == dtype
        np.testing.assert_allclose(gw, tw.grad.numpy(), **tol)
    only_w = pointwise_fused.excite_pointwise_backward(gy, x, gate, weights, in_splits, need=(False, False, True))
    assert only_w[0] is None and only_w[1] is None
    np.testing.assert_allclose(only_w[2][0], gws[0], rtol=1e-12)


@DTYPES
def test_excite_pointwise_backward_adds_the_gates_path_to_the_input_gradient(dtype, monkeypatch):
    """gate = sigmoid(mean_hw(x) @ v), so x reaches y through the gate too: ``gate_to_input`` turns each
    thread's rows of dL/dgate into that path's per-plane term, which the kernel adds to dL/dx."""
    monkeypatch.setattr(pointwise_fused, "_BLOCK_BYTES", 64)
    monkeypatch.setattr(pointwise_fused, "_MIN_CHUNK_ELEMENTS", 1)
    n, in_splits, out_splits, hw = 9, (4, 3), (5, 6), (3, 5)
    c = sum(in_splits)
    x = randn(n, c, *hw, seed=1).astype(dtype)
    v = randn(c, c, seed=2).astype(dtype)
    weights = [randn(oi, ci, seed=10 + i).astype(dtype) for i, (oi, ci) in enumerate(zip(out_splits, in_splits))]
    gy = randn(n, sum(out_splits), *hw, seed=3).astype(dtype)
    gate = 1 / (1 + np.exp(-(x.mean(axis=(2, 3)) @ v)))
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    tgate = torch.sigmoid(tx.mean(dim=(2, 3)) @ torch.from_numpy(v.astype(np.float64)))
    parts = torch.split(tx * tgate[:, :, None, None], list(in_splits), dim=1)
    ty = torch.cat([torch.nn.functional.conv2d(p, torch.from_numpy(w.astype(np.float64))[:, :, None, None])
                    for p, w in zip(parts, weights)], dim=1)
    ty.backward(torch.from_numpy(gy.astype(np.float64)))
    seen = []

    def through_gate(start, stop, g_gate_rows):
        seen.append((start, stop, g_gate_rows.copy()))
        g_pre = g_gate_rows * gate[start:stop] * (1 - gate[start:stop])
        return g_pre @ v.T / (hw[0] * hw[1])

    gx, g_gate, _ = pointwise_fused.excite_pointwise_backward(gy, x, gate.astype(dtype), weights, in_splits,
                                                              gate_to_input=through_gate)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **tol)
    ranges = sorted((a, b) for a, b, _ in seen)  # one call per thread, for that thread's images
    assert len(ranges) == min(threads.num_threads(), n) and ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(prev[1] == nxt[0] for prev, nxt in zip(ranges, ranges[1:]))
    for start, stop, rows in seen:
        np.testing.assert_array_equal(rows, g_gate[start:stop])
