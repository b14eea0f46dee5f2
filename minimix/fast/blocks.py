"""MixNet's blocks with fewer passes over memory: at inference each grouped 1x1 conv -> BN (-> act)
(-> + x) in one pass; squeeze-and-excitation's gate folded into the projection (always).

The reference block forward (``minimix.models.blocks``) reads::

    x -> 1x1 expand -> BN -> act -> MixConv -> BN -> act -> SE: h * gate -> 1x1 project -> BN (-> + x)

In eval mode each BN is a fixed scale and shift per channel, so a 1x1 conv and the BN (and the
activation, and the residual add) after it can be computed for a few images at a time while the
output is in cache (``minimix.kernels.pointwise_fused``): the BN, activation and add passes over
memory disappear. The SE's product h * gate only feeds the projection, and
``w @ (h[n] * gate[n]) = (w * gate[n]) @ h[n]`` scales an (O, C) matrix per image instead of the
whole activation (or, on small maps where that matrix is the larger, the few images' input in cache:
``minimix.kernels.pointwise_fused``). The MixConv (with ``nn.fuse``, its own one-pass op) and the SE's small convs run
as the block's modules. That is inference: under ``no_grad`` with the block in eval mode.

In training the whole squeeze-and-excitation and the projection conv are one op
(``SqueezeExcitePointwise``): ``x * gate`` is never made, in the forward or the backward, and so is
not kept for the backward either (less peak memory), and the gradient reaching the SE's input through
its mean is added to the product's gradient while that is in cache, not by the engine in another pass;
every other part runs as the block's module. While a forward hook watches a part this op does not
call (or the block has parts it does not know), the reference forward runs.
"""
import numpy as np

from ..kernels.excite_numba import plane_means
from ..kernels.pointwise_fused import excite_pointwise_backward, pointwise_bn_act
from ..nn.conv import Conv2d
from ..nn.layers import Identity
from ..nn.mixconv import GroupedConv2d
from ..nn.norm import BatchNorm2d
from ..nn.pooling import adaptive_avg_pool2d
from ..nn.squeeze_excite import SqueezeExcite
from ..ops import sigmoid
from ..ops.elementwise import ReLU, SiLU, _sigmoid
from ..tensor import Function, is_grad_enabled
from .norm_act import activation_kind


def _hooked(*modules):
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


class PointwiseBatchNormAct(Function):
    """act(eval_bn(grouped_1x1(x [* gate]))) [+ residual] in one node, forward only."""

    def forward(self, x, *arrays, in_splits, coef, activation, has_gate, has_residual):
        count = len(in_splits)
        weights = [w[:, :, 0, 0] for w in arrays[:count]]
        rest = list(arrays[count:])
        gate = rest.pop(0).reshape(x.shape[0], x.shape[1]) if has_gate else None
        residual = rest.pop(0) if has_residual else None
        return pointwise_bn_act(x, weights, in_splits, coef, activation, residual=residual, gate=gate)

    def backward(self, g):
        raise RuntimeError("PointwiseBatchNormAct is an inference op (no_grad); with gradients the block "
                           "runs its reference forward")

    def profile_label(self):
        return "1x1 conv + BN + act (inference)"


