"""Evaluate a checkpoint on the CIFAR-10 test set: accuracy, per-class table, confusion matrix.

Writes confusion_matrix.png and evaluation.json into --out (default: the checkpoint's run
directory). CHECKPOINT is a run directory (its last.json), a checkpoint .json, or its .npz.

examples:
  python -m minimix evaluate runs/mixnet_cifar-20250101-120000
  python -m minimix evaluate runs/mixnet_cifar-20250101-120000/best.json --tta
"""
from __future__ import annotations

import json
from pathlib import Path

from .train import positive_int


def add_arguments(parser):
    parser.add_argument("checkpoint", help="run directory, checkpoint .json or .npz")
    parser.add_argument("--tta", action="store_true", help="average the logits of each image and its mirror")
    parser.add_argument("--out", type=Path, help="output directory (default: the checkpoint's directory)")
    parser.add_argument("--data", help="dataset root (default: $MINIMIX_DATA, else the location the run stored)")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="evaluate on N test images only, N/10 per class")
    parser.add_argument("--batch-size", type=positive_int,
                        help="evaluation batch size (default: the run's training batch or 500, the larger)")


def eval_batch_size(config) -> int:
    """The default evaluation batch: the run's training batch or its eval batch (500), the larger."""
    return max(config.batch_size, config.eval_batch_size)


def run(args):
    from ..data import DataLoader
    from ..training import confusion_matrix, evaluate, load_weights, per_class_accuracy, read_checkpoint
    from ..training.plots import plot_confusion_matrix
    from ..training.recipe import balanced_subset, build_model, data_location, load_split

    meta, state, config = read_checkpoint(args.checkpoint)
    data, origin = data_location(args.data, config.data)
    print(f"data: {data} (from {origin})")
    images, labels, classes = load_split(data, train=False, log=print)
    images, labels = balanced_subset(images, labels, args.limit)
    model = build_model(config.model, config.model_kwargs, num_classes=len(classes))
    load_weights(model, state["model"], meta)

    # Inference holds no graph, so a large batch costs little memory and keeps the kernels busy;
    # evaluate() runs the fused inference copy of the model (nn.fuse).
    batch_size = args.batch_size or eval_batch_size(config)
    result = evaluate(model, DataLoader(images, labels, batch_size=batch_size, shuffle=False), tta=args.tta)
    matrix = confusion_matrix(result["predictions"], result["labels"], len(classes))
    per_class = per_class_accuracy(matrix)

    tta = " with flip TTA" if args.tta else ""
    print(f"{meta} (epoch {state['epoch']}, {config.model}): test accuracy{tta} {result['acc']:.2%}, "
          f"loss {result['loss']:.4f} on {len(labels):,} images")
    width = max(len(c) for c in classes)
    print(f"{'class':<{width}}  images  accuracy")
    for name, count, acc in zip(classes, matrix.sum(axis=1), per_class):
        print(f"{name:<{width}}  {count:>6}  {acc:8.2%}")

    out = Path(args.out) if args.out else meta.parent
    out.mkdir(parents=True, exist_ok=True)
    png = plot_confusion_matrix(matrix, classes, out / "confusion_matrix.png",
                                title=f"{config.model}, epoch {state['epoch']}: {result['acc']:.2%}{tta}")
    report = {"checkpoint": str(meta), "epoch": state["epoch"], "tta": args.tta, "images": len(labels),
              "accuracy": result["acc"], "loss": result["loss"], "classes": classes,
              "per_class_accuracy": [None if a != a else float(a) for a in per_class],
              "confusion_matrix": matrix.tolist()}
    (out / "evaluation.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {png} and {out / 'evaluation.json'}")
