"""Reading and writing Kademlia frames on a stream, with deadlines and big work off-loop.

This is the one frame reader: the TCP transport, the server and everything else read frames
with :func:`read_frame` (or its two halves, :func:`read_frame_length` and :func:`read_body`,
when the header and the body need different deadlines). A frame is the 8-byte header and a gob
body (``wire.messages``); the header's length is checked against the protocol limits and the
caller's own before a single body byte is read, and the body is gathered as it arrives, never
preallocated from the declared length, so a header promising 400 MB costs nothing until the
bytes come.

Reading tells apart the cases that matter to a caller: the stream ended *before* a frame (a
clean close between requests, or a stale pooled connection: ``None``), *inside* one (a
``ProtocolError``), or a peer sent too slowly (``TimeoutError``). Any object with an ``async
read(n)`` that returns ``b""`` at the end works: a ``SecureStream`` or an
``asyncio.StreamReader``.

Encoding or decoding a multi-megabyte message takes tens of milliseconds of pure Python; above
:data:`OFF_LOOP_SIZE` it runs in a worker thread so the event loop keeps serving other peers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire.gob import GobDecodeCache
from lumera_p2p.wire.messages import (
    HEADER_SIZE,
    MAX_PAYLOAD_SIZE,
    BatchFindValuesRequest,
    BatchFindValuesResponse,
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    BatchStoreDataRequest,
    FindValueResponse,
    Message,
    ReplicateDataRequest,
    StoreDataRequest,
    decode_body,
    encode_message,
    parse_header,
)

#: Messages (estimated) and bodies larger than this are encoded / decoded in a worker thread.
OFF_LOOP_SIZE: Final = 1024 * 1024
#: Bodies larger than this are read into one buffer and decoded in place on the server
#: (:func:`read_body_view`); byte fields at least this large then stay views into it.
VIEW_MIN: Final = 64 * 1024
_READ_CHUNK: Final = 1024 * 1024
#: Frames are handed to the stream this many bytes at a time (see :func:`write_frame`).
WRITE_CHUNK: Final = 4 * 1024 * 1024
#: Rough wire size of one hex key in a key list (64 characters and gob's length byte).
_KEY_SIZE: Final = 66

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    """What reading frames needs from a stream (a ``SecureStream``, an ``asyncio.StreamReader``)."""

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes; ``b""`` at the end of the stream."""
        ...


class FrameStream(FrameSource, Protocol):
    """What reading and writing frames needs from a stream (a ``SecureStream``)."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``."""
        ...

    async def drain(self) -> None:
        """Wait until the queued data is on its way."""
        ...


def payload_hint(msg: Message) -> int:
    """Bytes of bulk data ``msg`` carries (values, keys), without encoding it; 0 if small."""
    data = msg.data
    if isinstance(data, StoreDataRequest):
        return len(data.data)
    if isinstance(data, FindValueResponse):
        return len(data.value)
    if isinstance(data, BatchFindValuesResponse):
        return len(data.response)
    if isinstance(data, BatchStoreDataRequest):
        return sum(len(item) for item in data.data)
    if isinstance(data, BatchGetValuesRequest | BatchGetValuesResponse):
        entries = data.data or {}
        return sum(_KEY_SIZE + len(kv.value) for kv in entries.values())
    if isinstance(data, ReplicateDataRequest | BatchFindValuesRequest):
        return _KEY_SIZE * len(data.keys)
    return 0


async def encode_frame(msg: Message, off_loop_size: int = OFF_LOOP_SIZE) -> bytes:
    """The whole frame for ``msg``; large messages are encoded in a worker thread."""
    if payload_hint(msg) > off_loop_size:
        return await asyncio.to_thread(encode_message, msg)
    return encode_message(msg)


async def decode_frame_body(
    body: bytes | memoryview,
    cache: GobDecodeCache | None = None,
    off_loop_size: int = OFF_LOOP_SIZE,
    *,
    views_from: int = 0,
) -> Message:
    """Decode one frame body; raise ``ProtocolError`` for anything that is not a message.

    ``cache`` speeds up small messages and is only used on the event loop's thread (it is not
    meant to be shared between threads). With a ``memoryview`` body and ``views_from``, byte
    fields of at least ``views_from`` bytes are views into the body, not copies. A decoder
    failure other than ``ProtocolError`` is a bug in the codec, but it is still the peer's
    bytes that triggered it: it is logged and reported as a protocol error, so one peer
    cannot crash the connection handling.
    """
    try:
        if len(body) > off_loop_size:
            return await asyncio.to_thread(decode_body, body, views_from=views_from)
        return decode_body(body, cache=cache, views_from=views_from)
    except ProtocolError:
        raise
    except Exception as exc:
        log.warning("gob decoder failed on a %d-byte body", len(body), exc_info=True)
        raise ProtocolError(f"undecodable message: {exc!r}") from exc


