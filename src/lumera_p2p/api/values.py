"""What the value and file endpoints do, apart from HTTP.

``POST /api/v1/values`` hands :meth:`ValueService.put` the request body as a stream of chunks
(with its length when the client sent one); it is gathered (at most ``api.max_value_bytes``)
and stored as one DHT value. ``POST /api/v1/files`` hands :meth:`ValueService.put_file` the
body, which goes to ``P2P.put_file`` a chunk at a time: any size, in bounded memory, the key
naming the file's root manifest. ``GET /api/v1/values/{key}`` streams what
:meth:`ValueService.open` returns: a plain value, or, when the key's value is a file's root
manifest, the file itself (``kind == "file"``), its chunks verified as they are fetched; from
an offset (an HTTP range) for a client resuming a download.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from lumera_p2p.api.models import StoreResult
from lumera_p2p.content import key_from_bytes, key_to_bytes
from lumera_p2p.errors import InvalidContentKey, NotFound, RequestTooLarge
from lumera_p2p.files.manifest import root_manifest
from lumera_p2p.service import P2P

#: Bytes per chunk of a streamed answer.
CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    """What ``GET`` streams: the bytes from ``offset`` of ``size`` in all, whose base58 BLAKE3
    (of all ``size``, from offset 0) is ``content_key``."""

    key: str
    size: int
    content_key: str
    kind: str
    chunks: AsyncIterator[bytes]
    offset: int = 0


class RangeNotSatisfiable(Exception):
    """The requested offset is past the end (HTTP 416); ``size`` is the whole length."""

    def __init__(self, offset: int, size: int) -> None:
        super().__init__(f"offset {offset} is past the end ({size} bytes)")
        self.size = size


def check_key(key: str) -> None:
    """A key of the right shape that is no 32-byte digest names nothing: ``NotFound`` (404)."""
    try:
        key_to_bytes(key)
    except InvalidContentKey as exc:
        raise NotFound(f"no value has key {key}: {exc}") from None


async def _slices(data: bytes, offset: int = 0) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(offset, len(view), CHUNK):
        yield bytes(view[start : start + CHUNK])


class BodyReader:
    """A request body (an async iterator of byte strings) as ``async read(n)``, the stream
    ``P2P.put_file`` reads a chunk at a time; it holds at most one piece beyond what is read."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body
        self._pending = b""
        self._done = False
        self.received = 0

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``b""`` at the end of the body)."""
        while not self._pending and not self._done:
            try:
                self._pending = await anext(self._body)
            except StopAsyncIteration:
                self._done = True
            self.received += len(self._pending)
        if n < 0 or n >= len(self._pending):
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:n], self._pending[n:]
        return out


class ValueService:
    """Stores and serves values for the API (see the module docstring)."""

    def __init__(self, p2p: P2P, max_value_bytes: int) -> None:
        self._p2p = p2p
        self.max_value_bytes = max_value_bytes

    async def put(
        self, body: AsyncIterator[bytes], length: int | None, datatype: int = 0
    ) -> StoreResult:
        """Store what ``body`` yields; ``RequestTooLarge`` past the limit (nothing is stored)."""
        limit = self.max_value_bytes
        if length is not None and length > limit:
            raise RequestTooLarge(
                f"a value is at most {limit} bytes (api.max_value_bytes), got {length}"
            )
        data = bytearray()
        async for chunk in body:
            data += chunk
            if len(data) > limit:
                raise RequestTooLarge(f"a value is at most {limit} bytes (api.max_value_bytes)")
        value = bytes(data)
        del data
        key = await self._p2p.store(value, datatype)
        # ``P2P.store`` returns the key only; when it reports the replicas reached, they go
        # into ``replicas`` here.
        return StoreResult(key=key, size=len(value), kind="value", replicas=None)

    async def put_file(self, body: AsyncIterator[bytes]) -> StoreResult:
        """Store what ``body`` yields as a file (chunks and a manifest; any size).

        A body sent again after an interrupted upload is hashed again, but the chunks this
        node already stored on enough replicas are not sent to them again.
        """
        put = await self._p2p.put_file(BodyReader(body))
        return StoreResult(key=put.key, size=put.size, kind="file", replicas=put.min_acks)

    async def open(self, key: str, local_only: bool = False, offset: int = 0) -> Download:
        """The value of ``key`` as a stream from byte ``offset``, or the file it names when
        it is a file's root manifest; ``NotFound`` when nowhere (or not a key),
        ``RangeNotSatisfiable`` for an offset past the end (an empty file or value has
        only offset 0)."""
        check_key(key)
        value = await self._p2p.retrieve(key, local_only=local_only)
        if value is None:
            raise NotFound(f"no value has key {key} (here or on the nodes asked)")
        root = root_manifest(value)
        size = len(value) if root is None else root.total
        if offset > size or (offset == size and size > 0):
            raise RangeNotSatisfiable(offset, size)
        if root is None:
            # ``retrieve`` hands out only values that hash to their key (checked when they
            # entered this node, and again when they come from a peer): no second hash here.
            return Download(key, size, key, "value", _slices(value, offset), offset)
        assert root.whole is not None  # a root manifest always carries the whole's BLAKE3
        chunks = self._p2p.read_file(key, offset, local_only=local_only)
        return Download(key, size, key_from_bytes(root.whole), "file", chunks, offset)
