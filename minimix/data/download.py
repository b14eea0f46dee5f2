"""Download and unpack the official CIFAR-10 python version, safely.

1. Stream the archive from :data:`URL` into a temporary file beside the target,
   hashing it on the way.
2. Only if the MD5 equals :data:`MD5` is the file renamed to
   ``cifar-10-python.tar.gz`` (an interrupted or corrupted download therefore
   never leaves a file that looks valid).
3. Extract it with tarfile's ``filter="data"`` (refuses absolute paths, ``..``,
   links out of the folder, device files) into a temporary folder, then rename
   ``cifar-10-batches-py/`` into place, so a half-extracted folder never appears.
"""
import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from .errors import DatasetError
from .official import PYTHON_ARCHIVE, PYTHON_FOLDER

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
BLOCK = 1 << 20


def urlopen(url: str):
    """``urllib.request.urlopen``, imported on first use (it pulls in http, ssl and email, which slow ``import minimix``)."""
    from urllib.request import urlopen as open_url

    return open_url(url)


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, target: Path, md5: str) -> Path:
    """Download ``url`` to ``target``, atomically, after checking its MD5."""
    from tqdm.auto import tqdm

    target = Path(target)
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=target.name + ".",
                                         suffix=".part", delete=False)
    try:
        digest = hashlib.md5()
        with handle, urlopen(url) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, leave=False) as bar:
                for block in iter(lambda: response.read(BLOCK), b""):
                    handle.write(block)
                    digest.update(block)
                    bar.update(len(block))
        if digest.hexdigest() != md5:
            raise DatasetError(f"{url}: downloaded file has MD5 {digest.hexdigest()}, expected "
                               f"{md5}; the download is corrupt or the file changed. Try again.")
        os.replace(handle.name, target)
    finally:
        if os.path.exists(handle.name):
            os.unlink(handle.name)
    return target


def extract(archive: Path, root: Path, folder: str) -> Path:
    """Extract ``archive`` (which must contain ``folder/``) into ``root/folder``, atomically."""
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".extract-"))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, EOFError, OSError) as error:
            raise DatasetError(f"{archive}: cannot extract ({error})") from error
        if not (staging / folder).is_dir():
            raise DatasetError(f"{archive}: archive has no '{folder}/' folder")
        os.replace(staging / folder, root / folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / folder


def download_cifar10(root: Path, url: str | None = None, md5: str | None = None) -> Path:
    """Make sure ``root/cifar-10-batches-py/`` exists, downloading the archive if needed.

    An archive already in ``root`` is reused if its MD5 is right. Returns the folder.
    """
    root = Path(root)
    url, md5 = url or URL, md5 or MD5
    root.mkdir(parents=True, exist_ok=True)
    if (root / PYTHON_FOLDER).is_dir():
        return root / PYTHON_FOLDER
    archive = root / PYTHON_ARCHIVE
    if not (archive.is_file() and md5sum(archive) == md5):
        fetch(url, archive, md5)
    return extract(archive, root, PYTHON_FOLDER)
