"""MixNet-S / M / L (Tan & Le 2019, "MixConv: Mixed Depthwise Convolutional Kernels") and a CIFAR variant.

The network::

    image (N, 3, H, W)
      -> stem: 3x3 conv, stride 2 -> BN -> ReLU                      (N, c_stem, H/2, W/2)
      -> stages of blocks, one table row (block string) per group    (N, c_last, H/32, W/32)
      -> head: 1x1 conv to 1536 channels -> BN -> ReLU
      -> global average pool -> dropout -> linear classifier         (N, num_classes)

The block tables are the reference's (tensorflow/tpu ``mixnet_builder.py``), grouped into stages
as timm groups them (so block ``blocks.2.1`` here is timm's ``blocks.2.1``). The width multiplier
scales the stem and every block's channels with :func:`round_filters`; the head stays 1536 wide
(as in the reference and timm). MixNet-L is MixNet-M at width 1.3 (the paper's and timm's
choice; a version of the TensorFlow builder file passes 1.4, which gives the same stem but wider
blocks).

Parameter counts at 1000 classes: S 4,134,606; M 5,014,382; L 7,329,252 (timm's numbers).
"""
from .. import nn
from .blocks import make_block
from .blockstring import decode_stages, round_filters
from .init import init_mixnet_weights

MIXNET_S = [
    ["r1_k3_a1_p1_s11_e1_i16_o16"],
    ["r1_k3_a1.1_p1.1_s22_e6_i16_o24", "r1_k3_a1.1_p1.1_s11_e3_i24_o24"],
    ["r1_k3.5.7_a1_p1_s22_e6_i24_o40_se0.5_sw", "r3_k3.5_a1.1_p1.1_s11_e6_i40_o40_se0.5_sw"],
    ["r1_k3.5.7_a1_p1.1_s22_e6_i40_o80_se0.25_sw", "r2_k3.5_a1_p1.1_s11_e6_i80_o80_se0.25_sw"],
    ["r1_k3.5.7_a1.1_p1.1_s11_e6_i80_o120_se0.5_sw", "r2_k3.5.7.9_a1.1_p1.1_s11_e3_i120_o120_se0.5_sw"],
    ["r1_k3.5.7.9.11_a1_p1_s22_e6_i120_o200_se0.5_sw", "r2_k3.5.7.9_a1_p1.1_s11_e6_i200_o200_se0.5_sw"],
]

MIXNET_M = [
    ["r1_k3_a1_p1_s11_e1_i24_o24"],
    ["r1_k3.5.7_a1.1_p1.1_s22_e6_i24_o32", "r1_k3_a1.1_p1.1_s11_e3_i32_o32"],
    ["r1_k3.5.7.9_a1_p1_s22_e6_i32_o40_se0.5_sw", "r3_k3.5_a1.1_p1.1_s11_e6_i40_o40_se0.5_sw"],
    ["r1_k3.5.7_a1_p1_s22_e6_i40_o80_se0.25_sw", "r3_k3.5.7.9_a1.1_p1.1_s11_e6_i80_o80_se0.25_sw"],
    ["r1_k3_a1_p1_s11_e6_i80_o120_se0.5_sw", "r3_k3.5.7.9_a1.1_p1.1_s11_e3_i120_o120_se0.5_sw"],
    ["r1_k3.5.7.9_a1_p1_s22_e6_i120_o200_se0.5_sw", "r3_k3.5.7.9_a1_p1.1_s11_e6_i200_o200_se0.5_sw"],
]


