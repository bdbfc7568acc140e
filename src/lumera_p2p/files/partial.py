"""A destination being written: ``DEST.lumera-part`` and its sidecar ``DEST.lumera-part.json``.

The sidecar names the file's key (and, as a hint for people, its size and the bytes written):
a partial file is only ever resumed for the key it was started for. What the partial file holds
is checked by whoever resumes it (``get_file`` against the manifest's chunk keys, a client
against the whole file's hash), never trusted from the sidecar. The destination itself appears
only at :meth:`PartialFile.finish`, by an atomic rename, once the writer has verified the whole.

Blocking file calls: the async callers run them in a worker thread.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path
from typing import BinaryIO

PART_SUFFIX = ".lumera-part"
STATE_SUFFIX = ".lumera-part.json"
_FORMAT = "lumera-p2p partial file"
_VERSION = 1
_MAX_STATE = 4096


def partial_paths(dest: Path) -> tuple[Path, Path]:
    """The partial file and its sidecar for a destination."""
    return dest.with_name(dest.name + PART_SUFFIX), dest.with_name(dest.name + STATE_SUFFIX)


def _sidecar_key(path: Path) -> str | None:
    """The key a sidecar names; None if it is missing, unreadable or not ours."""
    try:
        with path.open("rb") as f:
            doc = json.loads(f.read(_MAX_STATE))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        return None
    key = doc.get("key")
    return key if doc.get("version") == _VERSION and isinstance(key, str) else None


class PartialFile:
    """The partial file of one destination and one key (see the module docstring)."""

    def __init__(self, dest: Path, key: str, size: int, stream: BinaryIO, kept: int) -> None:
        self.dest = dest
        self.key = key
        self.size = size
        self.path, self.state_path = partial_paths(dest)
        self.stream = stream
        #: Bytes found in a partial file of the same key when opened (0 for a fresh start):
        #: a candidate prefix, to be checked by the caller before it counts.
        self.found = kept
        self._noted = -1

    @classmethod
    def open(cls, dest: Path, key: str, size: int) -> PartialFile:
        """Reopen the partial file of ``key`` at ``dest``, or start a new one (a partial file
        of another key, or without its sidecar, is replaced)."""
        if dest.is_dir():
            raise IsADirectoryError(errno.EISDIR, "the destination is a directory", str(dest))
        part, state = partial_paths(dest)
        stream = part.open("a+b")  # created if missing, never truncated before the lock
        try:
            # Two gets into one destination would interleave their writes: the second is
            # refused while the first holds the lock (the kernel drops it with the process).
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.close()
            raise BlockingIOError(
                errno.EWOULDBLOCK, "another transfer is writing this destination", str(part)
            ) from None
        resumable = _sidecar_key(state) == key
        found = os.fstat(stream.fileno()).st_size if resumable else 0
        if not resumable:
            stream.truncate(0)
        stream.seek(0)
        partial = cls(dest, key, size, stream, found)
        partial.note(0)
        return partial

    def keep(self, length: int) -> None:
        """Keep the first ``length`` bytes (those the caller verified); write on from there."""
        self.stream.seek(length)
        self.stream.truncate()

    def read(self, length: int) -> bytes:
        """The next ``length`` bytes of the partial file (to verify what it holds)."""
        return self.stream.read(length)

    def write(self, data: bytes) -> None:
        """Append verified bytes."""
        self.stream.write(data)

    def note(self, done: int) -> None:
        """Rewrite the sidecar with ``done`` bytes written (a hint; atomic by rename)."""
        if done == self._noted:
            return
        doc = {"format": _FORMAT, "version": _VERSION, "key": self.key, "size": self.size}
        doc["written"] = done
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps(doc, sort_keys=True) + "\n")
        os.replace(tmp, self.state_path)
        self._noted = done

    def finish(self) -> None:
        """Flush to disk, rename onto the destination, drop the sidecar."""
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        os.replace(self.path, self.dest)
        self.state_path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove the partial file and its sidecar (what it holds is wrong)."""
        self.stream.close()
        self.path.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close, keeping the partial file and sidecar for a later resume."""
        self.stream.close()
