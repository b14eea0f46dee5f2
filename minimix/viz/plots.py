"""Pictures of receptive fields (matplotlib, imported inside each function).

Every function returns a ``matplotlib.figure.Figure`` built without pyplot,
so it works headless and leaves no global state; save it with
``fig.savefig("erf.png")`` or let a notebook display it.
"""
import numpy as np


def plot_erfs(erfs, titles=None, log=False, outline=True, log_floor=1e-6, ncols=None):
    """Effective receptive fields side by side, each with its theoretical field as a square.

    ``erfs``: ``ERF`` objects (see ``minimix.viz.compute_erf``). ``log=True``
    shows log10 magnitudes (values below ``log_floor`` times the peak are
    raised to it), which reveals the long tails. The square is the centre
    unit's theoretical field: ``rf`` pixels wide, centred on ``erf.centre``.
    """
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    erfs = list(erfs)
    if not erfs:
        raise ValueError("plot_erfs: erfs is empty")
    if titles is not None and len(titles) != len(erfs):
        raise ValueError(f"plot_erfs: got {len(titles)} titles for {len(erfs)} maps")
    ncols = ncols or len(erfs)
    nrows = -(-len(erfs) // ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, (ax, erf) in enumerate(zip(axes, erfs)):
        image = np.asarray(erf.map, dtype=np.float64)
        peak = image.max()
        if log and peak > 0:
            norm = LogNorm(vmin=peak * log_floor, vmax=peak)
            image = np.maximum(image, peak * log_floor)
        else:
            norm = Normalize(vmin=0.0, vmax=peak if peak > 0 else 1.0)
        shown = ax.imshow(image, cmap="magma", norm=norm, interpolation="nearest")
        fig.colorbar(shown, ax=ax, shrink=0.8)
        if outline:
            (row, col), (r_rows, r_cols) = erf.centre, erf.rf
            ax.add_patch(Rectangle((col - r_cols / 2, row - r_rows / 2), r_cols, r_rows, fill=False,
                                   edgecolor="cyan", linewidth=1.5, label="theoretical RF"))
        ax.set_xlim(-0.5, image.shape[1] - 0.5)  # the square may be larger than the image
        ax.set_ylim(image.shape[0] - 0.5, -0.5)
        title = titles[i] if titles is not None else (erf.label or erf.layer)
        ax.set_title(f"{title}\nr = {max(erf.rf)}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(erfs):]:
        ax.set_axis_off()
    return fig


def plot_rf_vs_depth(curves, image_size=None):
    """Theoretical receptive field ``r`` against layer depth, one line per model.

    ``curves``: ``{label: records}`` with records from
    ``minimix.viz.receptive_field``; depth is the layer's position in forward
    order (1 = first conv). ``image_size`` draws the input size as a dashed line.
    """
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_rf_vs_depth: curves is empty")
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    for label, records in curves.items():
        depth = np.arange(1, len(records) + 1)
        ax.plot(depth, [rec.rf for rec in records], marker=".", label=label)
    if image_size is not None:
        ax.axhline(image_size, color="grey", linestyle="--", label=f"input size ({image_size} px)")
    ax.set_xlabel("convolution-like layer (forward order)")
    ax.set_ylabel("theoretical receptive field r (px)")
    ax.set_title("Receptive field vs depth")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_mixconv_kernels(module, max_channels=8):
    """One MixConv layer's depthwise kernels as small images: a row per kernel group.

    Row ``i`` shows the first ``max_channels`` (k_i x k_i) filters of group
    ``i``, on a blue-white-red scale symmetric about 0 (shared within the row).
    A single depthwise ``Conv2d`` (no ``convs``) is shown as one row.
    """
    from matplotlib.figure import Figure

    convs = list(getattr(module, "convs", [module]))
    weights = [np.asarray(conv.weight.data)[:, 0] for conv in convs]  # (c_i, k, k) each
    cols = min(max_channels, max(w.shape[0] for w in weights))
    fig = Figure(figsize=(1.1 * cols + 0.8, 1.2 * len(weights)), layout="constrained")
    grid = fig.subplots(len(weights), cols, squeeze=False)
    for row, w in zip(grid, weights):
        bound = float(np.abs(w).max()) or 1.0
        for c, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= w.shape[0]:
                ax.set_axis_off()
                continue
            ax.imshow(w[c], cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        kh, kw = w.shape[1:]
        row[0].set_ylabel(f"{kh}x{kw}", rotation=0, labelpad=18)
    fig.suptitle(f"{type(module).__name__} kernels (first {cols} channels per group)", fontsize=9)
    return fig