class MixNet(nn.Module):
    """A MixNet built from a block table.

    Args:
        stages: list of stages, each a list of block strings or :class:`BlockArgs` (unscaled).
        num_classes: classifier outputs.
        width_multiplier: scales stem and block channels (``round_filters``), not the head.
        stem_channels: stem width before scaling (16 for S, 24 for M).
        stem_stride: 2 for ImageNet; 1 keeps full resolution for 32x32 inputs.
        head_channels: width of the final 1x1 conv (1536 in the reference; never scaled).
        dropout: dropout probability before the classifier.
        kernel_sizes: if given, every block's depthwise kernel list is replaced by it
            (e.g. ``(3,)`` for a plain 3x3 depthwise network to compare with MixConv).
        first_downsample_stride: if given, the first block group with stride 2 uses this stride
            instead (1 for CIFAR, where an early stride-2 would throw away too much of 32x32).
        init: "reference" (default) re-initialises the weights as the paper's code does
            (``models.init``); "pytorch" keeps each layer's PyTorch-style default (Conv2d and Linear
            uniform in +-1/sqrt(fan_in), BatchNorm 1 and 0), as a plain PyTorch model would start.
        bn_eps, bn_momentum: BatchNorm settings (PyTorch convention; timm's are 1e-5, 0.1; the
            TensorFlow reference uses eps 1e-3 and a decay of 0.99, i.e. momentum 0.01).
        split: how every MixConv splits its channels among its kernel sizes, "equal" (the
            reference code and timm) or "exponential" (the paper's section 3: about half the
            channels to the smallest kernel, a quarter to the next...); see ``nn.split_channels``.
            The grouped 1x1 convolutions keep the equal split.
        dilated: the reference code's ``dilated`` option: in stride-1 blocks each k x k depthwise
            kernel with k > 3 becomes a 3x3 kernel at dilation (k - 1) / 2 (same window, 9 weights);
            stride-2 blocks keep their kernels (``nn.mixconv.DilatedMixConv2d``).

    Attributes ``conv_stem, bn1, blocks, conv_head, bn2, classifier`` are named as in timm;
    ``stage_args`` holds the width-scaled BlockArgs actually built.
    """

    def __init__(self, stages, num_classes=1000, width_multiplier=1.0, stem_channels=16, stem_stride=2,
                 head_channels=1536, dropout=0.2, kernel_sizes=None, first_downsample_stride=None,
                 in_channels=3, bn_eps=1e-5, bn_momentum=0.1, init="reference", split="equal", dilated=False):
        super().__init__()
        if init not in ("reference", "pytorch"):
            raise ValueError(f"MixNet: init must be 'reference' or 'pytorch', got {init!r}")
        if split not in ("equal", "exponential"):
            raise ValueError(f"MixNet: split must be 'equal' or 'exponential', got {split!r}")
        if not isinstance(dilated, bool):
            raise TypeError(f"MixNet: dilated must be True or False, got {dilated!r}")
        self.stage_args = _prepare_table(stages, width_multiplier, kernel_sizes, first_downsample_stride)
        stem_out = round_filters(stem_channels, width_multiplier)
        _check_chaining(self.stage_args, stem_out)
        bn = dict(eps=bn_eps, momentum=bn_momentum)

        self.conv_stem = nn.Conv2d(in_channels, stem_out, 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNormAct2d(stem_out, act_layer=nn.ReLU, **bn)  # BN + ReLU as one module, as timm
        self.blocks = nn.ModuleList(
            nn.Sequential(*[make_block(a, bn_eps, bn_momentum, split=split, dilated=dilated) for a in _repeat(group)])
            for group in self.stage_args
        )
        last = self.stage_args[-1][-1].out_channels
        self.conv_head = nn.Conv2d(last, head_channels, 1, bias=False)
        self.bn2 = nn.BatchNormAct2d(head_channels, act_layer=nn.ReLU, **bn)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)
        self.num_classes, self.head_channels = num_classes, head_channels
        self.split, self.dilated = split, dilated
        if init == "reference":
            init_mixnet_weights(self)

    def forward_features(self, x):
        """(N, 3, H, W) -> (N, head_channels, H/32, W/32) (before pooling)."""
        x = self.bn1(self.conv_stem(x))  # bn1 applies its ReLU
        for stage in self.blocks:
            x = stage(x)
        return self.bn2(self.conv_head(x))

    def forward(self, x):
        x = self.flatten(self.global_pool(self.forward_features(x)))
        return self.classifier(self.dropout(x))


