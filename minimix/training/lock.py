"""One training process per run directory: an exclusive lock, held for the whole run.

Two processes training into the same directory would overwrite each other's checkpoints and
delete each other's data files. ``lock_run_dir(run_dir)`` takes an exclusive ``flock`` on the
file ``run_dir/.lock`` (writing this process's PID into it) and holds it until the ``with`` block
ends; the operating system releases it when the process dies, however it dies (a kill, a
crash), so a lock is never left stale. A second process asking for the same directory gets
``RunDirectoryLocked`` naming the holder's PID. ``Trainer.fit`` takes the lock; the ``train``
command takes it before it reads the run's checkpoint. Within one process the lock is re-entrant.

Holding the lock, nobody else can be writing into the directory, so the temporaries an
interrupted write left there are stale: they are removed when the lock is taken
(``checkpoint.remove_stale_temporaries``).

On systems without ``fcntl`` (Windows) no lock is taken.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

from .checkpoint import remove_stale_temporaries

LOCK_NAME = ".lock"


class RunDirectoryLocked(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """What ``lock_run_dir`` yields: the directory, and the stale temporaries it removed."""

    def __init__(self, run_dir: Path, removed: list):
        self.run_dir, self.removed = run_dir, removed


_held: dict = {}  # resolved run directory -> [file descriptor, depth] (locks held by this process)


@contextmanager
def lock_run_dir(run_dir):
    """Hold the exclusive lock of ``run_dir`` (created if needed) for the ``with`` block.

    Raises ``RunDirectoryLocked`` if another process holds it. If this call created the
    directory and it holds nothing but the lock file at the end, the directory is removed again
    (a run that failed before writing anything leaves no empty run directory behind). The
    ``train`` command writes the run's ``config.json`` right after taking the lock, so a run
    stopped before its first checkpoint keeps its directory, and ``--resume`` starts it again.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _held:  # this process already holds it (the train command, then Trainer.fit)
        _held[key][1] += 1
        try:
            yield RunLock(run_dir, [])
        finally:
            _held[key][1] -= 1
        return
    fd = _acquire(run_dir)
    _held[key] = [fd, 1]
    try:
        yield RunLock(run_dir, remove_stale_temporaries(run_dir))
    finally:
        del _held[key]
        if fd is not None:
            if created and [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
                try:  # still holding the lock: a process that opened the file meanwhile sees it gone
                    (run_dir / LOCK_NAME).unlink()
                    run_dir.rmdir()
                except OSError:
                    pass
            os.close(fd)


def _acquire(run_dir: Path):
    """Lock ``run_dir/.lock``; return its open file descriptor (None without ``fcntl``)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    path = run_dir / LOCK_NAME
    while True:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_pid(fd)
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            who = f"PID {holder}" if holder else "PID unknown"
            raise RunDirectoryLocked(
                f"run directory {run_dir} is in use by another minimix process ({who}), which holds its lock "
                f"{path}: wait for that run to finish (or stop it), or use another run directory") from None
        # The holder we waited for may have removed the file (and the directory) before releasing
        # it: then our lock is on a file nobody else will open. Only a lock on the file that is
        # at the path counts.
        try:
            ours, there = os.fstat(fd), os.stat(path)
            if (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError):
        return None
