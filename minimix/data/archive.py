"""Reading tar archives (``.tar``, ``.tar.gz``, ...) as a stream of files, all of it or an error.

Datasets are read straight from the compressed stream, member by member, without
extracting anything to disk. Any failure of the archive itself becomes a
:class:`DatasetError` naming the file. "All of it" takes two checks that
:mod:`tarfile` does not make on its own:

* **The end-of-archive marker.** A tar archive ends with blocks of zeros. tarfile
  also ends quietly when the file simply stops, at a member boundary or inside a
  member's header, or when a header is garbage, so a cut archive would read as a
  smaller one. Here the archive must end with its marker.
* **The compressed stream to its end.** A gzip (bz2, xz) stream ends with a checksum
  of the data (gzip: CRC-32 and length) after the tar's last block; tarfile stops
  reading before it. Here the stream is read to its end, so that the decompressor
  checks it: a truncated or corrupted ``.tar.gz`` fails.

Links (symbolic or hard) inside an archive are refused: a stream cannot go back to
what a link points to, so the files behind it would be missing.
"""
import tarfile
import zlib
from pathlib import Path
from typing import Iterator

from .errors import DatasetError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
BLOCK = 1 << 20  # bytes per read from the decompressor


def is_archive_name(path: Path) -> bool:
    """True if the file name ends like a tar archive (``.tar.gz``, ``.tgz``, ``.tar``, ...)."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


class _Incomplete(Exception):
    """The tar stream stops without its end-of-archive marker, or a header is corrupt."""


class _CheckedTarInfo(tarfile.TarInfo):
    """A TarInfo whose header parsing tells a real end of the archive from a cut one.

    tarfile reads each 512-byte header with :meth:`frombuf`; of its errors, only "a block
    of zeros" is the end-of-archive marker. An empty or short read (the file stops at or
    inside a header) and a bad header checksum end the archive quietly in tarfile (after
    its first member); here they raise, and :func:`iter_tar_files` names the file.
    """

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        if len(buf) == 0:
            raise _Incomplete("the file ends")
        if len(buf) != tarfile.BLOCKSIZE:
            raise _Incomplete(f"the file ends inside a member header ({len(buf)} of "
                              f"{tarfile.BLOCKSIZE} bytes)")
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.EOFHeaderError:  # a block of zeros: the end-of-archive marker
            raise
        except tarfile.HeaderError as error:
            raise _Incomplete(f"corrupt member header ({error})") from None


def _decompressed(file):
    """The decompressed stream of an open archive file, chosen by its first bytes (like tarfile's
    ``r|*``). Python's gzip, bz2 and lzma readers check the stream's checksums at its end."""
    magic = file.read(6)
    file.seek(0)
    if magic[:2] == b"\x1f\x8b":
        import gzip

        return gzip.GzipFile(fileobj=file, mode="rb")
    if magic[:3] == b"BZh":
        import bz2

        return bz2.BZ2File(file)
    if magic == b"\xfd7zXZ\x00":
        import lzma

        return lzma.LZMAFile(file)
    return file  # an uncompressed tar


def _stream_errors() -> tuple:
    errors = (tarfile.TarError, EOFError, zlib.error, OSError)  # gzip.BadGzipFile is an OSError
    try:
        import lzma

        return errors + (lzma.LZMAError,)
    except ImportError:
        return errors


def iter_tar_files(path: Path, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield ``(member_name, content)`` for each regular file of the archive, in stream order.

    After the last member the archive must end with its end-of-archive marker, and a
    compressed stream is read to its end (its checksum verified); otherwise, or for a link
    member, a :class:`DatasetError` naming the file is raised (after the members before it
    were yielded: callers must not use what they collected when iteration fails).

    ``limit`` stops after that many files (used to sniff an archive's layout cheaply; no
    end checks then).
    """
    path = Path(path)
    last = None
    try:
        with open(path, "rb") as raw, _decompressed(raw) as stream, \
                tarfile.open(fileobj=stream, mode="r|", tarinfo=_CheckedTarInfo) as tar:
            count = 0
            for member in tar:  # "|": sequential stream, no seeking back
                last = member.name
                if member.issym() or member.islnk():
                    kind = "symbolic" if member.issym() else "hard"
                    raise DatasetError(
                        f"{path}:{member.name}: is a {kind} link (to '{member.linkname}'); links inside "
                        "an archive are not followed, so what it points to would be missing. Make the "
                        "archive with the files themselves (tar --dereference / -h), or extract it and "
                        "pass the folder")
                if not member.isfile():
                    continue
                yield member.name, tar.extractfile(member).read()
                count += 1
                if limit is not None and count >= limit:
                    return
            while stream.read(BLOCK):  # to the end of the compressed stream: checks its CRC
                pass
    except _Incomplete as error:
        after = f" after member '{last}'" if last else ""
        raise DatasetError(f"{path}: not a complete tar archive: {error}{after}, before the "
                           "end-of-archive marker; the file is truncated or damaged (copy or download "
                           "it again)") from None
    except _stream_errors() as error:
        after = f" (after member '{last}')" if last else ""
        raise DatasetError(f"{path}: not a complete, readable tar archive ({type(error).__name__}: "
                           f"{error}){after}") from error
