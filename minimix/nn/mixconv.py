"""MixConv (Tan & Le 2019): a depthwise convolution whose channel groups use different kernel sizes.

A depthwise convolution filters each channel with its own k x k kernel. MixConv
splits the C channels into g groups and gives group i kernel size k_i
(typically 3, 5, 7, 9...): small kernels see local detail, large ones context,
for about the cost of the mean kernel area::

    x (N, C, H, W) --split channels--> x_1 (c_1) ... x_g (c_g)
    y_i = depthwise_conv(x_i, w_i (c_i, 1, k_i, k_i), padding d*(k_i-1)//2)
    y = concat(y_1, ..., y_g)            (N, C, OH, OW)

With one group it IS a plain depthwise convolution. MixNet also splits its
1x1 convolutions into groups (``GroupedConv2d``) with the same channel rule.

The ``forward`` methods below are exactly that diagram. On the fast path the whole layer runs
as one op that convolves each group in place (``minimix.fast.mixconv``: same numbers, no
split/concatenate copies).
"""
from ..backends import fast_path
from ..ops import cat, split
from ..tensor import check_float_dtypes
from .conv import Conv2d
from .layers import ModuleList
from .module import Module


def split_channels(channels, num_groups, split="equal"):
    """How many channels each of ``num_groups`` groups gets; the sizes sum to ``channels``.

    * ``"equal"`` (the paper's reference code, also timm's): channels // g each,
      the first group takes the remainder: 40 over 3 -> [14, 13, 13].
    * ``"exponential"`` (paper, section 3): group i (counting from 1) gets about
      2^-i of the channels, exactly channels // 2^i for i < g, and the last group
      takes what is left: 32 over 4 -> [16, 8, 4, 4], 40 over 3 -> [20, 10, 10].
    """
    if num_groups < 1:
        raise ValueError(f"split_channels: num_groups must be >= 1, got {num_groups}")
    if split == "equal":
        sizes = [channels // num_groups] * num_groups
        sizes[0] += channels - sum(sizes)
    elif split == "exponential":
        sizes = [channels // 2 ** i for i in range(1, num_groups)]
        sizes.append(channels - sum(sizes))
    else:
        raise ValueError(f"split_channels: split must be 'equal' or 'exponential', got {split!r}")
    if min(sizes) < 1:
        raise ValueError(f"split_channels: {channels} channels are too few for {num_groups} groups "
                         f"with split={split!r} (sizes {sizes})")
    return sizes


def _check_input(module, x, channels, splits):
    """A clear error for input that the channel split cannot take, or of another dtype than the weights."""
    if len(x.shape) != 4 or x.shape[1] != channels:
        raise ValueError(f"{type(module).__name__}: x must be (N, {channels}, H, W) ({channels} channels split "
                         f"{list(splits)}), got shape {tuple(x.shape)}")
    check_float_dtypes(type(module).__name__, x=x, weight=module.convs[0].weight)


class MixConv2d(Module):
    """Mixed depthwise convolution: channel group i uses kernel ``kernel_sizes[i]``.

    ``convs[i]`` is a depthwise Conv2d(c_i, c_i, k_i, groups=c_i, bias=False) with
    padding dilation*(k_i-1)//2 (odd kernels keep the size at stride 1);
    ``splits`` = split_channels(channels, len(kernel_sizes), split).
    """

    def __init__(self, channels, kernel_sizes=(3, 5, 7), stride=1, dilation=1, split="equal"):
        super().__init__()
        kernel_sizes = (kernel_sizes,) if isinstance(kernel_sizes, int) else tuple(kernel_sizes)
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"MixConv2d: kernel_sizes must be odd positive ints, got {kernel_sizes}")
        self.channels, self.kernel_sizes, self.split = channels, kernel_sizes, split
        self.stride, self.dilation = stride, dilation
        self.splits = split_channels(channels, len(kernel_sizes), split)
        self.convs = ModuleList([
            Conv2d(c, c, k, stride=stride, padding=dilation * (k - 1) // 2, dilation=dilation, groups=c, bias=False)
            for c, k in zip(self.splits, kernel_sizes)
        ])

    @fast_path("mixconv2d")
    def forward(self, x):
        _check_input(self, x, self.channels, self.splits)
        parts = split(x, self.splits, axis=1)                    # x_i: (N, c_i, H, W)
        outs = [conv(part) for conv, part in zip(self.convs, parts)]  # depthwise k_i x k_i each
        return cat(outs, axis=1)                                 # (N, C, OH, OW)

    def extra_repr(self):
        return f"{self.channels}, kernel_sizes={self.kernel_sizes}, splits={self.splits}, stride={self.stride}"


def dilated_kernels(kernel_sizes):
    """The reference code's ``dilated`` option: each k x k kernel with k > 3 becomes a 3x3 kernel at
    dilation (k - 1) / 2, which spans the same k x k window with 9 weights instead of k^2.

    Returns ``(kernel_sizes, dilations)``, one entry per group: (3, 5, 7, 9) -> ((3, 3, 3, 3), (1, 2, 3, 4)).
    Kernels of size 1 or 3 stay as they are (dilation 1).
    """
    kernel_sizes = tuple(int(k) for k in kernel_sizes)
    if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
        raise ValueError(f"dilated_kernels: kernel_sizes must be odd positive ints, got {kernel_sizes}")
    return (tuple(3 if k > 3 else k for k in kernel_sizes),
            tuple((k - 1) // 2 if k > 3 else 1 for k in kernel_sizes))


class DilatedMixConv2d(MixConv2d):
    """MixConv whose group i has its own dilation: ``convs[i]`` is a depthwise
    Conv2d(c_i, c_i, k_i, dilation=d_i, padding=d_i*(k_i-1)//2, groups=c_i, bias=False).

    Built by :func:`dilated_kernels`, it is the paper's "dilated" alternative to large kernels:
    ``DilatedMixConv2d(C, (3, 3, 3, 3), dilations=(1, 2, 3, 4))`` covers 3x3, 5x5, 7x7 and 9x9
    windows with 3x3 kernels (9 weights per channel each). The reference code uses it at stride 1
    only (at stride 2 a dilated kernel skips pixels that no other kernel sees).

    Differs from :class:`MixConv2d`: ``dilations`` is a per-group tuple (``dilation`` holds the same
    tuple), and the forward is always the split -> convolve -> concatenate diagram: the fast path's
    one-op MixConv and the inference fusion (``nn.fuse``) take one dilation per layer, so they do not
    apply (each group's depthwise Conv2d still runs on the fast kernels, which take any dilation).
    """

    def __init__(self, channels, kernel_sizes=(3, 3, 3, 3), dilations=(1, 2, 3, 4), stride=1, split="equal"):
        super().__init__(channels, kernel_sizes, stride=stride, split=split)
        dilations = (dilations,) * len(self.kernel_sizes) if isinstance(dilations, int) else tuple(dilations)
        if len(dilations) != len(self.kernel_sizes) or any(int(d) != d or d < 1 for d in dilations):
            raise ValueError(f"DilatedMixConv2d: dilations must be one integer >= 1 per kernel size "
                             f"{self.kernel_sizes}, got {dilations}")
        self.dilations = self.dilation = tuple(int(d) for d in dilations)
        self.convs = ModuleList([
            Conv2d(c, c, k, stride=stride, padding=d * (k - 1) // 2, dilation=d, groups=c, bias=False)
            for c, k, d in zip(self.splits, self.kernel_sizes, self.dilations)
        ])

    def forward(self, x):
        """split -> depthwise k_i x k_i at dilation d_i per group -> concatenate (no fast one-op path)."""
        return MixConv2d.forward.reference(self, x)

    def extra_repr(self):
        """The MixConv's description plus the per-group dilations."""
        return super().extra_repr() + f", dilations={self.dilations}"


class GroupedConv2d(Module):
    """A convolution on channel groups of uneven size, as MixNet's grouped 1x1 convolutions.

    Input and output channels are both split with ``split_channels`` (equal rule);
    group i is a dense Conv2d(in_i, out_i, kernel_size) on its input slice, and
    the outputs are concatenated. ``groups=1`` is a single ordinary Conv2d.
    Unlike ``Conv2d(groups=g)``, the groups need not divide the channel counts.
    """

    def __init__(self, in_channels, out_channels, groups=1, kernel_size=1, stride=1, bias=False):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"GroupedConv2d: kernel_size must be odd, got {kernel_size}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = kernel_size, stride
        self.in_splits = split_channels(in_channels, groups)
        self.out_splits = split_channels(out_channels, groups)
        self.convs = ModuleList([
            Conv2d(ci, co, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)
            for ci, co in zip(self.in_splits, self.out_splits)
        ])

    @fast_path("grouped_conv2d")
    def forward(self, x):
        if self.groups == 1:
            return self.convs[0](x)
        _check_input(self, x, self.in_channels, self.in_splits)
        parts = split(x, self.in_splits, axis=1)
        return cat([conv(part) for conv, part in zip(self.convs, parts)], axis=1)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, groups={self.groups}, "
                f"in_splits={self.in_splits}, out_splits={self.out_splits}")
