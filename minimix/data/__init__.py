"""minimix.data: CIFAR-10 loading, augmentation and mini-batching, all in NumPy::

    from minimix.data import CIFAR10, DataLoader
    train = CIFAR10(train=True)                   # images uint8 (50000, 32, 32, 3)
    loader = DataLoader(train.images, train.labels, batch_size=128, augment=True, seed=0)
    for epoch in range(10):
        loader.set_epoch(epoch)
        for x, y in loader:                       # x float32 (128, 3, 32, 32), y int64 (128,)
            ...

Modules: ``cifar`` (finding the data, the ``CIFAR10`` class), ``official`` and
``image_folder`` (the file formats), ``safe_pickle``, ``archive``, ``cache``,
``download``, ``augment`` (crop, flip, cutout, normalize), ``loader``.
"""
from .augment import CIFAR10_MEAN, CIFAR10_STD, cutout, cutout_mask, normalize, random_crop, random_flip
from .cifar import CIFAR10
from .download import download_cifar10
from .errors import DatasetError
from .loader import DataLoader
from .official import CLASSES, OFFICIAL_PER_CLASS

__all__ = [
    "CIFAR10", "CLASSES", "OFFICIAL_PER_CLASS", "CIFAR10_MEAN", "CIFAR10_STD", "DataLoader", "DatasetError",
    "download_cifar10", "normalize", "random_crop", "random_flip", "cutout", "cutout_mask",
]