async def read_header(stream: FrameSource) -> bytes | None:
    """The next 8-byte frame header; ``None`` if the stream ended before its first byte.

    A reset before the first byte also counts as an end (``None``): for a pooled connection
    both mean the peer closed it while idle. Ending inside the header is a ``ProtocolError``.
    """
    header = b""
    while len(header) < HEADER_SIZE:
        try:
            chunk = await stream.read(HEADER_SIZE - len(header))
        except ConnectionError:
            if not header:
                return None
            raise
        if not chunk:
            if not header:
                return None
            raise ProtocolError("connection closed inside a frame header")
        header += chunk
    return header


async def read_frame_length(stream: FrameSource, *, max_size: int = MAX_PAYLOAD_SIZE) -> int | None:
    """The body length the next frame's header declares; ``None`` at a clean end before it.

    Refused (``ProtocolError``) as Go refuses it when over the protocol limits, and when over
    ``max_size``, before anything else is read.
    """
    header = await read_header(stream)
    if header is None:
        return None
    length = parse_header(header)
    if length > max_size:
        raise ProtocolError(
            f"payload too big: a {length}-byte frame is over our limit of {max_size} bytes"
        )
    return length


async def read_body(
    stream: FrameSource, length: int, *, grace: float | None = None, min_rate: float = 1.0
) -> bytes:
    """Exactly ``length`` bytes of frame body; ``ProtocolError`` if the stream ends first.

    With ``grace``, the peer must deliver the body at ``min_rate`` bytes/s on average after
    ``grace`` seconds: the deadline starts at ``now + grace`` and moves ``1 / min_rate`` s
    later with every byte received. ``TimeoutError`` if it passes. A silent peer is thus
    dropped after ``grace`` whatever length it declared, and a fast one never hits it.
    """
    if length == 0:
        return b""
    parts: list[bytes] = []
    got = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + grace if grace is not None else None
    async with asyncio.timeout_at(start) as deadline:
        while got < length:
            chunk = await stream.read(length - got)
            if not chunk:
                raise ProtocolError("connection closed inside a frame body")
            parts.append(chunk)
            got += len(chunk)
            if start is not None:
                deadline.reschedule(start + got / min_rate)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def read_frame(
    stream: FrameSource,
    *,
    max_size: int = MAX_PAYLOAD_SIZE,
    grace: float | None = None,
    min_rate: float = 1.0,
) -> bytes | None:
    """The next frame's body; ``None`` if the stream ended cleanly before a frame.

    :func:`read_frame_length` then :func:`read_body` (``grace`` and ``min_rate`` are the body's
    deadline, see there).
    """
    length = await read_frame_length(stream, max_size=max_size)
    if length is None:
        return None
    return await read_body(stream, length, grace=grace, min_rate=min_rate)


async def read_message(
    stream: FrameSource,
    *,
    max_size: int = MAX_PAYLOAD_SIZE,
    cache: GobDecodeCache | None = None,
    off_loop_size: int = OFF_LOOP_SIZE,
) -> Message | None:
    """Read and decode the next frame; ``None`` at a clean end of stream."""
    body = await read_frame(stream, max_size=max_size)
    return None if body is None else await decode_frame_body(body, cache, off_loop_size)


async def read_body_view(
    stream: FrameSource, length: int, *, grace: float | None = None, min_rate: float = 1.0
) -> bytes | memoryview:
    """Like :func:`read_body`, but a body over :data:`VIEW_MIN` bytes is read into one buffer
    of exactly ``length`` bytes, allocated up front, and returned as a read-only view.

    For the server, which has reserved ``length`` in its memory budget before calling this:
    gathering chunks and joining them holds the body twice, and so does decoding values out
    of it; with the buffer and :func:`decode_frame_body`'s ``views_from``, once. The buffer's
    pages are only touched as bytes arrive, so a frame that never comes costs little.
    """
    if length <= VIEW_MIN:
        return await read_body(stream, length, grace=grace, min_rate=min_rate)
    buf = bytearray(length)
    got = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + grace if grace is not None else None
    with memoryview(buf) as view:
        async with asyncio.timeout_at(start) as deadline:
            while got < length:
                chunk = await stream.read(min(length - got, _READ_CHUNK))
                if not chunk:
                    raise ProtocolError("connection closed inside a frame body")
                view[got : got + len(chunk)] = chunk
                got += len(chunk)
                if start is not None:
                    deadline.reschedule(start + got / min_rate)
    return memoryview(buf).toreadonly()


async def write_frame(stream: FrameStream, frame: bytes, timeout: float | None = None) -> None:
    """Send ``frame`` and wait until the transport has taken it; ``TimeoutError`` after
    ``timeout`` (a peer that does not read its answer must not hold us).

    A large frame goes out :data:`WRITE_CHUNK` bytes at a time, each after the transport has
    room again: handed over whole, its sealed copy would sit in the transport's buffer next
    to it (asyncio up to 3.11 copies what it cannot send at once), doubling what a slow
    reader makes us hold.
    """
    async with asyncio.timeout(timeout):
        if len(frame) <= WRITE_CHUNK:
            stream.write(frame)
            await stream.drain()
            return
        with memoryview(frame) as view:
            for start in range(0, len(view), WRITE_CHUNK):
                stream.write(view[start : start + WRITE_CHUNK])
                await stream.drain()
