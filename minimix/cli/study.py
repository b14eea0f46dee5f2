"""Run a paper-reproduction study: ``study kernels`` trains the MixConv paper's kernel-size variants.

``python -m minimix study kernels`` trains every (variant, seed) of ``minimix.study.kernels.VARIANTS``
with the train command's recipe, one run directory per run (OUT/<variant>/seed<seed>), and writes
the results table (RESULTS/kernel-study.csv, -runs.csv), the figures and RESULTS/kernel-study.md.
Finished runs are skipped and unfinished ones resumed from their last checkpoint (written every
epoch and every --checkpoint-minutes), so the study can be stopped at any moment (Ctrl-C, kill) and
continued by running the same command again. Each finished run also leaves a small record in
--records (docs/results/kernel-study-records by default), committed with the results: on a fresh
clone, where the run directories are gone, the runs with a record are skipped. --collect-only
rewrites the results from the records without training. The default budget (epochs, width, --limit) and why it was chosen:
docs/results/kernel-study.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .train import _number, non_negative_int, positive_int


def _seeds(text: str) -> list:
    import argparse

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected seeds separated by commas like "0,1", got {text!r}') from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct integers >= 0, got {text!r}")
    return seeds


def _variant_list(text: str) -> list:
    import argparse

    from ..study.kernels import VARIANTS

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown variants {unknown or text!r}; choose from {', '.join(VARIANTS)}")
    return names


def add_arguments(parser):
    """The ``study`` command's options."""
    from ..study import kernels

    arg = parser.add_argument
    arg("study", choices=["kernels"], help="which study (kernels: the MixConv paper's kernel-size study)")
    arg("--epochs", type=positive_int, default=kernels.DEFAULT_EPOCHS,
        help=f"epochs per run (default {kernels.DEFAULT_EPOCHS})")
    arg("--width", type=_number(0, low_open=True), default=kernels.DEFAULT_WIDTH,
        help=f"width multiplier of mixnet_cifar (default {kernels.DEFAULT_WIDTH})")
    arg("--seeds", type=_seeds, default=list(kernels.DEFAULT_SEEDS),
        help=f"seeds, e.g. 0,1,2 (default {','.join(map(str, kernels.DEFAULT_SEEDS))})")
    arg("--variants", type=_variant_list, help=f"comma-separated subset of: {', '.join(kernels.VARIANTS)} (default all)")
    arg("--limit", type=non_negative_int, default=kernels.DEFAULT_LIMIT, metavar="N",
        help=f"training images per run, N/10 per class, as train --limit; 0: all 50,000 "
             f"(default {kernels.DEFAULT_LIMIT})")
    arg("--batch-size", type=positive_int, default=kernels.DEFAULT_BATCH,
        help=f"batch size of every run (default {kernels.DEFAULT_BATCH}); the peak learning rate follows it")
    arg("--data", help="dataset root (default: $MINIMIX_DATA)")
    arg("--out", type=Path, default=Path("runs/study/kernels"), help="the study's run directories (default %(default)s)")
    arg("--results", type=Path, default=Path("docs/results"),
        help="where the table, figures and page go (default %(default)s)")
    arg("--records", type=Path,
        help="one small JSON file per finished run, committed with the results: a run with a record is "
             f"skipped even where its run directory is gone (default RESULTS/{kernels.RECORDS})")
    arg("--collect-only", action="store_true",
        help="only rewrite the results from the records (recording the finished runs under --out first)")
    arg("--erf-images", type=non_negative_int, default=8, metavar="N",
        help="test images for the effective receptive fields (default 8; 0: theoretical field only)")
    arg("--checkpoint-minutes", type=_number(0), default=10.0, metavar="M",
        help="also checkpoint within an epoch every M minutes (default 10)")
    arg("--threads", type=positive_int, help="threads for the kernels (default: all cores)")
    arg("--progress", action="store_true", help="show a progress bar per epoch")


def run(args):
    """Train the missing runs (unless --collect-only), then collect the results."""
    from ..study import kernels
    from ..training.recipe import data_location
    from .train import configure_performance

    if args.collect_only:
        kernels.collect(args.out, args.results, data=data_location(args.data)[0], erf_images=args.erf_images,
                        records=args.records, log=lambda line: print(line, flush=True))
        return 0
    configure_performance(args.threads)
    try:
        kernels.run_study(out=args.out, variants=args.variants, seeds=args.seeds, epochs=args.epochs,
                          width=args.width, limit=args.limit or None, data=args.data, results=args.results,
                          batch_size=args.batch_size, records=args.records,
                          progress=args.progress, checkpoint_every=60.0 * args.checkpoint_minutes,
                          erf_images=args.erf_images, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\nminimix study: interrupted (Ctrl-C); the same command continues the study from the last "
              "checkpoints in " + str(args.out), file=sys.stderr)
        return 130
    return 0
