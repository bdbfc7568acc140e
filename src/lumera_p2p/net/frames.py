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

Small frames have a fast path beside these readers: :func:`small_frames` makes the framer
with which ``SecureStream.frame_future`` takes a whole small frame straight from the record
layer when it arrived in one record (no coroutine per read, no timeout object per read), and
:func:`decode_frame_now` decodes it without an ``await``. Whatever it does not take (a larger
frame, one split across records, a header that is not one) is read by the readers here from
the same byte on, with every check they make.

A value is not copied on its way through here: an encoded frame (:class:`Frame`) holds its
large byte fields by reference and :func:`write_frame` hands them to the stream in slices; a
large body is read into one buffer of its declared size and decoded with its values as views
into it (:func:`read_body_view`, ``views_from``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

from lumera_p2p.errors import LumeraP2PError, ProtocolError
from lumera_p2p.wire.gob import GobDecodeCache
from lumera_p2p.wire.messages import (
    HEADER_SIZE,
    MAX_PAYLOAD_SIZE,
    BatchFindNodeRequest,
    BatchFindNodeResponse,
    BatchFindValuesRequest,
    BatchFindValuesResponse,
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    BatchStoreDataRequest,
    FindNodeRequest,
    FindNodeResponse,
    FindValueRequest,
    FindValueResponse,
    Message,
    MessageType,
    ReplicateDataRequest,
    ReplicateDataResponse,
    StoreDataRequest,
    StoreDataResponse,
    decode_body,
    encode_frame_joined,
    encode_message_parts,
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
#: A frame up to this size is joined into one buffer before it is written.
JOIN_BELOW: Final = 64 * 1024
#: Rough wire size of one hex key in a key list (64 characters and gob's length byte).
_KEY_SIZE: Final = 66
#: The largest answer to a request that brings back no values (Ping, StoreData, FindNode,
#: Replicate, BatchStoreData): a Go node's FindNode answer holds 20 nodes, about 3 KB.
SMALL_RESPONSE: Final = 1024 * 1024
#: What each BatchFindNode target may add to that (20 nodes of a few hundred bytes each).
_TARGET_RESPONSE: Final = 64 * 1024
#: Request types whose answers carry values, up to the protocol's limit.
_VALUE_ANSWERS: Final = frozenset(
    {MessageType.FIND_VALUE, MessageType.BATCH_FIND_VALUES, MessageType.BATCH_GET_VALUES}
)

#: Message bodies that never carry bulk data (``payload_hint`` 0).
_NO_BULK: Final = frozenset(
    {
        FindNodeRequest,
        FindNodeResponse,
        FindValueRequest,
        StoreDataResponse,
        ReplicateDataResponse,
        BatchFindNodeRequest,
        BatchFindNodeResponse,
    }
)

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
    if data is None or type(data) in _NO_BULK:  # most messages: one look-up
        return 0
    if isinstance(data, StoreDataRequest):
        return len(data.data)
    if isinstance(data, FindValueResponse):
        return 0 if isinstance(data.value, LazyBytes) else len(data.value)
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


def response_limit(request: Message, max_size: int = MAX_PAYLOAD_SIZE) -> int:
    """The largest answer body a client reads for ``request`` (at most ``max_size``): a peer
    that answers a FindNode with hundreds of megabytes of nodes has its connection closed on
    the header, before the body is read, like any over-long frame."""
    if request.message_type in _VALUE_ANSWERS:
        return max_size
    if request.message_type == MessageType.BATCH_FIND_NODE:
        data = request.data
        targets = len(data.hashed_target) if isinstance(data, BatchFindNodeRequest) else 0
        return min(max_size, SMALL_RESPONSE + _TARGET_RESPONSE * targets)
    return min(max_size, SMALL_RESPONSE)


class LazyBytes:
    """A value that stands in an answer by its size and is read only as it is sent.

    A server answers a FindValue of a large value with one (``dht.server``): the frame's
    header, which needs only the size, goes out at once instead of after the whole value
    has been read from disk, and the value passes through in :data:`WRITE_CHUNK` slices,
    never held whole. The generated encoder keeps it by reference among the frame's parts
    (it only asks its length); :func:`write_frame` reads it with ``read(offset, length)``.
    """

    __slots__ = ("_read", "size")

    def __init__(self, size: int, read: Callable[[int, int], Awaitable[bytes]]) -> None:
        self.size = size
        self._read = read

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    async def write_to(self, stream: FrameStream) -> None:
        """Read the value slice by slice and write each to ``stream``; ``ProtocolError`` (so
        the connection is dropped: the frame cannot be completed) if it changed meanwhile."""
        for start in range(0, self.size, WRITE_CHUNK):
            want = min(WRITE_CHUNK, self.size - start)
            try:
                data = await self._read(start, want)
            except LumeraP2PError as exc:
                raise ProtocolError(f"a value being sent went away: {exc}") from exc
            if len(data) != want:
                raise ProtocolError("a value being sent changed size")
            stream.write(data)
            await stream.drain()


Chunk = bytes | bytearray | memoryview | LazyBytes


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded frame (header and body) as buffers to send in order; large values among
    them by reference (``wire.messages.encode_message_parts``)."""

    parts: tuple[Chunk, ...]
    size: int

    @classmethod
    def of(cls, msg: Message) -> Frame:
        """The frame for ``msg``, encoded on this thread."""
        parts, size = encode_message_parts(msg)
        return cls(tuple(parts), size)

    def __len__(self) -> int:
        return self.size

    def tobytes(self) -> bytes:
        """The frame as one ``bytes`` (a copy: tests and small frames; not one with a
        :class:`LazyBytes` part, which exists only as it is sent)."""
        if any(isinstance(p, LazyBytes) for p in self.parts):
            raise TypeError("a frame with a lazy value has no bytes until it is sent")
        return b"".join(p for p in self.parts if not isinstance(p, LazyBytes))


def encode_now(msg: Message) -> Frame | bytes:
    """The frame for ``msg``, encoded on this thread: a small one (up to :data:`JOIN_BELOW`
    bytes, no lazy value) as one ``bytes``, to be sent at once (what :func:`joined` would
    make of its :class:`Frame`); any other as a :class:`Frame`."""
    encoded = encode_frame_joined(msg, JOIN_BELOW)
    if isinstance(encoded, bytes):
        return encoded
    parts, size = encoded
    return Frame(tuple(parts), size)


async def encode_frame(msg: Message, off_loop_size: int = OFF_LOOP_SIZE) -> Frame:
    """The frame for ``msg``; messages with a lot of bulk data are encoded in a worker thread
    (their values are referenced, not copied, so this is the cost of the rest)."""
    if payload_hint(msg) > off_loop_size:
        return await asyncio.to_thread(Frame.of, msg)
    return Frame.of(msg)


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
    if len(body) > off_loop_size:
        try:
            return await asyncio.to_thread(decode_body, body, views_from=views_from)
        except ProtocolError:
            raise
        except Exception as exc:
            raise _decoder_failed(len(body), exc) from exc
    return decode_frame_now(body, cache, views_from=views_from)


def decode_frame_now(
    body: bytes | memoryview,
    cache: GobDecodeCache | None = None,
    *,
    start: int = 0,
    views_from: int = 0,
) -> Message:
    """:func:`decode_frame_body` on this thread, for a small body (``body[start:]``): the
    same errors, without an ``await``."""
    try:
        return decode_body(body, start=start, cache=cache, views_from=views_from)
    except ProtocolError:
        raise
    except Exception as exc:
        raise _decoder_failed(len(body) - start, exc) from exc


def _decoder_failed(size: int, exc: Exception) -> ProtocolError:
    log.warning("gob decoder failed on a %d-byte body", size, exc_info=exc)
    return ProtocolError(f"undecodable message: {exc!r}")


def small_frames(limit: int) -> Callable[[memoryview], int]:
    """A framer for ``SecureStream.frame_future``: the size of the whole frame (header and a
    body of at most ``limit`` bytes) at the start of the plaintext, else -1.

    -1 sends the caller to the ordinary readers (:func:`read_frame_length` and the body
    readers), which start at the same byte and apply every check: a larger body, a frame
    split across record frames, a header that is not one. So the header is parsed here only
    as far as a body within ``limit`` needs (a uvarint of up to three bytes; Go ignores the
    padding after it), never refused here.
    """
    if limit >= 1 << 21:
        raise ValueError("the small-frame limit must be under 2 MiB")

    def framer(view: memoryview) -> int:
        available = len(view)
        if available < HEADER_SIZE:
            return -1
        b = view[0]
        if b < 0x80:
            length = b
        else:
            length = b & 0x7F
            b = view[1]
            if b < 0x80:
                length |= b << 7
            else:
                length |= (b & 0x7F) << 7
                b = view[2]
                if b >= 0x80:
                    return -1
                length |= b << 14
        end = HEADER_SIZE + length
        if length > limit or available < end:
            return -1
        return end

    return framer


def joined(frame: Frame) -> bytes | bytearray | memoryview | None:
    """A small frame (up to :data:`JOIN_BELOW` bytes, no lazy value) as one buffer, to be
    written at once; None for any other (written by :func:`write_frame`)."""
    if frame.size > JOIN_BELOW:
        return None
    parts = frame.parts
    if len(parts) == 1:
        only = parts[0]
        return None if isinstance(only, LazyBytes) else only
    for part in parts:
        if isinstance(part, LazyBytes):
            return None
    return b"".join(parts)  # type: ignore[arg-type]


def detach_views(msg: Message) -> Message:
    """``msg`` with every value that is a view into its frame body copied out as ``bytes``.

    For the client: its callers keep values (a retrieve returns one, a replication fetch
    stores them) and expect ``bytes``; one copy each, after which the body can go. The
    server does not detach: its requests' values are stored straight from the body.
    """
    data = msg.data
    if isinstance(data, FindValueResponse) and isinstance(data.value, memoryview):
        data.value = bytes(data.value)
    elif isinstance(data, BatchFindValuesResponse) and isinstance(data.response, memoryview):
        data.response = bytes(data.response)
    elif isinstance(data, BatchGetValuesRequest | BatchGetValuesResponse):
        for entry in (data.data or {}).values():
            if isinstance(entry.value, memoryview):
                entry.value = bytes(entry.value)
    elif isinstance(data, StoreDataRequest) and isinstance(data.data, memoryview):
        data.data = bytes(data.data)
    elif isinstance(data, BatchStoreDataRequest):
        data.data = [bytes(v) if isinstance(v, memoryview) else v for v in data.data]
    return msg


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


async def write_frame(
    stream: FrameStream, frame: Frame | bytes, timeout: float | None = None
) -> None:
    """Send ``frame`` and wait until the transport has taken it; ``TimeoutError`` after
    ``timeout`` (a peer that does not read its answer must not hold us).

    A large part goes out :data:`WRITE_CHUNK` bytes at a time, each after the transport has
    room again: handed over whole, its sealed copy would sit in the transport's buffer next
    to it (asyncio up to 3.11 copies what it cannot send at once), doubling what a slow
    reader makes us hold. Small parts are gathered by the stream into one record.
    """
    parts = frame.parts if isinstance(frame, Frame) else (frame,)
    if len(parts) > 1 and len(frame) <= JOIN_BELOW:
        # A small frame's many small parts (header, gob fields) as one write: the stream
        # would gather them anyway, at a call and a buffer append each.
        eager = [p for p in parts if not isinstance(p, LazyBytes)]
        if len(eager) == len(parts):
            parts = (b"".join(eager),)
    async with asyncio.timeout(timeout):
        drained = False
        for part in parts:
            if isinstance(part, LazyBytes):
                await part.write_to(stream)
                drained = True
                continue
            if len(part) <= WRITE_CHUNK:
                stream.write(part)
                drained = False
                continue
            with memoryview(part) as whole, whole.cast("B") as view:
                for start in range(0, len(view), WRITE_CHUNK):
                    stream.write(view[start : start + WRITE_CHUNK])
                    await stream.drain()
            drained = True
        if not drained:
            await stream.drain()
