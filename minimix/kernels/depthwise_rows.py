"""Depthwise convolution, stride 1 or 2 and "same" padding, one output row at a time with the taps written out.

For an odd k x k kernel with padding k // 2 (every stride-1 MixConv group), and xp a copy of
the input plane with k // 2 zeros around it::

    y[r, q] = sum_{i, j} w[i, j] * xp[r + i, q + j]        0 <= r < H, 0 <= q < W

``depthwise_numba`` sweeps whole planes once per tap against a *weight map* (the tap's weight where
it lands inside the plane, 0 where it falls into the padding): every multiply-add loads a weight and
an input value, and every four taps load and store y. Here the loop over q is the innermost one and
the k*k taps are written out inside it, one term each: the compiler turns the q loop into vector
instructions (16 float32 values at a time with AVX-512), each output vector is summed in a register
over all k*k taps and stored once, the weights are loop constants held in registers, and each tap
costs one load of xp and one multiply-add. The zero border of xp replaces the masks.

That needs the taps and the plane width as constants in the source: with k and W as variables the
compiler keeps the tap loops inside the q loop and leaves it scalar, several times slower than
``depthwise_numba`` (measured while writing this, as everything in this docstring). So the source is
generated for each (k, W) (``_source``), written to a file in Numba's cache folder and imported from
there, which lets Numba cache its machine code like any other kernel's (``_module``; exceptions below). Two more things
the vectorizer needs: arrays indexed as x[n, c, i, j] with loop variables (a flat index with a run-time
offset may be negative as far as Numba knows, and its wrap-around check keeps the loop scalar), and
nothing else in the loop nest (the inference epilogue, act(y * scale + shift), placed after each plane
slowed the whole kernel down several times on 8x8 planes): the epilogue is a second pass
(``_epilogue_planes``).

The input gradient of the same convolution is the same computation on dL/dy with the kernel turned by
180 degrees (``depthwise_numba``'s docstring): at stride 1 ``backward_input`` calls the forward kernel.

Stride 2 (on planes of even height and width, H = 2*OH and W = 2*OW: every stride-2 MixConv layer).
The forward reads every second column, ``xp[2r + i, 2q + j]``, and a SIMD load takes consecutive
values. So the padded plane is stored as its four *phases*, xq_ab[R, Q] = xp[2R + a, 2Q + b] for
a, b in {0, 1}, each (OH + k//2) x (OW + k//2), one after the other in one buffer. Tap (i, j) then
reads phase (i % 2, j % 2) at (r + i // 2, q + j // 2): one constant offset per tap again, unit
stride in q::

    y[r, q] = sum_{i, j} w[i, j] * xq_{i%2, j%2}[r + i//2, q + j//2]

The input gradient collects, for each input pixel, the outputs whose taps read it: with p = k // 2,
gx[h, v] = sum of w[i, j] * gy[r, q] over 2r + i - p = h and 2q + j - p = v. For an input row
h = 2R + a only the taps with i = a + p (mod 2) reach it, from output row r = R + (a + p - i) / 2,
and the same for columns, so each of gx's four phases is a stride-1 correlation of dL/dy with its
own share of the taps. With gp = dL/dy padded by pg = (p + 1) // 2 (the farthest such row offset)::

    gx[2R + a, 2Q + b] = sum_{i = a+p, j = b+p (mod 2)} w[i, j] * gp[R + pg + (a+p-i)/2, Q + pg + (b+p-j)/2]

One loop over Q computes the even and the odd column of a row (b = 0 and 1) and stores both.

The weight gradient sums, for each tap, dL/dy times the input value that tap read (``depthwise_numba``'s
docstring)::

    gw[i, j] = sum_{n, r, q} gy[n, r, q] * xp[n, r + i, q + j]          (stride 2: xq_{i%2, j%2}[r + i//2, q + j//2])

For one image and channel that is one dot product per tap. ``backward_weight`` copies dL/dy into rows as long
as the padded plane's (gp; the values after each row stay 0), so that tap t's term is gp[b] * xp[b + offset_t]
for one flat index b over the whole plane: a dot product of two unit-stride vectors, which the compiler
vectorizes into one register of partial sums per tap, summed once at the end of the plane. A reading past the
end of a row meets a 0 of gp. Up to 16 taps share one pass over gp (``_products``), so each load of gp serves
several taps and their sums stay in registers. Each image's sums go to its own row of ``partial``, added up
over the batch afterwards: one thread per image, as in the forward, and the numbers do not depend on the
thread count. The padding of gp multiplies an inf or a NaN read past a row by 0 (NaN, where the definition
reads nothing): ``depthwise_numba.depthwise_backward_weight`` checks the result and recomputes such a group
exactly. Where this is faster than the flat sweeps (``applies_to_weight_gradient``) is narrower than for the
forward: the copies into xp and gp cost more against the 9 taps of a 3x3 kernel, and on 8x8 planes the sums
at the end of each plane weigh more.

The stride-2 ``backward_input`` and ``backward_weight`` always run machine code loaded from Numba's cache; where
the cache lacks one, a child process compiles it first (``_from_cache``). Why: a ``parallel=True`` function's loop
body is compiled on its own and then optimized a second time inside the function that calls it. The process that
compiles a kernel runs the body optimized once; the cache holds the copy optimized twice, which is what every later
process loads. With ``fastmath`` (reordered sums, fused multiply-adds) the two copies may round differently, and for
these two kernels they did (issue 17's closing notes: the assembly of both copies, and a test that made Numba call
the twice-optimized copy everywhere, after which compiled and loaded agreed). So a first run and a resumed run would
have taken different steps from the same seed. With every process loading the same machine code, a first run, a
later one and a resumed one compute the same numbers. For the other kernels the two copies computed the same
(``tests/test_depthwise_kernels.py`` runs every kind of generated kernel in a process that found the cache empty
and in one that found it full, and compares).

Values are those of the definition, zero padding included, so an inf or a NaN spreads exactly as in
the reference: no check is needed, except before the epilogue, whose activation must follow PyTorch's
semantics for inf and NaN (``depthwise_numba.depthwise_forward`` recomputes such a group exactly).
"""
import functools
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numba
import numpy as np
from numba import njit, prange

