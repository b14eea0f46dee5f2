"""Receptive fields of a model: the theoretical table and effective-receptive-field pictures.

--list-layers prints every convolution-like layer with its kernel(s), stride, jump and theoretical
receptive field r (per MixConv kernel group, and the largest). Otherwise the effective receptive
field (Luo et al., 2016) of --layer's centre unit is measured by back-propagation, its summary is
printed (sides of the centred squares holding 20/50/99% of the gradient), and --out draws it with
the theoretical field as a square; a MixConv layer also gets one panel per kernel group.

Inputs are random normal images (--images random; by default just large enough to hold the
layer's theoretical field) or the first CIFAR-10 test images (--images cifar; 32x32, so only
early layers fit). Squeeze-and-excitation's global pooling spreads later layers' gradients over
the whole image; the theoretical table counts only the local (convolutional) field.

A figure named without a folder (--out erf.png, also --kernels-out and --depth-plot) is written to
runs/rf/ (runs/ is git-ignored), not into the current folder; give a path with a folder
(./erf.png, figs/erf.png, /tmp/erf.png) to put it elsewhere.

examples:
  python -m minimix rf --model mixnet_cifar --list-layers
  python -m minimix rf --model mixnet_cifar --layer blocks.2.0.conv_dw --out erf.png --log
  python -m minimix rf --checkpoint runs/mixnet_cifar-20250101-120000 --layer blocks.2.0.conv_dw --out t.png
  python -m minimix rf --model mixnet_cifar --depth-plot rf_depth.png      # against the all-3x3 variant
"""
from __future__ import annotations

from pathlib import Path

from .train import _kernel_list, non_negative_int, positive_int


FIGURE_DIR = Path("runs") / "rf"  # where a figure named without a folder goes


def figure_path(text) -> Path:
    """argparse type of the figure options: a bare file name goes under ``runs/rf/``."""
    path = Path(text)
    explicit = path.is_absolute() or len(path.parts) > 1 or str(text).startswith(("./", ".\\"))
    return path if explicit else FIGURE_DIR / path


def add_arguments(parser):
    arg = parser.add_argument
    arg("--model", help="model name from minimix.models.MODELS (default: the checkpoint's, else mixnet_cifar)")
    arg("--kernels", type=_kernel_list, help='kernel sizes of every MixConv, e.g. "3" (without --checkpoint)')
    arg("--checkpoint", help="trained weights: a run directory, checkpoint .json or .npz (default: random init)")
    arg("--layer", help="dotted module name (default: the last convolution-like layer); see --list-layers")
    arg("--list-layers", action="store_true", help="print the theoretical receptive-field table and stop")
    arg("--out", type=figure_path, help="save the effective-receptive-field figure here (.png, .pdf, .svg; a bare "
                                        "file name goes to runs/rf/)")
    arg("--log", action="store_true", help="log colour scale (shows the tails)")
    arg("--group", type=non_negative_int, help="only this MixConv kernel group's channels (0 = smallest kernel)")
    arg("--images", choices=("random", "cifar"), default="random", help="input images (default random)")
    arg("--data", help="CIFAR-10 root for --images cifar (default: $MINIMIX_DATA)")
    arg("--input-size", type=positive_int, metavar="N",
        help="side of the random inputs (default: fits the layer's field)")
    arg("--batch", type=positive_int, default=8, help="images averaged over (default 8)")
    arg("--mode", choices=("eval", "train"), default="eval", help="BatchNorm statistics: running (eval) or batch")
    arg("--allow-clipped", action="store_true", help="accept inputs smaller than the layer's theoretical field")
    arg("--kernels-out", type=figure_path, help="save a picture of --layer's (MixConv) kernels here")
    arg("--depth-plot", type=figure_path, help="save r against depth, compared with the all-3x3 variant, here")
    arg("--seed", type=non_negative_int, default=0,
        help="seed of the random initialisation and random inputs (default 0)")


