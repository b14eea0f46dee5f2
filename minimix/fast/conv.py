"""Fast kernels behind ``conv2d``: depthwise convolutions in Numba, 1x1 convolutions as products per image.

Each object has the three entry points of the reference kernels (``minimix.kernels.im2col``):
``conv2d_forward``, ``conv2d_backward_input``, ``conv2d_backward_weight``, plus ``accepts``,
which says whether it takes a convolution (``conv2d`` then falls back to the reference).
"""
from ..kernels import depthwise_numba, pointwise


class DepthwiseKernels:
    """``minimix.kernels.depthwise_numba`` (weight (C, KH, KW)) behind the conv2d interface (weight (C, 1, KH, KW)).

    The kernels also take ``channels=slice(a, b)`` (and ``out=``): convolve channels [a, b) of
    whole-layer arrays and write channels [a, b) of a preallocated result, which is how the
    in-place MixConv (``minimix.fast.mixconv``) runs its groups without copying channel slices.
    """

    channel_groups = True

    @staticmethod
    def accepts(x_shape, w_shape, stride, padding, dilation, groups):
        """Depthwise (one input and one output channel per group), on a non-empty batch."""
        channels = x_shape[1]
        return groups == channels and w_shape[0] == channels and w_shape[1] == 1 and x_shape[0] > 0

    @staticmethod
    def conv2d_forward(x, w, stride, padding, dilation, groups, channels=None, out=None):
        return depthwise_numba.depthwise_forward(x, w[:, 0], stride, padding, dilation, channels=channels, out=out)

    @staticmethod
    def conv2d_backward_input(gy, w, input_hw, stride, padding, dilation, groups, channels=None, out=None):
        return depthwise_numba.depthwise_backward_input(gy, w[:, 0], input_hw, stride, padding, dilation,
                                                        channels=channels, out=out)

    @staticmethod
    def conv2d_backward_weight(x, gy, kernel_hw, stride, padding, dilation, groups, channels=None):
        return depthwise_numba.depthwise_backward_weight(x, gy, kernel_hw, stride, padding, dilation,
                                                         channels=channels)[:, None]


class PointwiseKernels:
    """``minimix.kernels.pointwise`` behind the conv2d interface: 1x1, stride 1, no padding, one group.

    In NCHW each image is already a (C, H*W) matrix, so the convolution is ``w @ x[n]`` per
    image: no im2col copy (see the kernel module for the formulas and the threading).
    """

    @staticmethod
    def accepts(x_shape, w_shape, stride, padding, dilation, groups):
        return (tuple(w_shape[2:]) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)
                and groups == 1)

    @staticmethod
    def conv2d_forward(x, w, stride, padding, dilation, groups, out=None):
        return pointwise.pointwise_forward(x, w[:, :, 0, 0], out=out)

    @staticmethod
    def conv2d_backward_input(gy, w, input_hw, stride, padding, dilation, groups, out=None):
        return pointwise.pointwise_backward_input(gy, w[:, :, 0, 0], out=out)

    @staticmethod
    def conv2d_backward_weight(x, gy, kernel_hw, stride, padding, dilation, groups):
        return pointwise.pointwise_backward_weight(x, gy).reshape(gy.shape[1], x.shape[1], 1, 1)


DEPTHWISE = DepthwiseKernels()
POINTWISE = PointwiseKernels()

__all__ = ["DEPTHWISE", "POINTWISE"]
