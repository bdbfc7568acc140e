"""An exclusive lock on ``data_dir``, so that two processes never run on one store and identity.

``flock`` on ``data_dir/lumera-p2p.lock``, held for the store's lifetime. The kernel drops the
lock when the holder exits however it exits (SIGKILL included), so a stale lock file never
blocks a restart; the file itself stays, and only records the holder's PID for the message a
second process prints. The lock is per open file, so a second store in the same process is
refused too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from lumera_p2p.errors import DataDirLocked, StoreError

LOCK_FILE = "lumera-p2p.lock"
#: The most of the lock file read for the holder's PID (it holds a short decimal number).
_MAX_PID_TEXT = 32


class DataDirLock:
    """The held lock; :meth:`release` (or process exit) lets another process take it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: Path) -> DataDirLock:
        """Take the lock without waiting; raise ``DataDirLocked`` naming the path and holder."""
        path = directory / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"{path}: cannot open the data directory's lock file ({exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _recorded_pid(fd)
            os.close(fd)
            by = f"process {holder}" if holder is not None else "another process"
            raise DataDirLocked(
                f"{directory}: the data directory is in use by {by} (it holds {path}); "
                "stop that node or give this one its own p2p.data_dir"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"{path}: cannot lock the data directory ({exc})") from exc
        # Best effort: the PID only improves the message another process prints.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Let the lock go (idempotent). The file stays: removing it would race a new holder."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _recorded_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, _MAX_PID_TEXT, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and len(text) <= 10 else None
