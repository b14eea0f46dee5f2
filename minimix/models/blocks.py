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
block's activation too. "BN -> act" is one module, ``nn.BatchNormAct2d`` (the activation is its
child ``act``), and the forward methods read exactly as the diagrams. Attribute names follow timm
(``conv_pw``, ``bn1``, ``conv_dw`` ...), which keeps the checkpoint mapping in
:mod:`minimix.models.timm` a one-line rule. ``fusable`` names the MixConv -> BN pair that
``nn.fuse`` folds into one module for inference.

Two knobs for the paper's kernel study change only the MixConv: ``split`` ("equal" or
"exponential", see ``nn.split_channels``) and ``dilated`` (the reference code's option: at stride 1
each k x k kernel with k > 3 becomes 3x3 at dilation (k - 1) / 2, ``nn.mixconv.DilatedMixConv2d``;
such a block has no ``fusable`` pair, as the fused op takes one dilation per layer).
"""
from .. import nn
from ..backends import fast_path
from ..nn.mixconv import DilatedMixConv2d, dilated_kernels
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

    def __init__(self, block_args: BlockArgs, split="equal", dilated=False):
        super().__init__()
        self.block_args, self.split, self.dilated = block_args, split, dilated
        self.activation = nn.SiLU if block_args.swish else nn.ReLU
        self.has_skip = (
            block_args.id_skip
            and tuple(block_args.stride) == (1, 1)
            and block_args.in_channels == block_args.out_channels
        )

    def _depthwise(self, channels):
        """The block's MixConv: ``split`` picks the channel split; ``dilated`` (stride 1 only) turns
        kernels larger than 3x3 into dilated 3x3 ones, and the block then has nothing to fuse."""
        a = self.block_args
        if self.dilated and tuple(a.stride) == (1, 1) and max(a.kernel_sizes) > 3:
            self.fusable = ()
            kernels, dilations = dilated_kernels(a.kernel_sizes)
            return DilatedMixConv2d(channels, kernels, dilations=dilations, split=self.split)
        return nn.MixConv2d(channels, kernel_sizes=a.kernel_sizes, stride=_stride(a), split=self.split)

    def _squeeze_excite(self, channels):
        ratio = self.block_args.se_ratio
        if not ratio:
            return nn.Identity()
        reduced = max(1, int(self.block_args.in_channels * ratio))
        return nn.SqueezeExcite(channels, reduced, activation=self.activation)

    def _bn_act(self, channels, bn_eps, bn_momentum, act=True):
        """BatchNorm followed by the block's activation (``act=False``: no activation)."""
        return nn.BatchNormAct2d(channels, eps=bn_eps, momentum=bn_momentum,
                                 act_layer=self.activation if act else None)

    def extra_repr(self):
        return str(self.block_args)


class DepthwiseSeparable(_Block):
    """Depthwise (MixConv) -> BN -> act -> [SE] -> grouped 1x1 -> BN, plus the skip."""

    fusable = (("conv_dw", "bn1"),)

    def __init__(self, block_args: BlockArgs, bn_eps=1e-5, bn_momentum=0.1, split="equal", dilated=False):
        super().__init__(block_args, split, dilated)
        a = block_args
        project_groups = _one_by_one(a, "p", a.project_kernel_sizes)
        self.conv_dw = self._depthwise(a.in_channels)
        self.bn1 = self._bn_act(a.in_channels, bn_eps, bn_momentum)
        self.se = self._squeeze_excite(a.in_channels)
        self.conv_pw = nn.GroupedConv2d(a.in_channels, a.out_channels, groups=project_groups)
        self.bn2 = self._bn_act(a.out_channels, bn_eps, bn_momentum, act=False)

    @fast_path("mixnet_block")
    def forward(self, x):
        shortcut = x
        x = self.bn1(self.conv_dw(x))      # MixConv depthwise -> BN -> act
        x = self.se(x)                     # squeeze-excite (Identity when the block has none)
        x = self.bn2(self.conv_pw(x))      # grouped 1x1 -> BN, no activation
        return x + shortcut if self.has_skip else x


class InvertedResidual(_Block):
    """Grouped 1x1 expand -> BN -> act -> MixConv -> BN -> act -> [SE] -> grouped 1x1 project -> BN."""

    fusable = (("conv_dw", "bn2"),)

    def __init__(self, block_args: BlockArgs, bn_eps=1e-5, bn_momentum=0.1, split="equal", dilated=False):
        super().__init__(block_args, split, dilated)
        a = block_args
        expand_groups = _one_by_one(a, "a", a.expand_kernel_sizes)
        project_groups = _one_by_one(a, "p", a.project_kernel_sizes)
        mid = a.in_channels * a.expand_ratio
        self.conv_pw = nn.GroupedConv2d(a.in_channels, mid, groups=expand_groups)
        self.bn1 = self._bn_act(mid, bn_eps, bn_momentum)
        self.conv_dw = self._depthwise(mid)
        self.bn2 = self._bn_act(mid, bn_eps, bn_momentum)
        self.se = self._squeeze_excite(mid)
        self.conv_pwl = nn.GroupedConv2d(mid, a.out_channels, groups=project_groups)
        self.bn3 = self._bn_act(a.out_channels, bn_eps, bn_momentum, act=False)

    @fast_path("mixnet_block")
    def forward(self, x):
        shortcut = x
        x = self.bn1(self.conv_pw(x))      # grouped 1x1 expansion -> BN -> act
        x = self.bn2(self.conv_dw(x))      # MixConv depthwise -> BN -> act
        x = self.se(x)                     # squeeze-excite (Identity when the block has none)
        x = self.bn3(self.conv_pwl(x))     # grouped 1x1 projection -> BN, no activation
        return x + shortcut if self.has_skip else x


def make_block(block_args: BlockArgs, bn_eps=1e-5, bn_momentum=0.1, split="equal", dilated=False) -> _Block:
    """Expansion ratio 1 -> depthwise-separable block (no expansion conv), else inverted residual.
    ``split`` and ``dilated``: the MixConv's channel split and dilated kernels (module docstring)."""
    cls = DepthwiseSeparable if block_args.expand_ratio == 1 else InvertedResidual
    return cls(block_args, bn_eps=bn_eps, bn_momentum=bn_momentum, split=split, dilated=dilated)
