"""Where a put's bytes come from: a path, a binary file object, or an async reader.

Each is read one chunk at a time (exactly ``chunk_size`` bytes except the last), and each chunk
is hashed as it is read, into its key and into the whole file's running BLAKE3: nothing is
ever read twice, and no more than one chunk is held here. Blocking reads run in a worker
thread, so a slow disk or pipe never stalls the node's event loop.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast, runtime_checkable

import blake3

from lumera_p2p.content import digest


@runtime_checkable
class AsyncReader(Protocol):
    """Anything with ``await read(n)`` returning up to ``n`` bytes, ``b""`` at the end
    (``asyncio.StreamReader``, an HTTP request body)."""

    async def read(self, n: int = -1) -> bytes: ...


#: What ``put_file`` accepts.
Source = str | os.PathLike[str] | BinaryIO | AsyncReader


@dataclass(frozen=True)
class Chunk:
    """One chunk read: its bytes and BLAKE3 key."""

    key: bytes
    data: bytes


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes: short only at the end of the stream (pipes return less)."""
    first = stream.read(size)
    if not first or len(first) == size:
        return first or b""
    parts = [first]
    got = len(first)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class ChunkSource:
    """Reads a source chunk by chunk (see the module docstring). Use as ``async with``."""

    def __init__(self, source: Source, chunk_size: int) -> None:
        self._chunk_size = chunk_size
        self._whole = blake3.blake3()
        self._owned: BinaryIO | None = None
        self._sync: BinaryIO | None = None
        self._async: AsyncReader | None = None
        #: Bytes in the source when known (a path or a seekable file), for progress.
        self.size: int | None = None
        self.read_bytes = 0
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            self._owned = self._sync = path.open("rb")
            self.size = os.fstat(self._owned.fileno()).st_size
            self.name = str(path)
        elif isinstance(source, AsyncReader) and asyncio.iscoroutinefunction(source.read):
            self._async = source
            self.name = "<stream>"
        else:
            stream = cast(BinaryIO, source)
            self._sync = stream
            self.name = str(getattr(stream, "name", "<stream>"))
            self.size = _remaining(stream)

    async def __aenter__(self) -> ChunkSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file this opened (a caller's stream is left open)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def whole_digest(self) -> bytes:
        """BLAKE3 of everything read so far."""
        return self._whole.digest()

    async def next(self) -> Chunk | None:
        """The next chunk, or None at the end."""
        if self._sync is not None:
            return await asyncio.to_thread(self._next_sync, self._sync)
        assert self._async is not None
        parts: list[bytes] = []
        got = 0
        while got < self._chunk_size:
            piece = await self._async.read(self._chunk_size - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return await asyncio.to_thread(self._hashed, b"".join(parts)) if got else None

    def _next_sync(self, stream: BinaryIO) -> Chunk | None:
        data = _read_exact(stream, self._chunk_size)
        return self._hashed(data) if data else None

    def _hashed(self, data: bytes) -> Chunk:
        if len(data) > self._chunk_size:
            raise ValueError(f"the source returned {len(data)} bytes for a read of fewer")
        self._whole.update(data)
        self.read_bytes += len(data)
        return Chunk(digest(data), data)


def _remaining(stream: BinaryIO) -> int | None:
    """Bytes left in a seekable regular file, or None (a pipe, a socket, a terminal)."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = os.fstat(stream.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        return None
    return max(0, end - here)
