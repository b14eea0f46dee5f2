"""Build a run's model and data from its ``TrainConfig`` (shared by ``train`` and ``evaluate``)."""
from __future__ import annotations

import inspect
import math

import numpy as np


def model_builders() -> dict:
    """``minimix.models.MODELS``: model name -> builder function."""
    from ..models import MODELS

    return MODELS


def build_model(name: str, model_kwargs: dict | None = None, num_classes: int = 10):
    """Call the builder ``MODELS[name](num_classes=..., **model_kwargs)``.

    Keyword arguments the builder does not take are refused with the list of those it does take,
    so ``--kernels`` on a model without kernel choices is an error, not silently ignored.
    """
    builders = model_builders()
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(sorted(builders))}")
    builder = builders[name]
    model_kwargs = dict(model_kwargs or {})
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    refused = [k for k in model_kwargs if k not in params and not takes_any]
    if refused:
        accepted = [k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        raise ValueError(f"model {name!r} does not accept {refused}; its options are {accepted}")
    return builder(num_classes=num_classes, **model_kwargs)


def builder_accepts(name: str, kwarg: str) -> bool:
    """Whether ``MODELS[name]`` takes the keyword ``kwarg`` (directly or through ``**knobs``)."""
    builder = model_builders().get(name)
    if builder is None:
        return False
    params = inspect.signature(builder).parameters
    return kwarg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def load_split(data_root, train: bool):
    """``(images uint8 (N, 32, 32, 3), labels int64 (N,), classes)`` of CIFAR-10's train or test split."""
    from ..data import CIFAR10

    try:
        dataset = CIFAR10(root=data_root, train=train)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}\nOn the command line: pass --data PATH, or `export MINIMIX_DATA=PATH` "
                                "(PATH: a folder or archive as listed above).") from None
    return dataset.images, dataset.labels, list(dataset.classes)


def balanced_subset(images, labels, limit: int | None):
    """The first ``limit`` images taking the classes in turn: the first image of every class, then
    the second of every class, ... (kept in dataset order).

    Plain ``images[:limit]`` would be all airplanes on a dataset stored class by class (as the
    image-folder trees are); this gives every class ``limit / C`` images (+-1) in any storage order.
    """
    if limit is None or limit >= len(labels):
        return images, labels
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    rank = np.empty(len(labels), dtype=np.int64)  # rank[i] = how many images of i's class come before i
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    keep = np.sort(np.lexsort((labels, rank))[:limit])  # by rank, then label
    return images[keep], labels[keep]


def proportional_test_limit(limit: int | None, train_size: int, test_size: int) -> int | None:
    """Test images to use with ``--limit``: the same fraction of the test set as of the training
    set (2,048 of CIFAR-10's 50,000 training images -> 410 of its 10,000 test images)."""
    if limit is None or limit >= train_size:
        return None
    return max(1, math.ceil(limit * test_size / train_size))