from .norm_act_numba import affine_act
from .vector_math import is_finite

# Where these kernels are faster than depthwise_numba's flat sweeps (single layers at batch 128, measured while
# writing this; figures in the README, ``python benchmarks/depthwise_rows.py``). Stride 1: on 16x16 and 32x32
# planes for every k, on 8x8 planes from k = 5 on (3x3 about even); not on 4x4 planes, where a row fills a
# quarter of a vector. Stride 2: from 8x8 planes (outputs 4 wide) on, in sum over the kernel sizes.
MIN_WIDTH = 16
MIN_WIDTH_LARGE_KERNEL = 8  # for k >= 5
MIN_WIDTH_STRIDE2 = 8
MAX_KERNEL = 11  # the largest k generated (121 terms): larger kernels run on depthwise_numba
# The weight gradient: faster on planes 16 wide or more, at stride 1 from k = 5 on (3x3 about even on 16x16 planes,
# slower on 32x32 ones), at stride 2 for every k; about even or slower on 8x8 planes.
MIN_WIDTH_WEIGHT = 16
MIN_KERNEL_WEIGHT_STRIDE1 = 5


def applies(H, W, KH, KW, stride, padding, dilation):
    """Whether ``forward`` and ``backward_input`` compute this convolution: no dilation, a square odd kernel
    from 3 to MAX_KERNEL with padding k // 2 on each side, and either stride 1 (the output the size of the
    input) on planes wide enough (MIN_WIDTH, or MIN_WIDTH_LARGE_KERNEL for k >= 5), or stride 2 on planes
    of even height and width (the output half of it), at least MIN_WIDTH_STRIDE2 wide."""
    if not (tuple(dilation) == (1, 1) and KH == KW and KH % 2 == 1 and 3 <= KH <= MAX_KERNEL
            and tuple(padding) == (KH // 2, KW // 2)):
        return False
    if tuple(stride) == (1, 1):
        return W >= (MIN_WIDTH if KH == 3 else MIN_WIDTH_LARGE_KERNEL)
    return tuple(stride) == (2, 2) and H % 2 == 0 and W % 2 == 0 and W >= MIN_WIDTH_STRIDE2


def applies_to_weight_gradient(H, W, KH, KW, stride, padding, dilation):
    """Whether ``backward_weight`` computes this convolution's weight gradient: where ``applies`` holds, on planes
    at least MIN_WIDTH_WEIGHT wide, with k >= MIN_KERNEL_WEIGHT_STRIDE1 at stride 1."""
    return (applies(H, W, KH, KW, stride, padding, dilation) and W >= MIN_WIDTH_WEIGHT
            and (tuple(stride) == (2, 2) or KH >= MIN_KERNEL_WEIGHT_STRIDE1))


_STRIDE1 = '''"""Generated by minimix.kernels.depthwise_rows for a {k}x{k} kernel, stride 1, on planes {W} wide: do not edit."""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, fastmath={{"contract", "reassoc"}}, error_model="numpy")
def forward(x, y, c0, w):
    N, H = x.shape[0], x.shape[2]
    for n in prange(N):
        xp = np.zeros((H + {pad2}) * {Wp}, dtype=x.dtype)  # the padded plane; its border stays 0
        for c in range(w.shape[0]):
            channel = c0 + c
            for i in range(H):
                for j in range({W}):
                    xp[(i + {pad}) * {Wp} + {pad} + j] = x[n, channel, i, j]
{weights}
            for r in range(H):
                for q in range({W}):
                    b = r * {Wp} + q
                    y[n, channel, r, q] = ({taps})


@njit(parallel=True, cache=True, fastmath={{"contract", "reassoc"}}, error_model="numpy")
def backward_weight(x, gy, c0, partial):
    N, H = x.shape[0], x.shape[2]
    for n in prange(N):
        xp = np.zeros((H + {pad2}) * {Wp} + {pad2}, dtype=x.dtype)  # the padded plane, room for the last reads
        gp = np.zeros(H * {Wp}, dtype=x.dtype)  # dL/dy in rows {Wp} long: the {pad2} values after each row stay 0
        zero = gp[0]  # 0 in x's dtype: gp is all zeros here
        for c in range(partial.shape[1]):
            channel = c0 + c
            for i in range(H):
                for j in range({W}):
                    xp[(i + {pad}) * {Wp} + {pad} + j] = x[n, channel, i, j]
                    gp[i * {Wp} + j] = gy[n, channel, i, j]
{products}
'''


_STRIDE2 = '''"""Generated by minimix.kernels.depthwise_rows for a {k}x{k} kernel, stride 2, on {H}x{W} planes: do not edit."""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, fastmath={{"contract", "reassoc"}}, error_model="numpy")
def forward(x, y, c0, w):
    for n in prange(x.shape[0]):
        xq = np.zeros(4 * {phase}, dtype=x.dtype)  # the padded plane's four phases; their borders stay 0
        for c in range(w.shape[0]):
            channel = c0 + c
{split}
{weights}
            for r in range({OH}):
                for q in range({OW}):
                    b = r * {Wq} + q
                    y[n, channel, r, q] = ({taps})


@njit(parallel=True, cache=True, fastmath={{"contract", "reassoc"}}, error_model="numpy")  # loaded from the cache only
def backward_input(gy, gx, c0, w):
    for n in prange(gy.shape[0]):
        gp = np.zeros({Hg} * {Wg}, dtype=gy.dtype)  # the padded plane of dL/dy; its border stays 0
        for c in range(w.shape[0]):
            channel = c0 + c
            for r in range({OH}):
                for q in range({OW}):
                    gp[(r + {pg}) * {Wg} + {pg} + q] = gy[n, channel, r, q]
{weights}
{gx_rows}


@njit(parallel=True, cache=True, fastmath={{"contract", "reassoc"}}, error_model="numpy")  # loaded from the cache only
def backward_weight(x, gy, c0, partial):
    for n in prange(x.shape[0]):
        xq = np.zeros(4 * {phase} + {pad}, dtype=x.dtype)  # the four phases, room for the last reads
        gp = np.zeros({OH} * {Wq}, dtype=x.dtype)  # dL/dy in rows {Wq} long: the {pad} values after each row stay 0
        zero = gp[0]  # 0 in x's dtype: gp is all zeros here
        for c in range(partial.shape[1]):
            channel = c0 + c
{split}
            for r in range({OH}):
                for q in range({OW}):
                    gp[r * {Wq} + q] = gy[n, channel, r, q]
{products}
'''

_PRODUCTS = '''            {zero}
            for b in range({length}):
                g = gp[b]
{terms}
{stores}'''

_SPLIT = '''            for r in range({OH}):  # phase ({a}, {b}): rows {ra}, {ra2}, ... and columns {cb}, {cb2}, ... of x
                for q in range({OW}):
                    xq[{start} + r * {Wq} + q] = x[n, channel, 2 * r + {ra}, 2 * q + {cb}]'''

_GX_ROWS = '''            for r in range({OH}):  # rows {a}, {a2}, ... of gx, even and odd columns
                for q in range({OW}):
                    b = r * {Wg} + q
                    gx[n, channel, 2 * r + {a}, 2 * q] = ({even})
                    gx[n, channel, 2 * r + {a}, 2 * q + 1] = ({odd})'''


def _sum(terms, indent=24):
    """Terms joined by +, four per line."""
    return f"\n{' ' * indent}+ ".join(" + ".join(terms[i:i + 4]) for i in range(0, len(terms), 4))


def _products(reads, length, per_pass=16):
    """The weight gradient's passes over dL/dy: tap t sums g * reads[t] (its input value, "xp[b + offset_t]") over
    b < length in its own variable s<t>, at most ``per_pass`` taps per pass (each sum stays in a vector register),
    then stores it in partial[n, c, t]."""
    T = len(reads)
    passes = -(-T // per_pass)
    bounds = [T * i // passes for i in range(passes + 1)]  # as even as possible
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        taps = range(lo, hi)
        out.append(_PRODUCTS.format(
            zero=" = ".join(f"s{t}" for t in taps) + " = zero", length=length,
            terms="\n".join(f"                s{t} += g * {reads[t]}" for t in taps),
            stores="\n".join(f"            partial[n, c, {t}] = s{t}" for t in taps)))
    return "\n".join(out)


def _source(k, stride, H, W):
    """The kernels' source for a k x k kernel: stride 1 on planes W wide (any height; H is not used), or stride 2
    on H x W planes. One term per tap, w_t * buffer[b + offset_t] (module docstring)."""
    p = k // 2
    weights = "\n".join(f"            w{t} = w[c, {t}]" for t in range(k * k))
    if stride == 1:
        Wp = W + 2 * p
        offsets = [(t // k) * Wp + t % k for t in range(k * k)]
        taps = _sum([f"w{t} * xp[b + {offsets[t]}]" for t in range(k * k)])
        products = _products([f"xp[b + {o}]" for o in offsets], f"H * {Wp}")
        return _STRIDE1.format(k=k, W=W, pad=p, pad2=2 * p, Wp=Wp, weights=weights, taps=taps, products=products)
    OH, OW = H // 2, W // 2
    Hq, Wq = OH + p, OW + p  # one phase of the padded plane
    split = []
    for a in (0, 1):
        for b in (0, 1):
            R0, Q0 = (p - a + 1) // 2, (p - b + 1) // 2  # the first phase row and column inside x
            split.append(_SPLIT.format(a=a, b=b, OH=OH, OW=OW, Wq=Wq, start=(2 * a + b) * Hq * Wq + R0 * Wq + Q0,
                                       ra=2 * R0 + a - p, ra2=2 * R0 + a - p + 2, cb=2 * Q0 + b - p,
                                       cb2=2 * Q0 + b - p + 2))
    offsets = [(2 * (i % 2) + j % 2) * Hq * Wq + (i // 2) * Wq + j // 2 for i in range(k) for j in range(k)]
    taps = _sum([f"w{t} * xq[b + {o}]" for t, o in enumerate(offsets)])
    products = _products([f"xq[b + {o}]" for o in offsets], OH * Wq)
    pg = (p + 1) // 2
    Hg, Wg = OH + 2 * pg, OW + 2 * pg  # dL/dy padded by pg
    gx_rows = []
    for a in (0, 1):
        sums = [_sum([f"w{i * k + j} * gp[b + {(pg + (a + p - i) // 2) * Wg + pg + (b + p - j) // 2}]"
                      for i in range(k) if (a + p - i) % 2 == 0 for j in range(k) if (b + p - j) % 2 == 0])
                for b in (0, 1)]
        gx_rows.append(_GX_ROWS.format(a=a, a2=a + 2, OH=OH, OW=OW, Wg=Wg, even=sums[0], odd=sums[1]))
    return _STRIDE2.format(k=k, H=H, W=W, phase=Hq * Wq, split="\n".join(split), weights=weights, OH=OH, OW=OW,
                           Wq=Wq, taps=taps, Hg=Hg, Wg=Wg, pg=pg, gx_rows="\n".join(gx_rows), pad=p,
                           products=products)


def _folder():
    """Where generated modules are written: beside Numba's cache ($NUMBA_CACHE_DIR), else this package's
    __pycache__, else (neither writable, e.g. a read-only installation) a temporary folder."""
    root = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(os.path.dirname(__file__), "__pycache__")
    for folder in (os.path.join(root, "minimix-generated"), os.path.join(tempfile.gettempdir(), "minimix-generated")):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):  # an existing folder may still be read-only
            return folder
    raise OSError("no writable folder for minimix's generated kernels (set NUMBA_CACHE_DIR)")


def _kernels(k, stride, H, W):
    """The generated module for a k x k kernel with this stride on H x W planes (stride 1: one for every height)."""
    return _module(k, stride, H if stride == 2 else None, W)


@functools.cache
def _module(k, stride, H, W):
    """The generated module for (k, stride, H, W), written once (named by a hash of its source, replaced
    atomically so that two processes never read half a file) and imported."""
    source = _source(k, stride, H, W)
    shape = f"w{W}" if H is None else f"{H}x{W}"
    name = f"depthwise_rows_k{k}_s{stride}_{shape}_{hashlib.sha256(source.encode()).hexdigest()[:12]}"
    path = os.path.join(_folder(), name + ".py")
    if not os.path.isfile(path):
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(handle, "w") as f:
            f.write(source)
        os.replace(temporary, path)
    spec = importlib.util.spec_from_file_location(f"minimix_generated_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Numba's cache finds the module's globals again by its name
    spec.loader.exec_module(module)
    return module


FROM_CACHE_ONLY = {2: ("backward_input", "backward_weight")}  # stride -> its kernels that run only from the cache
_fills_cache = False  # True in a process that compiles kernels to cache them (``_compile_for_cache``, warm_up's helper)
_CHILD = "import sys; from minimix.kernels import depthwise_rows; depthwise_rows._compile_for_cache(sys.argv[1])"


def cache_filling_environment():
    """Environment variables for a process that compiles kernels into this process's Numba cache: the same
    cache folder (Numba read NUMBA_CACHE_DIR when this process imported it), one thread (it runs nothing big)."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    env.pop("NUMBA_CACHE_DIR", None)
    if numba.config.CACHE_DIR:
        env["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR
    return env


def _call(spec, name, *args):
    """Kernel ``name`` of the generated module for spec = (k, stride, H, W) on ``args``. The kernels in
    FROM_CACHE_ONLY run machine code loaded from Numba's cache (module docstring): before this process first
    calls one with these argument types, a child process compiles it into the cache (``_first_call``)."""
    kernel = getattr(_kernels(*spec), name)
    if name in FROM_CACHE_ONLY.get(spec[1], ()):
        types = tuple(numba.typeof(a) for a in args)
        if types not in kernel.overloads:  # this process's first call with these argument types
            _first_call(kernel, spec, name, args, types)
            return
    kernel(*args)


def _first_call(kernel, spec, name, args, types):
    """Call a FROM_CACHE_ONLY kernel for the first time in this process: load it from the cache, a child process
    compiling it there first unless a marker says one did; in a process that fills the cache, compile it and mark
    it. Warns when the kernel had to be compiled here after all."""
    marker = _marker(kernel, name, types)
    if _fills_cache:
        kernel(*args)  # compiles it and saves it in the cache
        open(marker, "w").close()
        return
    failure = None if os.path.exists(marker) else _from_cache(spec, name, args, types)
    kernel(*args)
    if kernel.stats.cache_misses.get(types):
        warnings.warn(f"minimix: the generated depthwise kernel {name} (k, stride, H, W = {spec}) was compiled in "
                      f"this process instead of loaded from Numba's cache ({failure or 'the cache did not hold it'}): "
                      "its results may differ in the last bits from those of a process that loaded it "
                      "(minimix.kernels.depthwise_rows)", RuntimeWarning, stacklevel=3)


def _marker(kernel, name, types):
    """The file that says a process filling the cache compiled ``name`` for these argument types: beside the module."""
    digest = hashlib.sha256(str(types).encode()).hexdigest()[:12]
    return f"{os.path.splitext(sys.modules[kernel.__module__].__file__)[0]}.{name}.{digest}.cached"


def _from_cache(spec, name, args, types):
    """Have a child process compile kernel ``name`` of module ``spec`` for arguments like ``args`` (same dtypes and
    shapes but one image) into the cache; returns None, or why it failed."""
    described = [[[1, *a.shape[1:]], a.dtype.name] if isinstance(a, np.ndarray) else [int(a), None] for a in args]
    payload = json.dumps({"spec": list(spec), "name": name, "types": str(types), "args": described})
    done = subprocess.run([sys.executable, "-c", _CHILD, payload], env=cache_filling_environment(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        return f"the child process that compiles it failed: {done.stderr.strip()[-400:]}"
    return None


def _compile_for_cache(payload):
    """The child of ``_from_cache``: compile one kernel on arrays of zeros (one image) and mark it cached."""
    global _fills_cache
    _fills_cache = True
    job = json.loads(payload)
    args = [value if dtype is None else np.zeros(value, dtype=dtype) for value, dtype in job["args"]]
    types = str(tuple(numba.typeof(a) for a in args))
    if types != job["types"]:  # e.g. read-only arrays in the parent: the kernel compiled here would not serve it
        raise SystemExit(f"argument types {types} differ from the parent's {job['types']}")
    _call(tuple(job["spec"]), job["name"], *args)


@njit(parallel=True, cache=True, fastmath={"contract", "reassoc"}, error_model="numpy")
def _epilogue_planes(y, c0, coef, kind, consts, finite):
    """y[:, c0 + c] = act(y[:, c0 + c] * coef[0, c] + coef[1, c]) for each channel c of coef; finite[n] = False
    where a plane of image n held an inf or a NaN before."""
    N, H, W = y.shape[0], y.shape[2], y.shape[3]
    for n in prange(N):
        for c in range(coef.shape[1]):
            plane = y[n, c0 + c].reshape(H * W)
            if not is_finite(plane):
                finite[n] = False
            affine_act(plane, plane, coef[0, c], coef[1, c], kind, consts)


def backward_weight(x, gy, c0, C, k, stride=1):
    """gw (C, k*k): dL/dw of that convolution for channels c0 .. c0 + C - 1 of x and gy = dL/dy (both
    C-contiguous), tap t = i*k + j. Each image's sums land in partial[n] (one thread per image, so the numbers do
    not depend on the thread count), then partial is summed over the batch. Where x or gy holds an inf or a NaN
    the result may be NaN where the definition's is not (a padding value of gp multiplies it by 0): the caller
    checks (``depthwise_numba.depthwise_backward_weight``)."""
    partial = np.empty((x.shape[0], C, k * k), dtype=x.dtype)
    _call((k, stride, *x.shape[2:]), "backward_weight", x, gy, c0, partial)
    return partial.sum(axis=0)


def _taps(w):
    """w (C, k, k) as the generated kernels read it: (C, k*k), C-contiguous, tap t = i*k + j."""
    return np.ascontiguousarray(w.reshape(w.shape[0], -1))


def forward(x, y, c0, w, stride=1, epilogue=None):
    """y[:, c0 + c] = the convolution of x[:, c0 + c] with w[c] (C, k, k), zero-padded by k // 2, at this ``stride``
    (1 or 2), for c < C; x (N, channels, H, W) and y (N, channels, H // stride, W // stride) C-contiguous.
    ``epilogue`` = (coef, kind, consts): then y[:, c0 + c] = act(y * coef[0, c] + coef[1, c])
    (``norm_act_numba.affine_act``) in a second pass. Returns False when, before the epilogue, an output plane
    held an inf or a NaN (checked only with an epilogue: without one the result is the definition's, inf and
    NaN included)."""
    _kernels(w.shape[1], stride, *x.shape[2:]).forward(x, y, c0, _taps(w))
    return True if epilogue is None else apply_epilogue(y, c0, epilogue)


def apply_epilogue(y, c0, epilogue):
    """y[:, c0 + c] = act(y[:, c0 + c] * coef[0, c] + coef[1, c]) in place for the C channels of coef, epilogue =
    (coef (2, C), kind, consts) (``norm_act_numba.affine_act``). Returns False when an output plane held an inf or a
    NaN before."""
    finite = np.ones(y.shape[0], dtype=np.bool_)
    _epilogue_planes(y, c0, *epilogue, finite)
    return bool(finite.all())


def backward_input(gy, gx, c0, w, stride=1):
    """gx[:, c0 + c] = dL/dx of that convolution given gy = dL/dy, for c < C; gy and gx C-contiguous, gx
    (N, channels, H, W). At stride 1 the forward kernel on gy with the kernel turned by 180 degrees. The values
    are the definition's, inf and NaN included."""
    if stride == 1:
        forward(gy, gx, c0, w[:, ::-1, ::-1])
    else:
        _call((w.shape[1], stride, *gx.shape[2:]), "backward_input", gy, gx, c0, _taps(w))
