"""What the value endpoints do, apart from HTTP: the seam where chunked files come in.

``PUT``/``POST /api/v1/values`` hands :meth:`ValueService.put` the request body as a stream of
chunks (with its length when the client sent one), and ``GET /api/v1/values/{key}`` streams
what :meth:`ValueService.open` returns. Today every value is one DHT value, so ``put`` gathers
the stream (at most ``api.max_value_bytes``) and calls ``P2P.store``, and ``open`` serves one
``P2P.retrieve``. Once ``P2P.put_file``/``get_file`` exist, ``put`` decides here, by size,
between a single value and a chunked file (``StoreResult.kind == "file"``), and ``open``
streams a file's chunks; the HTTP layer and the client commands stay as they are (the client
already sends a stream and checks what it receives against ``Download.content_key``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from lumera_p2p.api.models import StoreResult
from lumera_p2p.content import content_key, key_to_bytes
from lumera_p2p.errors import InvalidContentKey, NotFound, RequestTooLarge
from lumera_p2p.service import P2P

#: Bytes per chunk of a streamed answer.
CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    """What ``GET`` streams: ``size`` bytes whose base58 BLAKE3 is ``content_key``."""

    key: str
    size: int
    content_key: str
    kind: str
    chunks: AsyncIterator[bytes]


async def _slices(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start : start + CHUNK])


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

    async def open(self, key: str, local_only: bool = False) -> Download:
        """The value of ``key`` as a stream; ``NotFound`` when nowhere (or not a key)."""
        try:
            key_to_bytes(key)
        except InvalidContentKey as exc:
            raise NotFound(f"no value has key {key}: {exc}") from None
        value = await self._p2p.retrieve(key, local_only=local_only)
        if value is None:
            raise NotFound(f"no value has key {key} (here or on the nodes asked)")
        return Download(key, len(value), content_key(value), "value", _slices(value))
