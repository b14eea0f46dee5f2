"""Matrix products."""
import numpy as np

from ..tensor import Function, check_float_dtypes, tensor_method


class MatMul(Function):
    """C = A @ B (batched, broadcasting leading axes).

    dL/dA = dL/dC @ B^T and dL/dB = A^T @ dL/dC (summed over broadcast batch axes
    by the engine). 1-D operands are treated as in NumPy.
    """

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("both operands need at least one dimension (use * to multiply by a scalar)")
        inner = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if a.shape[-1] != inner:
            raise ValueError(
                f"the last axis of the first operand ({a.shape[-1]}) must equal "
                f"the {'second-to-last' if b.ndim > 1 else 'only'} axis of the second ({inner})"
            )
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        # Treat 1-D operands as a row (a) / column (b) matrix, then drop that axis again.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if b.ndim == 1:  # (..., n) -> (..., n, 1); first, so that a 0-d g (vector . vector) works too
            g2 = g2[..., None]
        if a.ndim == 1:  # (..., m) -> (..., 1, m)
            g2 = g2[..., None, :]
        ga = gb = None
        if self.parents[0].requires_grad:
            ga = g2 @ np.swapaxes(b2, -1, -2)
            if a.ndim == 1:
                ga = ga.reshape(ga.shape[:-2] + (a.shape[0],))
        if self.parents[1].requires_grad:
            gb = np.swapaxes(a2, -1, -2) @ g2
            if b.ndim == 1:
                gb = gb.reshape(gb.shape[:-2] + (b.shape[0],))
        return ga, gb


@tensor_method("matmul", "__matmul__")
def matmul(a, b):
    """``a @ b``, as ``torch.matmul``: matrix products over the last two axes, leading axes broadcast;
    a 1-D operand is a vector (its axis is dropped from the result)."""
    return MatMul.apply(a, b)


class Linear(Function):
    """y = x W^T + b for x (..., in), W (out, in), b (out,).

    dL/dx = g W, dL/dW = g^T x (over all leading axes), dL/db = sum of g.
    One fused node instead of matmul + transpose + add keeps the graph small.
    """

    def forward(self, x, weight, bias=None):
        if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"expected x (..., in_features) and weight (out_features, in_features) with the same "
                f"in_features, got x {x.shape} and weight {weight.shape}"
            )
        if bias is not None and bias.shape != (weight.shape[0],):
            raise ValueError(f"expected bias of shape ({weight.shape[0]},), got {bias.shape}")
        self.x, self.weight = x, weight
        out = x @ weight.T
        if bias is not None:
            out += bias
        return out

    def backward(self, g):
        g2 = g.reshape(-1, g.shape[-1])
        gx = g @ self.weight if self.parents[0].requires_grad else None  # skipped for the input batch
        gw = g2.T @ self.x.reshape(-1, self.x.shape[-1]) if self.parents[1].requires_grad else None
        gb = g2.sum(axis=0) if len(self.parents) > 2 and self.parents[2].requires_grad else None
        return gx, gw, gb


def linear(x, weight, bias=None):
    """``x @ weight.T + bias``, as ``torch.nn.functional.linear`` (x and the parameters in one dtype)."""
    check_float_dtypes("linear", x=x, weight=weight, bias=bias)
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)
