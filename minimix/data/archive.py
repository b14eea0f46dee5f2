"""Reading tar archives (``.tar``, ``.tar.gz``, ...) as a stream of files.

Datasets are read straight from the compressed stream, member by member, without
extracting anything to disk. Any failure of the archive itself (truncated gzip,
bad header, not a tar at all) becomes a :class:`DatasetError` naming the file.
"""
import tarfile
import zlib
from pathlib import Path
from typing import Iterator

from .errors import DatasetError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive_name(path: Path) -> bool:
    """True if the file name ends like a tar archive (``.tar.gz``, ``.tgz``, ``.tar``, ...)."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def iter_tar_files(path: Path, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield ``(member_name, content)`` for each regular file of the archive, in stream order.

    ``limit`` stops after that many files (used to sniff an archive's layout cheaply).
    """
    try:
        with tarfile.open(path, "r|*") as tar:  # "|": sequential stream, no seeking back
            count = 0
            for member in tar:
                if not member.isfile():
                    continue
                yield member.name, tar.extractfile(member).read()
                count += 1
                if limit is not None and count >= limit:
                    return
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DatasetError(f"{path}: not a complete, readable tar archive ({error})") from error
