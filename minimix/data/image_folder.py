"""Reader for CIFAR-10 stored as an image-folder tree, on disk or inside a tar archive::

    [top/]train/<class>/<name>.png|.jpg|.jpeg
    [top/]test/<class>/<name>.png|.jpg|.jpeg

``<class>`` is one of the ten CIFAR-10 class names and gives the label. Images
are decoded with Pillow and must be 32x32 RGB; the size and mode are read from
the file's header first, so a huge image is refused before it is decoded. Within
a split, images are ordered by (label, file name), so the result does not depend
on the order of the archive or of the file system.

Symbolic links in a folder tree are followed (a linked class folder is read like
a real one); a folder reached twice (two class folders that are the same folder,
or a link loop) and a folder that cannot be listed are errors, never skipped.
Links inside an archive are refused (:mod:`minimix.data.archive`).

Decoding 60,000 tiny images is dominated by per-image Python overhead, so large sets are decoded in chunks by two worker processes while the
main process keeps reading the archive.
"""
import io
import os
import sys
from pathlib import Path, PurePosixPath

import numpy as np

from .archive import iter_tar_files
from .errors import DatasetError
from .official import CLASSES

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CHUNK = 2000  # images per decoding task


def find_tree(directory: Path) -> Path | None:
    """The folder holding ``train/`` and ``test/``: ``directory`` itself or one subfolder of it."""
    def is_tree(path):
        return all((path / split).is_dir() for split in SPLITS)

    if is_tree(directory):
        return directory
    trees = [sub for sub in sorted(directory.iterdir()) if sub.is_dir() and is_tree(sub)]
    if len(trees) > 1:
        raise ValueError(f"{directory} holds several image trees ({', '.join(t.name for t in trees)});"
                         " pass root=<the one to use>")
    return trees[0] if trees else None


def is_image_name(name: str) -> bool:
    base = PurePosixPath(name).name
    return base.lower().endswith(IMAGE_EXTENSIONS) and not base.startswith(".")  # skip ._x.jpg