class SqueezeExcitePointwise(Function):
    """Squeeze-and-excitation and the projection after it, as one node: y = grouped_1x1(h * gate) with::

        s = mean over (H, W) of h            (N, C)      squeeze
        z = s @ w_r^T + b_r,  a = act(z)     (N, R)      conv_reduce, act
        gate = sigmoid(a @ w_e^T + b_e)      (N, C)      conv_expand, sigmoid

    The SE's 1x1 convolutions on 1x1 maps are (N, C) @ (C, R) products here. The projection runs as
    ``(w_i * gate[n, in_i]) @ h[n, in_i]`` per image and group, so h * gate is never made (nor kept).
    h reaches y by two paths, the product and the gate (through s), so dL/dh has two terms::

        dL/dh[n, c] = u[n, c] * gate[n, c] + (dL/ds[n, c]) / (H*W)      u[n] = w^T dL/dy[n]

    As separate ops the second term is a broadcast (N, C, 1, 1) array the engine adds to the first in
    another pass over memory. Here ``kernels.pointwise_fused.excite_pointwise_backward`` gets dL/dgate
    from the projection's weight-gradient products first, this op turns those rows into dL/ds
    (``_through_gate``), and the kernel adds them while each block of dL/dh is in cache.
    """

    def forward(self, h, w_r, b_r, w_e, b_e, *weights, in_splits, activation):
        n, c = h.shape[:2]
        self.h, self.activation = np.ascontiguousarray(h), activation
        self.w_r, self.w_e = w_r[:, :, 0, 0], w_e[:, :, 0, 0]
        self.s = plane_means(self.h).reshape(n, c)
        self.z = self.s @ self.w_r.T + b_r
        act = _activation_op(activation)
        self.a = self.z if act is None else act.forward(self.z)
        self.gate = _sigmoid(self.a @ self.w_e.T + b_e)
        self.weights, self.in_splits = [w[:, :, 0, 0] for w in weights], in_splits
        return pointwise_bn_act(self.h, self.weights, in_splits, None, gate=self.gate)

    def _through_gate(self, start, stop, g_gate, g_z, g_pre):
        """dL/ds / (H*W) for images [start, stop) from their rows of dL/dgate; keeps the rows of dL/dz (the
        reduce conv's output) and of dL/d(gate's input) in g_z and g_pre, for the SE's weight gradients."""
        gate = self.gate[start:stop]
        g_pre[start:stop] = g_gate * gate * (1 - gate)  # sigmoid's derivative, s (1 - s)
        g_a, act = g_pre[start:stop] @ self.w_e, _activation_op(self.activation)
        if act is not None:  # the reference op's backward on these rows (its forward saves what it needs)
            act.forward(self.z[start:stop])
            g_a = act.backward(g_a)[0]
        g_z[start:stop] = g_a
        return g_z[start:stop] @ self.w_r / (self.h.shape[2] * self.h.shape[3])

    def backward(self, g):
        need_h = self.parents[0].requires_grad
        need_se = any(p.requires_grad for p in self.parents[1:5])
        need_w = any(p.requires_grad for p in self.parents[5:])
        n = self.gate.shape[0]
        g_z, g_pre = np.empty_like(self.z), np.empty_like(self.gate)

        def through_gate(start, stop, g_gate):
            return self._through_gate(start, stop, g_gate, g_z, g_pre)

        gx, g_gate, gws = excite_pointwise_backward(g, self.h, self.gate, self.weights, self.in_splits,
                                                    need=(need_h, need_se and not need_h, need_w),
                                                    gate_to_input=through_gate if need_h else None)
        if need_se and not need_h:  # the kernel made dL/dgate but had no dL/dh to add the rows to
            through_gate(0, n, g_gate)
        se_grads = [None] * 4
        if need_se:
            se_grads = [(g_z.T @ self.s)[:, :, None, None], g_z.sum(axis=0),
                        (g_pre.T @ self.a)[:, :, None, None], g_pre.sum(axis=0)]
        gws = [None] * len(self.weights) if gws is None else [gw[:, :, None, None] for gw in gws]
        grads = [gx, *se_grads, *gws]
        return tuple(gr if p.requires_grad else None for gr, p in zip(grads, self.parents))

    def profile_label(self):
        return "Squeeze-excite + MixedConv2d 1x1"


def _activation_op(kind):
    """The reference op for the SE's activation kind ("silu", "relu"; None: no activation), used on arrays:
    its ``forward`` and ``backward`` are the definitions (``minimix.ops.elementwise``), not a copy of them."""
    return None if kind is None else {"silu": SiLU, "relu": ReLU}[kind](())


def _plain_pointwise(conv, x):
    """True for a bias-free grouped 1x1 conv, stride 1, weights of x's dtype, no forward hooks."""
    return (type(conv) is GroupedConv2d and conv.kernel_size == 1 and conv.stride in (1, (1, 1))
            and not _hooked(conv, *conv.convs)
            and all(c.bias is None and c.weight.dtype == x.dtype for c in conv.convs))


def _plan(conv, bn, x):
    """(weights, in_splits, coef, activation) for conv -> bn on x, or None where this op cannot stand in:
    not a bias-free grouped 1x1 conv with stride 1, not an eval BatchNorm(Act)2d with running
    statistics, weight and bias, another activation, other dtypes, or a forward hook on a part."""
    if type(conv) is not GroupedConv2d or not isinstance(bn, BatchNorm2d) or bn.training:
        return None
    if conv.kernel_size != 1 or conv.stride not in (1, (1, 1)) or _hooked(conv, bn, *conv.convs):
        return None
    if bn.running_mean is None or bn.weight is None or bn.bias is None or bn.num_features != conv.out_channels:
        return None
    kind = activation_kind(bn.act) if hasattr(bn, "act") else None
    weights = [c.weight for c in conv.convs]
    if kind is NotImplemented or any(c.bias is not None or c.weight.dtype != x.dtype for c in conv.convs) \
            or bn.weight.dtype != x.dtype:
        return None
    scale = bn.weight.data.astype(np.float64) / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    shift = bn.bias.data.astype(np.float64) - bn.running_mean.astype(np.float64) * scale
    return weights, tuple(conv.in_splits), np.stack([scale, shift]).astype(x.dtype), kind


