"""Plot the loss and accuracy curves of a run (from its metrics.csv) to a PNG, and sum the run up
(accuracy, training time, images/s, time to 80% and 85% test accuracy).

example:
  python -m minimix plot runs/mixnet_cifar-20250101-120000      # -> .../curves.png
"""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser):
    parser.add_argument("run_dir", type=Path, help="run directory holding metrics.csv")
    parser.add_argument("--out", type=Path, help="PNG file to write (default RUN_DIR/curves.png)")


def run(args):
    from ..training import read_log
    from ..training.metrics import describe_run
    from ..training.plots import plot_curves

    if not args.run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {args.run_dir}")
    log = read_log(args.run_dir / "metrics.csv")
    png = plot_curves(log, args.out or args.run_dir / "curves.png")
    print(describe_run(log))
    print(f"wrote {png}")