def run(args):
    from .. import manual_seed, viz
    from ..viz.tracing import find_module

    manual_seed(args.seed)
    name, kwargs, model = _load_model(args)
    table_size = args.input_size or 32
    if args.list_layers:
        print(f"{_describe(name, kwargs)} on 3x{table_size}x{table_size} inputs:")
        viz.print_receptive_fields(viz.receptive_field(model, (3, table_size, table_size)))
        return 0
    if args.depth_plot:
        _save_depth_plot(args, name, kwargs, model, table_size)

    layer = args.layer or viz.receptive_field(model, (3, table_size, table_size))[-1].name
    module = find_module(model, layer)
    x = _inputs(args, model, layer)
    options = dict(mode=args.mode, allow_clipped=args.allow_clipped)
    erfs = [viz.compute_erf(model, x, layer, group=args.group, **options)]
    if args.group is None and hasattr(module, "kernel_sizes") and len(module.kernel_sizes) > 1:
        erfs += viz.mixconv_group_erfs(model, x, layer, **options)
    weights = f"weights from {args.checkpoint}" if args.checkpoint else f"random init (seed {args.seed})"
    print(f"{_describe(name, kwargs)}, {weights}, {args.mode} mode, "
          f"{len(x)} {args.images} images of {x.shape[2]}x{x.shape[3]}:")
    for erf in erfs:
        sides = "/".join(str(s) for s in erf.summary().values())
        print(f"  {erf.label}: theoretical r = {max(erf.rf)}, ERF squares holding 20/50/99%: {sides} px")
    if args.out:
        titles = [f"{e.label}\n{'trained' if args.checkpoint else 'untrained'}" for e in erfs]
        _save(viz.plot_erfs(erfs, titles=titles, log=args.log), args.out)
    if args.kernels_out:
        if getattr(module, "weight", None) is None and not hasattr(module, "convs"):
            raise ValueError(f"--kernels-out: layer {layer!r} is a {type(module).__name__}, which has no kernels")
        _save(viz.plot_mixconv_kernels(module), args.kernels_out)
    return 0


def _load_model(args):
    """(model name, builder kwargs, model) from --checkpoint's recipe or --model/--kernels."""
    from ..training.recipe import build_model

    if args.checkpoint:
        from ..training import load_weights, read_checkpoint

        if args.kernels:
            raise ValueError("--kernels cannot change a checkpoint's model; drop it or drop --checkpoint")
        meta, state, config = read_checkpoint(args.checkpoint)
        if args.model and args.model != config.model:
            raise ValueError(f"--model {args.model} differs from the checkpoint's model {config.model}")
        name, kwargs = config.model, dict(config.model_kwargs)
        model = build_model(name, kwargs)
        load_weights(model, state["model"], meta)
        return name, kwargs, model
    name = args.model or "mixnet_cifar"
    kwargs = {"kernel_sizes": tuple(args.kernels)} if args.kernels else {}
    return name, kwargs, build_model(name, kwargs)


def _inputs(args, model, layer):
    import numpy as np

    from .. import random as mm_random
    from ..viz import layer_field

    if args.images == "cifar":
        from ..data import normalize
        from ..training.recipe import balanced_subset, load_split

        images, labels, _ = load_split(args.data, train=False)
        return normalize(balanced_subset(images, labels, args.batch)[0])
    size = args.input_size
    if size is None:  # a margin of two units around the field keeps the centre unit's field inside
        field = layer_field(model, (3, 32, 32), layer)
        size = max(32, max(axis.r + 2 * axis.jump for axis in field))
    return mm_random.generator().standard_normal((args.batch, 3, size, size)).astype(np.float32)


def _save_depth_plot(args, name, kwargs, model, size):
    from .. import viz
    from ..training.recipe import build_model

    curves = {_describe(name, kwargs): viz.receptive_field(model, (3, size, size))}
    if tuple(kwargs.get("kernel_sizes") or ()) != (3,):
        try:
            baseline = build_model(name, {**kwargs, "kernel_sizes": (3,)})
        except ValueError:  # the model has no kernel_sizes option: plot it alone
            baseline = None
        if baseline is not None:
            curves[f"{name} all 3x3"] = viz.receptive_field(baseline, (3, size, size))
    _save(viz.plot_rf_vs_depth(curves, image_size=size), args.depth_plot)


def _describe(name, kwargs) -> str:
    return f"{name} {kwargs}" if kwargs else name


def _save(fig, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