def _run(plan, x, gate=None, residual=None):
    weights, in_splits, coef, kind = plan
    inputs = [x, *weights] + ([gate] if gate is not None else []) + ([residual] if residual is not None else [])
    return PointwiseBatchNormAct.apply(*inputs, in_splits=in_splits, coef=coef, activation=kind,
                                       has_gate=gate is not None, has_residual=residual is not None)


def _gate(se, h):
    """SqueezeExcite's gate for h, (N, C, 1, 1), as ``SqueezeExcite.forward`` computes it."""
    s = adaptive_avg_pool2d(h, 1)
    return sigmoid(se.conv_expand(se.act(se.conv_reduce(s))))


def _se_convs_plain(se, x):
    """True for an SE whose two convs are plain 1x1 convs with bias (stride 1, no padding, one group, x's
    dtype) and whose parts no forward hook watches: what ``SqueezeExcitePointwise`` computes."""
    for conv in (se.conv_reduce, se.conv_expand):
        if type(conv) is not Conv2d or conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1 \
                or conv.padding not in ((0, 0), "same", "valid") or conv.bias is None or conv.weight.dtype != x.dtype:
            return False
    return not _hooked(se.conv_reduce, se.conv_expand) and activation_kind(se.act) is not NotImplemented


def _training(block, x, expand, mixconv, mix_bn, se, project):
    """The block with its modules, except squeeze-excite and the projection conv: one SqueezeExcitePointwise."""
    conv, bn = project
    if type(se) is not SqueezeExcite or not _plain_pointwise(conv, x) or not _se_convs_plain(se, x):
        return NotImplemented  # nothing to gain
    h = x if expand is None else expand[1](expand[0](x))
    h = mix_bn(mixconv(h))
    y = bn(SqueezeExcitePointwise.apply(h, se.conv_reduce.weight, se.conv_reduce.bias, se.conv_expand.weight,
                                        se.conv_expand.bias, *[c.weight for c in conv.convs],
                                        in_splits=tuple(conv.in_splits), activation=activation_kind(se.act)))
    return y + x if block.has_skip else y


def mixnet_block(block, x):
    """The fast ``InvertedResidual.forward`` / ``DepthwiseSeparable.forward`` (module docstring).

    Inference (no_grad, eval): 1x1 convs with their BN, activation and residual add in one pass.
    Otherwise, in blocks with squeeze-excite: the SE and the projection as one op
    (``SqueezeExcitePointwise``), the other parts as the block's modules. NotImplemented (the reference
    runs) for an empty batch or input the reference should explain, or for parts this op does not know.
    """
    if len(x.shape) != 4 or x.shape[0] == 0:
        return NotImplemented
    from ..models.blocks import DepthwiseSeparable, InvertedResidual  # (a module-level import would be circular)

    if type(block) is InvertedResidual:
        expand, (mixconv, mix_bn), project = (block.conv_pw, block.bn1), (block.conv_dw, block.bn2), \
            (block.conv_pwl, block.bn3)
    elif type(block) is DepthwiseSeparable:
        expand, (mixconv, mix_bn), project = None, (block.conv_dw, block.bn1), (block.conv_pw, block.bn2)
    else:
        return NotImplemented
    se = block.se
    if not (type(se) is Identity or (type(se) is SqueezeExcite and not _hooked(se))):
        return NotImplemented
    if x.shape[1] != (expand or project)[0].in_channels:
        return NotImplemented
    if is_grad_enabled() or block.training:
        return _training(block, x, expand, mixconv, mix_bn, se, project)
    plans = [None if expand is None else _plan(*expand, x), _plan(*project, x)]
    if plans[1] is None or (expand is not None and plans[0] is None):
        return NotImplemented
    h = x if expand is None else _run(plans[0], x)
    h = mix_bn(mixconv(h))
    gate = None if type(se) is Identity else _gate(se, h)
    return _run(plans[1], h, gate=gate, residual=x if block.has_skip else None)


__all__ = ["PointwiseBatchNormAct", "SqueezeExcitePointwise", "mixnet_block"]
