"""Convolution as matrix multiplication (im2col / col2im), in NumPy.

The naive loop (``minimix.kernels.naive``) computes every output as a dot product
between a weight ``w[o]`` and one window of the padded input. im2col copies
every window into a column of a matrix once, so that all those dot products
become ONE matrix product that BLAS runs at full speed::

    cols[n, c, p, q, i, j] = xp[n, c, i*sh + p*dh, j*sw + q*dw]      (N, C, KH, KW, OH, OW)

    view cols[n] as a (C*KH*KW, OH*OW) matrix and w as (O, C*KH*KW):
    y[n] = w @ cols[n]                                                  (O, OH*OW)

``cols`` is made without a Python loop over pixels: ``as_strided`` builds the
6-D array of windows as a *view* of the padded input (each axis is just a
stride: one row of the input is ``sh`` rows apart in the output, ``dh`` rows
apart between kernel taps), then one copy lays it out contiguously.

Backward, with g = dL/dy viewed as (O, OH*OW) per image:

    dL/dw     = sum_n g[n] @ cols[n]^T                                  (O, C*KH*KW)
    dL/dcols  = w^T @ g[n]                   -> col2im -> dL/dx

col2im is the adjoint of im2col: every column entry is *added* back to the
input pixel it was copied from (pixels shared by overlapping windows receive
several contributions). It loops over the KH*KW kernel taps only, each tap
adding a strided slab of the whole batch at once.

Groups (G): channels split into G independent convolutions. With Cg = C/G and
Og = O/G the matrices get a group axis, w -> (G, Og, Cg*KH*KW) and
cols[n] -> (G, Cg*KH*KW, OH*OW), and ``np.matmul`` broadcasts over it.

Memory: cols is KH*KW times larger than the input (a 3x3 conv of 128 images of
32 channels at 32x32 makes 150 MB), so the batch is processed a few images at
a time; the backward recomputes cols instead of keeping it. A 1x1 convolution
without padding needs no cols at all: it IS a matrix product,
y[n] = w (O, C) @ x[n] (C, H*W) (on every s-th pixel when strided).
All buffers keep the input's dtype (float32 stays float32).
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

# Images per im2col chunk are chosen so that one chunk's cols is about this big:
# large enough for efficient matrix products, small enough to stay in cache-ish memory.
CHUNK_BYTES = 4 * 2**20


def output_size(size, kernel, stride, padding, dilation):
    """Output length along one axis: (size + 2*padding - dilation*(kernel-1) - 1) // stride + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x, kernel_hw, stride, padding, dilation):
    """x (N, C, H, W) -> cols (N, C, KH, KW, OH, OW), a contiguous copy of every window."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_hw, stride, padding, dilation
    n, c, h, w = x.shape
    oh = output_size(h, kh, sh, ph, dh)
    ow = output_size(w, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else np.ascontiguousarray(x)
    s_n, s_c, s_h, s_w = xp.strides
    windows = as_strided(
        xp,
        shape=(n, c, kh, kw, oh, ow),
        strides=(s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw),
        writeable=False,
    )
    return np.ascontiguousarray(windows)


def col2im(cols, input_hw, stride, padding, dilation):
    """The adjoint of im2col: cols (N, C, KH, KW, OH, OW) -> x (N, C, H, W), summing overlaps."""
    n, c, kh, kw, oh, ow = cols.shape
    (h, w), (sh, sw), (ph, pw), (dh, dw) = input_hw, stride, padding, dilation
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for p in range(kh):
        rows = slice(p * dh, p * dh + sh * (oh - 1) + 1, sh)
        for q in range(kw):
            columns = slice(q * dw, q * dw + sw * (ow - 1) + 1, sw)
            xp[:, :, rows, columns] += cols[:, :, p, q]
    return xp[:, :, ph:ph + h, pw:pw + w]


def _is_pointwise(kernel_hw, padding):
    return tuple(kernel_hw) == (1, 1) and tuple(padding) == (0, 0)


def _chunks(n_images, bytes_per_image):
    """Batch slices of a few images each, so one chunk's cols is about CHUNK_BYTES."""
    step = max(1, CHUNK_BYTES // max(1, bytes_per_image))
    return [slice(start, min(start + step, n_images)) for start in range(0, n_images, step)]


def conv2d_forward(x, w, stride, padding, dilation, groups):
    """y (N, O, OH, OW) = conv(x (N, C, H, W), w (O, C/G, KH, KW)) as grouped matrix products."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh = output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = output_size(wd, kw, stride[1], padding[1], dilation[1])
    wg = w.reshape(groups, o // groups, cg * kh * kw)  # (G, Og, Kg)
    if _is_pointwise((kh, kw), padding):
        xs = x[:, :, ::stride[0], ::stride[1]]
        y = np.matmul(wg, xs.reshape(n, groups, cg, oh * ow))  # (N, G, Og, OH*OW)
        return y.reshape(n, o, oh, ow)
    y = np.empty((n, o, oh, ow), dtype=np.result_type(x, w))
    for batch in _chunks(n, x.itemsize * c * kh * kw * oh * ow):
        cols = im2col(x[batch], (kh, kw), stride, padding, dilation)
        m = cols.shape[0]
        np.matmul(wg, cols.reshape(m, groups, cg * kh * kw, oh * ow), out=y[batch].reshape(m, groups, o // groups, oh * ow))
    return y


def conv2d_backward_input(gy, w, input_hw, stride, padding, dilation, groups):
    """dL/dx = col2im(w^T @ dL/dy), per group."""
    n, o, oh, ow = gy.shape
    _, cg, kh, kw = w.shape
    h, wd = input_hw
    wt = w.reshape(groups, o // groups, cg * kh * kw).transpose(0, 2, 1)  # (G, Kg, Og)
    gyg = gy.reshape(n, groups, o // groups, oh * ow)
    if _is_pointwise((kh, kw), padding):
        gxs = np.matmul(wt, gyg).reshape(n, groups * cg, oh, ow)
        if tuple(stride) == (1, 1):
            return gxs
        gx = np.zeros((n, groups * cg, h, wd), dtype=gxs.dtype)
        gx[:, :, ::stride[0], ::stride[1]] = gxs
        return gx
    gx = np.empty((n, groups * cg, h, wd), dtype=np.result_type(gy, w))
    for batch in _chunks(n, gy.itemsize * groups * cg * kh * kw * oh * ow):
        gcols = np.matmul(wt, gyg[batch])  # (m, G, Kg, OH*OW)
        m = gcols.shape[0]
        gx[batch] = col2im(gcols.reshape(m, groups * cg, kh, kw, oh, ow), input_hw, stride, padding, dilation)
    return gx


def conv2d_backward_weight(x, gy, kernel_hw, stride, padding, dilation, groups):
    """dL/dw = sum over images of dL/dy[n] @ cols[n]^T, per group."""
    n, c, _, _ = x.shape
    _, o, oh, ow = gy.shape
    kh, kw = kernel_hw
    cg = c // groups
    gyg = gy.reshape(n, groups, o // groups, oh * ow)
    gw = np.zeros((groups, o // groups, cg * kh * kw), dtype=np.result_type(x, gy))
    pointwise = _is_pointwise(kernel_hw, padding)
    for batch in _chunks(n, x.itemsize * c * kh * kw * oh * ow):
        if pointwise:
            cols = x[batch, :, ::stride[0], ::stride[1]]
        else:
            cols = im2col(x[batch], kernel_hw, stride, padding, dilation)
        m = cols.shape[0]
        cols = cols.reshape(m, groups, cg * kh * kw, oh * ow)
        gw += np.matmul(gyg[batch], cols.transpose(0, 1, 3, 2)).sum(axis=0)
    return gw.reshape(o, cg, kh, kw)
