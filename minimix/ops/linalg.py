"""Matrix products."""
import numpy as np

from ..tensor import Function, tensor_method


class MatMul(Function):
    """C = A @ B (batched, broadcasting leading axes).

    dL/dA = dL/dC @ B^T and dL/dB = A^T @ dL/dC (summed over broadcast batch axes
    by the engine). 1-D operands are treated as in NumPy.
    """

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: both operands need at least one dimension; use * for scalars")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not align "
                f"(last axis of a, {a.shape[-1]}, must equal the second-to-last axis of b)"
            )
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = g2 @ np.swapaxes(b2, -1, -2)
        gb = np.swapaxes(a2, -1, -2) @ g2
        if a.ndim == 1:
            ga = ga.reshape(ga.shape[:-2] + (a.shape[0],))
        if b.ndim == 1:
            gb = gb.reshape(gb.shape[:-2] + (b.shape[0],))
        return ga, gb


@tensor_method("matmul", "__matmul__")
def matmul(a, b):
    return MatMul.apply(a, b)


class Linear(Function):
    """y = x W^T + b for x (..., in), W (out, in), b (out,).

    dL/dx = g W, dL/dW = g^T x (over all leading axes), dL/db = sum of g.
    One fused node instead of matmul + transpose + add keeps the graph small.
    """

    def forward(self, x, weight, bias=None):
        if x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"linear: input has {x.shape[-1]} features (shape {x.shape}) but weight "
                f"{weight.shape} expects {weight.shape[1]}"
            )
        self.x, self.weight = x, weight
        out = x @ weight.T
        if bias is not None:
            out += bias
        return out

    def backward(self, g):
        x2 = self.x.reshape(-1, self.x.shape[-1])
        g2 = g.reshape(-1, g.shape[-1])
        gx = g @ self.weight
        gw = g2.T @ x2
        gb = g2.sum(axis=0) if len(self.parents) > 2 else None
        return gx, gw, gb


def linear(x, weight, bias=None):
    """``x @ weight.T + bias``, as ``torch.nn.functional.linear``."""
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)