def list_image_files(tree: Path) -> list[Path]:
    """Every image file under ``tree/train`` and ``tree/test`` (sorted), following symbolic links.

    A folder reached twice (through a link: two class folders that are one folder, or a loop) and
    a folder that cannot be listed raise :class:`DatasetError`, so no image is counted twice or
    silently left out.
    """
    def cannot_list(error: OSError):
        raise DatasetError(f"{error.filename}: cannot list this folder ({error.strerror})") from error

    files, seen = [], {}
    for split in SPLITS:
        for folder, _, names in os.walk(tree / split, onerror=cannot_list, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen:
                raise DatasetError(f"{folder} and {seen[real]} are the same folder ({real}), reached "
                                   "through a symbolic link; its images would be read twice. Remove "
                                   "the link")
            seen[real] = folder
            files += [Path(folder) / name for name in names if is_image_name(name)]
    return sorted(files)


def parse_image_path(relative: str, where: str) -> tuple[str, int]:
    """``"[top/]train/cat/0001.png"`` -> ``("train", 3)``; anything else is an error."""
    parts = PurePosixPath(relative).parts
    if len(parts) < 3 or parts[-3] not in SPLITS:
        raise DatasetError(f"{where}: image is not in a <split>/<class>/ folder "
                           f"(expected train/<class>/ or test/<class>/)")
    if parts[-2] not in CLASSES:
        raise DatasetError(f"{where}: unknown class folder '{parts[-2]}'; expected one of "
                           f"{', '.join(CLASSES)}")
    return parts[-3], CLASSES.index(parts[-2])


def decode_images(blobs: list[bytes], wheres: list[str]) -> np.ndarray:
    """Decode encoded PNG/JPEG files into a uint8 array (n, 32, 32, 3)."""
    from PIL import Image

    out = np.empty((len(blobs), 32, 32, 3), np.uint8)
    for i, (blob, where) in enumerate(zip(blobs, wheres)):
        try:
            with Image.open(io.BytesIO(blob)) as image:  # reads the header only
                if image.mode != "RGB" or image.size != (32, 32):  # checked before decoding any pixel
                    raise DatasetError(f"{where}: image is {image.mode} {image.size[0]}x"
                                       f"{image.size[1]}, expected a 32x32 RGB image (not decoded)")
                image.load()
                out[i] = np.asarray(image)
        except DatasetError:
            raise
        except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, ...
            raise DatasetError(f"{where}: cannot decode image ({type(error).__name__}: "
                               f"{error})") from error
    return out


class _ChunkedDecoder:
    """Collects (where, split, label, blob) and decodes them chunk by chunk, maybe in workers."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = None
        self.meta: list[tuple[str, str, int]] = []  # (where, split, label) per image
        self.pending: list[tuple[bytes, str]] = []  # (blob, where) not yet sent to a decoder
        self.chunks: list = []  # decoded arrays, or futures of them

    def add(self, where: str, split: str, label: int, blob: bytes):
        self.meta.append((where, split, label))
        self.pending.append((blob, where))
        if len(self.pending) == CHUNK:
            self._flush()

    def _flush(self):
        blobs, wheres = (list(column) for column in zip(*self.pending))
        self.pending = []
        if self.workers > 1 and self.pool is None and sys.platform.startswith("linux"):
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork, not spawn: a spawned child would re-run a student's unguarded script
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"))
        if self.pool is not None:
            self.chunks.append(self.pool.submit(decode_images, blobs, wheres))
        else:
            self.chunks.append(decode_images(blobs, wheres))

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    def finish(self, source: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if self.pending:
            self._flush()
        chunks = [c if isinstance(c, np.ndarray) else c.result() for c in self.chunks]
        if not self.meta:
            raise DatasetError(f"{source}: no images found (expected train/<class>/*.png|jpg "
                               "and test/<class>/...)")
        images = np.concatenate(chunks)
        wheres, splits, labels = (np.array(column) for column in zip(*self.meta))
        result = {}
        for split in SPLITS:
            chosen = np.flatnonzero(splits == split)
            if chosen.size == 0:
                raise DatasetError(f"{source}: no images in {split}/<class>/ folders")
            chosen = chosen[np.lexsort((wheres[chosen], labels[chosen]))]
            result[split] = (images[chosen], labels[chosen].astype(np.int64))
        return result


def _iter_image_files(path: Path):
    """Yield (where, path relative to the tree, content) for each image of a folder or archive."""
    if path.is_dir():
        tree = find_tree(path) or path
        for file in list_image_files(tree):
            try:
                content = file.read_bytes()
            except OSError as error:  # e.g. a broken symbolic link
                raise DatasetError(f"{file}: cannot read ({error.strerror})") from error
            yield str(file), file.relative_to(tree).as_posix(), content
        return
    top = None
    for member, content in iter_tar_files(path):
        if not is_image_name(member):
            continue
        where = f"{path}:{member}"
        prefix = PurePosixPath(member).parts[:-3]
        if top is None:
            top = prefix
        elif prefix != top:  # two trees in one archive: refuse to mix them
            raise DatasetError(f"{where}: archive holds more than one image tree "
                               f"('{'/'.join(top)}' and '{'/'.join(prefix)}')")
        yield where, member, content


def read_image_folder(path: Path, workers: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read both splits of an image-folder tree (a folder, or a tar archive of one).

    Returns ``{"train": (images, labels), "test": (images, labels)}``, images uint8
    (n, 32, 32, 3) and labels int64 (n,). ``workers`` > 1 decodes in that many
    forked processes (Linux only; elsewhere decoding stays in this process).
    """
    path = Path(path)
    decoder = _ChunkedDecoder(workers)
    try:
        for where, relative, content in _iter_image_files(path):
            split, label = parse_image_path(relative, where)
            decoder.add(where, split, label, content)
        return decoder.finish(path)
    finally:
        decoder.close()