def _prepare_table(stages, width_multiplier, kernel_sizes, first_downsample_stride) -> list:
    """Decode, scale channels, and apply the kernel/stride overrides."""
    if not stages or any(not stage for stage in stages):
        raise ValueError(f"stages must be a non-empty list of non-empty lists of block strings, got {stages!r}")
    table = [[a.scaled(width_multiplier) for a in stage] for stage in decode_stages(stages)]
    if kernel_sizes is not None:
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd positive integers, got {kernel_sizes}")
        table = [[a.replace(kernel_sizes=kernel_sizes) for a in stage] for stage in table]
    if first_downsample_stride is not None:
        for stage in table:
            hits = [j for j, a in enumerate(stage) if max(a.stride) > 1]
            if hits:
                j = hits[0]
                stage[j] = stage[j].replace(stride=(first_downsample_stride, first_downsample_stride))
                break
    return table


def _check_chaining(table, stem_out):
    """Every group must start with the channel count the layer before it produces."""
    channels = stem_out
    for stage in table:
        for a in stage:
            if a.in_channels != channels:
                raise ValueError(
                    f"block {a} takes {a.in_channels} input channels (after width scaling), "
                    f"but the layer before it produces {channels}"
                )
            channels = a.out_channels


def _repeat(group) -> list:
    """Expand each group into its blocks: the first as written, repeats at stride 1 with in = out."""
    blocks = []
    for a in group:
        blocks.append(a.replace(repeats=1))
        blocks += [a.replace(repeats=1, in_channels=a.out_channels, stride=(1, 1))] * (a.repeats - 1)
    return blocks


def mixnet_s(num_classes=1000, width_multiplier=1.0, **knobs) -> MixNet:
    """MixNet-S (4.1 M parameters at 1000 classes). ``knobs``: any :class:`MixNet` argument."""
    knobs = {"stem_channels": 16, "dropout": 0.2, **knobs}
    return MixNet(MIXNET_S, num_classes=num_classes, width_multiplier=width_multiplier, **knobs)


def mixnet_m(num_classes=1000, width_multiplier=1.0, **knobs) -> MixNet:
    """MixNet-M (5.0 M parameters at 1000 classes)."""
    knobs = {"stem_channels": 24, "dropout": 0.25, **knobs}
    return MixNet(MIXNET_M, num_classes=num_classes, width_multiplier=width_multiplier, **knobs)


def mixnet_l(num_classes=1000, width_multiplier=1.3, **knobs) -> MixNet:
    """MixNet-L = MixNet-M at width 1.3 (7.3 M parameters at 1000 classes)."""
    return mixnet_m(num_classes=num_classes, width_multiplier=width_multiplier, **knobs)


def mixnet_cifar(num_classes=10, width_multiplier=0.5, head_channels=1024, dropout=0.2, kernel_sizes=None,
                 stem_stride=1, first_downsample_stride=1, **knobs) -> MixNet:
    """MixNet-S's table for 32x32 images: 815,388 parameters, about 25.9 M multiply-accumulates.

    Width 0.5, a 1024-channel head, and no downsampling in the stem nor in the first stride-2
    block, so the feature maps go 32 -> 16 -> 8 -> 4 instead of 32 -> 1.
    ``mixnet_cifar(kernel_sizes=(3,))`` is the all-3x3 baseline for the MixConv comparison.
    """
    return mixnet_s(num_classes=num_classes, width_multiplier=width_multiplier, head_channels=head_channels,
                    dropout=dropout, kernel_sizes=kernel_sizes, stem_stride=stem_stride,
                    first_downsample_stride=first_downsample_stride, **knobs)


MODELS = {"mixnet_s": mixnet_s, "mixnet_m": mixnet_m, "mixnet_l": mixnet_l, "mixnet_cifar": mixnet_cifar}

__all__ = ["MixNet", "MIXNET_S", "MIXNET_M", "mixnet_s", "mixnet_m", "mixnet_l", "mixnet_cifar",
           "MODELS"]
