"""The two MixNet blocks, built from one (width-scaled) :class:`BlockArgs` repeat.

Shapes: x is (N, C_in, H, W); the block returns (N, C_out, H/s, W/s).

Depthwise-separable block (expansion ratio 1; MixNet's first block)::

    x -> MixConv depthwise (stride s) -> BN -> act -> [squeeze-excite] -> grouped 1x1 -> BN (-> + x)

Inverted residual block (MobileNetV2 style: narrow -> wide -> narrow)::

    x -> grouped 1x1 expansion to C_mid = C_in * e -> BN -> act
      -> MixConv depthwise (stride s) -> BN -> act
      -> [squeeze-excite, reduced width int(C_in * se_ratio)]
      -> grouped 1x1 projection to C_out -> BN (-> + x)

The residual ``+ x`` is used when the shapes allow it (stride 1 and C_in == C_out) and the
string does not say ``noskip``. The projection has no activation ("linear bottleneck").
``act`` is ReLU, or SiLU (swish) where the block string has ``sw``; the squeeze-excite uses the
block's activation too. Attribute names follow timm (``conv_pw``, ``bn1``, ``conv_dw`` ...), which
keeps the checkpoint mapping in :mod:`minimix.models.timm` a one-line rule.
"""
from .. import nn
from ..nn.fused import mixconv_bn_act
from ..nn.norm import batch_norm_act
from .blockstring import BlockArgs


def _one_by_one(block_args: BlockArgs, field: str, kernel_sizes: tuple) -> int:
    """The group count of a grouped pointwise conv; minimix builds 1x1 groups only."""
    if any(k != 1 for k in kernel_sizes):
        raise ValueError(
            f"block {block_args}: field {field!r} asks for kernel sizes {kernel_sizes}; "
            "minimix builds grouped 1x1 (pointwise) convolutions only"
        )
    return len(kernel_sizes)


def _stride(block_args: BlockArgs):
    sh, sw = block_args.stride
    return sh if sh == sw else (sh, sw)


class _Block(nn.Module):
    """Shared pieces: activation choice and the residual rule."""

    def __init__(self, block_args: BlockArgs):
        super().__init__()
        self.block_args = block_args
        self.activation = nn.SiLU if block_args.swish else nn.ReLU
        self.has_skip = (
            block_args.id_skip
            and tuple(block_args.stride) == (1, 1)
            and block_args.in_channels == block_args.out_channels
        )

    def _squeeze_excite(self, channels):
        ratio = self.block_args.se_ratio
        if not ratio:
            return None
        reduced = max(1, int(self.block_args.in_channels * ratio))
        return nn.SqueezeExcite(channels, reduced, activation=self.activation)

    def _residual(self, y, x):
        return y + x if self.has_skip else y

    def extra_repr(self):
        return str(self.block_args)


class DepthwiseSeparable(_Block):
    """Depthwise (MixConv) -> BN -> act -> [SE] -> grouped 1x1 -> BN, plus the skip."""

    def __init__(self, block_args: BlockArgs, bn_eps=1e-5, bn_momentum=0.1):
        super().__init__(block_args)
        a = block_args
        project_groups = _one_by_one(a, "p", a.project_kernel_sizes)
        self.conv_dw = nn.MixConv2d(a.in_channels, kernel_sizes=a.kernel_sizes, stride=_stride(a))
        self.bn1 = nn.BatchNorm2d(a.in_channels, eps=bn_eps, momentum=bn_momentum)
        self.act1 = self.activation()
        self.se = self._squeeze_excite(a.in_channels)
        self.conv_pw = nn.GroupedConv2d(a.in_channels, a.out_channels, groups=project_groups)
        self.bn2 = nn.BatchNorm2d(a.out_channels, eps=bn_eps, momentum=bn_momentum)

    def forward(self, x):
        y = mixconv_bn_act(self.conv_dw, x, self.bn1, self.act1)  # = act1(bn1(conv_dw(x))), fused
        if self.se is not None:
            y = self.se(y)
        y = batch_norm_act(self.conv_pw(y), self.bn2)
        return self._residual(y, x)


class InvertedResidual(_Block):
    """Grouped 1x1 expand -> BN -> act -> MixConv -> BN -> act -> [SE] -> grouped 1x1 project -> BN."""

    def __init__(self, block_args: BlockArgs, bn_eps=1e-5, bn_momentum=0.1):
        super().__init__(block_args)
        a = block_args
        expand_groups = _one_by_one(a, "a", a.expand_kernel_sizes)
        project_groups = _one_by_one(a, "p", a.project_kernel_sizes)
        mid = a.in_channels * a.expand_ratio
        self.conv_pw = nn.GroupedConv2d(a.in_channels, mid, groups=expand_groups)
        self.bn1 = nn.BatchNorm2d(mid, eps=bn_eps, momentum=bn_momentum)
        self.act1 = self.activation()
        self.conv_dw = nn.MixConv2d(mid, kernel_sizes=a.kernel_sizes, stride=_stride(a))
        self.bn2 = nn.BatchNorm2d(mid, eps=bn_eps, momentum=bn_momentum)
        self.act2 = self.activation()
        self.se = self._squeeze_excite(mid)
        self.conv_pwl = nn.GroupedConv2d(mid, a.out_channels, groups=project_groups)
        self.bn3 = nn.BatchNorm2d(a.out_channels, eps=bn_eps, momentum=bn_momentum)

    def forward(self, x):
        y = batch_norm_act(self.conv_pw(x), self.bn1, self.act1)  # = act1(bn1(conv_pw(x))), fused
        y = mixconv_bn_act(self.conv_dw, y, self.bn2, self.act2)  # in inference: one pass
        if self.se is not None:
            y = self.se(y)
        y = batch_norm_act(self.conv_pwl(y), self.bn3)
        return self._residual(y, x)


def make_block(block_args: BlockArgs, bn_eps=1e-5, bn_momentum=0.1) -> _Block:
    """Expansion ratio 1 -> depthwise-separable block (no expansion conv), else inverted residual."""
    cls = DepthwiseSeparable if block_args.expand_ratio == 1 else InvertedResidual
    return cls(block_args, bn_eps=bn_eps, bn_momentum=bn_momentum)
