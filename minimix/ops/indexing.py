"""``gather``: pick one element along an axis for every position of an index tensor.

For dim = 1 of a 3-d input (``torch.gather``)::

    out[i][j][k] = x[i][index[i][j][k]][k]        out has index's shape

The backward adds each output gradient back at the element it came from (an index may
pick the same element twice, so the gradients add up, ``np.add.at``).
"""
import numpy as np

from ..tensor import Function, Tensor, tensor_method


class Gather(Function):
    """out = x[grid] with ``index`` along ``dim``; the backward scatter-adds the gradient into zeros."""

    def forward(self, x, dim, index):
        # an open grid: index along ``dim``, the position itself along every other axis
        self.where = tuple(index if a == dim else np.arange(n).reshape([-1 if b == a else 1 for b in range(index.ndim)])
                           for a, n in enumerate(index.shape))
        self.shape = x.shape
        return x[self.where]

    def backward(self, g):
        out = np.zeros(self.shape, dtype=g.dtype)
        np.add.at(out, self.where, g)
        return (out,)


@tensor_method("gather")
def gather(input, dim, index):
    """Values of ``input`` along ``dim`` at ``index`` (an int tensor or array with input's number of
    dimensions; along the other axes no larger than input), as ``torch.gather``. The output has index's
    shape; indices must be in ``0 .. input.shape[dim] - 1``."""
    idx = index.data if isinstance(index, Tensor) else np.asarray(index)
    shape = input.shape
    if idx.dtype.kind not in "iu":
        raise TypeError(f"gather: index must hold integers, got dtype {idx.dtype}")
    if idx.ndim != len(shape):
        raise ValueError(f"gather: index has shape {idx.shape} but input has shape {shape}: they need the same "
                         f"number of dimensions")
    if not -max(len(shape), 1) <= dim < max(len(shape), 1):
        raise ValueError(f"gather: dim {dim} is out of range for input of shape {shape}")
    dim = dim % max(len(shape), 1)
    if len(shape) == 0:
        idx, dim = idx.reshape(1), 0
        return gather(input.reshape(1), 0, idx).reshape(())
    for a, (n, m) in enumerate(zip(idx.shape, shape)):
        if a != dim and n > m:
            raise ValueError(f"gather: index has shape {idx.shape}, larger than input's {shape} along axis {a} "
                             f"(only dim {dim} may differ)")
    if idx.size and (idx.min() < 0 or idx.max() >= shape[dim]):
        raise ValueError(f"gather: index values must be in [0, {shape[dim]}) for dim {dim} of input shape "
                         f"{shape}, got values from {idx.min()} to {idx.max()}")
    return Gather.apply(input, dim=dim, index=idx.astype(np.intp, copy=False))
