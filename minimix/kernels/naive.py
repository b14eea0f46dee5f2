"""The reference convolution, written as plain loops: read this one first.

Shapes (NCHW, as in PyTorch)::

    x  (N, C, H, W)        input
    w  (O, C/G, KH, KW)    weight, G = groups
    y  (N, O, OH, OW)      output, OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1  (same for OW)

With ``xp`` the input zero-padded by (ph, pw) and ``Cg = C / G`` input channels per
group, output channel ``o`` belongs to group ``g = o // (O / G)`` and reads only
that group's input channels::

    y[n, o, i, j] = sum_{c < Cg, p < KH, q < KW}  w[o, c, p, q] * xp[n, g*Cg + c, i*sh + p*dh, j*sw + q*dw]

The sum is a dot product between ``w[o]`` and one *window* of ``xp``: the
``Cg x KH x KW`` block whose top-left corner is (i*sh, j*sw), taking every
dh-th row and dw-th column (dilation). The gradients follow from that single line:

    dL/dw[o]      += dL/dy[n, o, i, j] * window(n, g, i, j)     (the window the output saw)
    dL/dwindow    += dL/dy[n, o, i, j] * w[o]                   (scattered back into dL/dxp)

and dL/dx is dL/dxp with the padding cut off. Every loop below visits each
(n, o, i, j) once; that is N*O*OH*OW Python iterations, so keep inputs tiny.
``minimix.kernels.im2col`` computes the same thing with matrix products.
"""
import numpy as np

from .geometry import output_size  # (size + 2*padding - dilation*(kernel-1) - 1) // stride + 1


def _window(i, j, kernel_hw, stride, dilation):
    """Row and column slices of the padded input seen by output position (i, j)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_hw, stride, dilation
    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
    cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
    return rows, cols


def _pad(x, padding):
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _every_window(n_batch, n_out, groups, cg, out_hw, kernel_hw, stride, dilation):
    """Yield (n, o, i, j, channels, rows, cols): each output position and the input window it reads.

    Output channel ``o`` belongs to group ``o // (n_out / groups)`` and reads that group's ``cg``
    input channels. All three loops below walk exactly these windows.
    """
    out_per_group = n_out // groups
    for n in range(n_batch):
        for o in range(n_out):
            g = o // out_per_group
            channels = slice(g * cg, (g + 1) * cg)
            for i in range(out_hw[0]):
                for j in range(out_hw[1]):
                    rows, cols = _window(i, j, kernel_hw, stride, dilation)
                    yield n, o, i, j, channels, rows, cols


def conv2d_forward(x, w, stride, padding, dilation, groups):
    """y[n, o, i, j] = sum(w[o] * window(n, group of o, i, j)); see the module docstring."""
    n_batch, _, h, wd = x.shape
    n_out, cg, kh, kw = w.shape
    oh = output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = output_size(wd, kw, stride[1], padding[1], dilation[1])
    xp = _pad(x, padding)
    y = np.zeros((n_batch, n_out, oh, ow), dtype=x.dtype)
    for n, o, i, j, channels, rows, cols in _every_window(n_batch, n_out, groups, cg, (oh, ow), (kh, kw),
                                                           stride, dilation):
        y[n, o, i, j] = np.sum(w[o] * xp[n, channels, rows, cols])
    return y


def conv2d_backward_input(gy, w, input_hw, stride, padding, dilation, groups):
    """dL/dx: every output gradient gy[n, o, i, j] adds gy * w[o] into the window it came from."""
    n_batch, n_out, oh, ow = gy.shape
    _, cg, kh, kw = w.shape
    (h, wd), (ph, pw) = input_hw, padding
    gxp = np.zeros((n_batch, cg * groups, h + 2 * ph, wd + 2 * pw), dtype=gy.dtype)
    for n, o, i, j, channels, rows, cols in _every_window(n_batch, n_out, groups, cg, (oh, ow), (kh, kw),
                                                           stride, dilation):
        gxp[n, channels, rows, cols] += gy[n, o, i, j] * w[o]
    return gxp[:, :, ph:ph + h, pw:pw + wd]


def conv2d_backward_weight(x, gy, kernel_hw, stride, padding, dilation, groups):
    """dL/dw[o] = sum over (n, i, j) of gy[n, o, i, j] * window(n, group of o, i, j)."""
    n_batch, n_out, oh, ow = gy.shape
    cg = x.shape[1] // groups
    xp = _pad(x, padding)
    gw = np.zeros((n_out, cg) + tuple(kernel_hw), dtype=gy.dtype)
    for n, o, i, j, channels, rows, cols in _every_window(n_batch, n_out, groups, cg, (oh, ow), kernel_hw,
                                                           stride, dilation):
        gw[o] += gy[n, o, i, j] * xp[n, channels, rows, cols]
    return gw
