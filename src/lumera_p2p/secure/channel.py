"""asyncio glue: a TCP connection that runs the handshake, then carries record frames.

One ``asyncio.BufferedProtocol`` per connection receives straight into the
:class:`~lumera_p2p.secure.record.RecordReader` buffer (no intermediate ``bytes``), serves the
handshake's exact reads from it, and after the handshake opens frames in place. Writes are
sealed straight into one buffer per frame and handed to the transport in one call; small
writes made in the same loop iteration are coalesced into one frame.

A whole small message that lies in the plaintext of one record can be taken at once
(:meth:`SecureStream.frame_future`): the protocol resolves one future when it is decrypted,
bounded by one timer per connection, and ``send_now`` seals a whole message into one record
and hands it over at once; everything else goes through ``read`` and ``write``.

Two entry points: :func:`secure_connect` (client) returns a :class:`SecureStream`;
:func:`start_secure_server` (server, the one path production and tests share) hands each
accepted connection to its owner as an :class:`IncomingConnection`, whose ``handshake`` returns
the :class:`SecureStream`. The owner decides before the handshake whether to admit the peer.

Only public asyncio API is used, and the transport is duck-typed (any event loop's transport
with the ``asyncio.Transport`` methods works).

A connection reset at a frame boundary reads as a clean end of stream, like EOF: a peer that
closes while our bytes are still unread in its socket makes its kernel answer with RST instead
of FIN (the Go server does exactly that after refusing a handshake: wire-protocol.md §2.7 and
the secure vectors' README, "Looks like EOF"). The close is the message either way.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from lumera_p2p.errors import HandshakeTimeoutError, ProtocolError
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.secure.handshake import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    HandshakeResult,
    PeerType,
    PeerVerifier,
    client_handshake,
    server_handshake,
)
from lumera_p2p.secure.p256 import EphemeralKey
from lumera_p2p.secure.record import (
    FAST_PATH_MIN,
    FRAME_OVERHEAD,
    MAX_PAYLOAD,
    RecordCrypto,
    RecordReader,
    RecordWriter,
    Side,
    payload_sizes,
)

#: Writes under this size are gathered (until the next loop iteration or ``drain``) into one
#: frame; larger ones up to ``_GATHER_MAX`` see there, and beyond that they are sealed at once,
#: straight from the caller's buffer.
_COALESCE_LIMIT: Final = 64 * 1024
#: Writes from ``_COALESCE_LIMIT`` to this size (a batch message's 64 KiB values and the
#: small parts between them) are gathered into one buffer of ``MAX_PAYLOAD`` bytes, reused
#: until the burst ends: one frame per ~15 values instead of two (one seal, one HChaCha20,
#: one transport write each), which cut the sender's main-thread CPU in bench/network.py.
_GATHER_MAX: Final = 256 * 1024
#: Transport write buffer limits: room for a couple of 1 MiB frames, so the kernel socket
#: buffer never runs dry while the next frame is being sealed.
_WRITE_HIGH: Final = 4 * 1024 * 1024
_WRITE_LOW: Final = 1024 * 1024
_READ_ALL_CHUNK: Final = MAX_PAYLOAD
#: Frames at least this large are sealed into the reusable scratch buffer.
_SCRATCH_MIN: Final = 64 * 1024
#: A scratch buffer unused this long is dropped: pooled idle connections hold no megabyte.
_SCRATCH_IDLE: Final = 1.0

#: ``framer(plaintext)``: the size of the whole message at the start of ``plaintext`` if
#: the fast path may take it, else -1 (too large, incomplete, not a message: read it slowly).
Framer = Callable[[memoryview], int]
#: ``_find_frame``: nothing is here yet.
_WAIT: Final = object()

log = logging.getLogger(__name__)


def _transport_copies(transport: asyncio.BaseTransport) -> bool:
    """True if ``transport.write`` never keeps a reference to the caller's buffer.

    CPython's selector socket transport copies unsent bytes into its own bytearray up to 3.11;
    from 3.12 it queues a memoryview of the caller's buffer (zero-copy), and other event loops
    make no promise. Only in the first case may a buffer be reused right after ``write``.
    """
    return (
        sys.version_info < (3, 12)
        and type(transport).__module__ == "asyncio.selector_events"
        and type(transport).__name__ == "_SelectorSocketTransport"
    )


class _SecureProtocol(asyncio.BufferedProtocol):
    """Per-connection state shared by the handshake and the record layer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader = RecordReader()
        self.writer: RecordWriter | None = None
        self._raw_need = 0  # handshake phase: bytes a reader is waiting for
        self._eof = False
        self._lost_exc: BaseException | None = None
        self._error: ProtocolError | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self._drain_waiters: deque[asyncio.Future[None]] = deque()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._pushback = b""  # plaintext handed back by a cancelled readexactly
        self._copying = False  # does transport.write copy what it cannot send at once?
        self._scratch: bytearray | None = None  # reusable frame buffer (large frames)
        self._in_flight: bytearray | None = None  # scratch still referenced by the transport
        self._scratch_used = 0.0
        self._scratch_timer: asyncio.TimerHandle | None = None
        # A whole-message wait (``frame_future``): the future, what finds a message in the
        # plaintext, and the one timer that bounds it (kept across waits; see _arm_timer).
        self._frame_waiter: asyncio.Future[bytes | None] | None = None
        self._framer: Framer | None = None
        self._frame_deadline = 0.0
        self._frame_timer: asyncio.TimerHandle | None = None
        self._frame_timer_at = 0.0

    # --- asyncio.BufferedProtocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: any loop's stream transport (uvloop's is not an asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Go sets NoDelay and keep-alive; asyncio already sets TCP_NODELAY.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH, low=_WRITE_LOW)
        self._copying = _transport_copies(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        paused = self.reader.buffer_updated(nbytes)
        if paused and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        if self._frame_waiter is not None:
            self._poll_frame()
        elif self._read_waiter is not None and self._can_progress():
            self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._end_frame_wait(None)
        self._wake_reader()
        return True  # keep the write side open; the owner closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost_exc = exc
        if self._scratch_timer is not None:
            self._scratch_timer.cancel()
            self._scratch_timer = None
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None
        self._scratch = self._in_flight = None
        self._end_frame_wait(None)
        self._wake_reader()
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if not self._closed.done():
            self._closed.set_result(None)

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # --- helpers ------------------------------------------------------------------------

    def _can_progress(self) -> bool:
        if self.writer is None:
            return self.reader.buffered >= self._raw_need
        try:
            return self.reader.plaintext_ready > 0 or self.reader.frame_ready()
        except ProtocolError:
            return True  # let the reader raise it

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None:
            self._read_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_readable(self) -> None:
        if self._read_waiter is not None or self._frame_waiter is not None:
            raise RuntimeError("another coroutine is already reading from this stream")
        if self._read_paused:
            self._resume_reading()
        waiter = self._loop.create_future()
        self._read_waiter = waiter
        try:
            await waiter
        finally:
            self._read_waiter = None

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self.reader.should_pause:
            self._read_paused = False
            self.transport.resume_reading()

    def fail(self, exc: ProtocolError) -> ProtocolError:
        """Remember a protocol error and drop the connection at once (no graceful close)."""
        if self._error is None:
            self._error = exc
        if self.transport is not None:
            self.transport.abort()
        return exc

    @property
    def closed(self) -> asyncio.Future[None]:
        return self._closed

    @property
    def error(self) -> ProtocolError | None:
        return self._error

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._loop.call_soon(callback)

    def transport_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def reader_pushback(self, data: bytes) -> None:
        """Put plaintext back in front of the stream (a cancelled ``readexactly``)."""
        self._pushback = data + self._pushback

    def at_eof(self) -> bool:
        return self._eof and not self._pushback and self.reader.at_frame_boundary()

    # --- handshake phase: raw bytes -----------------------------------------------------

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` unframed bytes (the handshake's ``io.ReadFull``)."""
        while True:
            data = self.reader.take_raw(n)
            if data is not None:
                return data
            if self._eof:
                partial = self.reader.take_raw(self.reader.buffered) or b""
                raise asyncio.IncompleteReadError(partial, n)
            self._raw_need = n
            await self._wait_readable()

    async def wait_raw(self, n: int) -> bool:
        """Wait until ``n`` unframed bytes are buffered (True) or the peer has closed (False)."""
        while self.reader.buffered < n:
            if self._eof:
                return False
            self._raw_need = n
            await self._wait_readable()
        return True

    def write(self, data: bytes) -> None:
        """Unframed write (handshake phase)."""
        if self.transport is not None:
            self.transport.write(data)

    def start_records(self, key_material: bytes, side: Side) -> None:
        crypto = RecordCrypto(key_material, side)
        self.reader.start_records(crypto)
        self.writer = RecordWriter(crypto)

    # --- record phase: whole small messages ---------------------------------------------

    def frame_future(self, framer: Framer, deadline: float) -> asyncio.Future[bytes | None]:
        """A future for the next whole message that ``framer`` finds at the start of the
        plaintext (its bytes, consumed), or None as soon as that cannot be: the message is
        larger or split across record frames, the stream ended or failed. The caller then
        reads with :meth:`read`, which starts exactly where this stopped. ``TimeoutError``
        once ``deadline`` (loop time) passes with nothing; already done if a message or a
        reason to stop is here now.

        This is the small-message fast path: no coroutine per read and no timeout object;
        one timer per connection, moved only when it fires early (_on_frame_timer).
        """
        if self._frame_waiter is not None or self._read_waiter is not None:
            raise RuntimeError("another coroutine is already reading from this stream")
        waiter: asyncio.Future[bytes | None] = self._loop.create_future()
        found = self._find_frame(framer)
        if found is not _WAIT:
            waiter.set_result(cast("bytes | None", found))
            return waiter
        self._frame_waiter = waiter
        self._framer = framer
        self._frame_deadline = deadline
        if self._frame_timer is None or self._frame_timer_at > deadline:
            self._arm_timer(deadline)
        if self._read_paused:
            self._resume_reading()
        return waiter

    def _find_frame(self, framer: Framer) -> bytes | object | None:
        """A whole message at the start of the plaintext (consumed), None if the slow path
        must take over, ``_WAIT`` if nothing is here yet."""
        if self._pushback or self._error is not None or self.writer is None:
            return None
        found = self.reader.take_whole(framer)
        if found is True:
            return None if self._eof else _WAIT
        if found is False:
            return None
        if self._read_paused:
            self._resume_reading()
        return found

    def _poll_frame(self) -> None:
        waiter = self._frame_waiter
        assert waiter is not None and self._framer is not None
        if waiter.done():  # cancelled: whoever waited is gone and reads nothing more
            self._frame_waiter = self._framer = None
            return
        found = self._find_frame(self._framer)
        if found is not _WAIT:
            self._frame_waiter = self._framer = None
            waiter.set_result(cast("bytes | None", found))

    def _end_frame_wait(self, result: None) -> None:
        waiter = self._frame_waiter
        if waiter is not None:
            self._frame_waiter = self._framer = None
            if not waiter.done():
                waiter.set_result(result)

    def _arm_timer(self, when: float) -> None:
        if self._frame_timer is not None:
            self._frame_timer.cancel()
        self._frame_timer = self._loop.call_at(when, self._on_frame_timer)
        self._frame_timer_at = when

    def _on_frame_timer(self) -> None:
        # The timer stays armed across waits and is moved only here: a wait whose deadline
        # is later than the timer (the usual case: one RPC after another) re-arms it when it
        # fires, instead of every wait scheduling and cancelling one of its own.
        self._frame_timer = None
        waiter = self._frame_waiter
        if waiter is None:
            return
        if waiter.done():
            self._frame_waiter = self._framer = None
            return
        if self._loop.time() < self._frame_deadline:
            self._arm_timer(self._frame_deadline)
            return
        self._frame_waiter = self._framer = None
        waiter.set_exception(TimeoutError())

    def cancel_frame_wait(self, waiter: asyncio.Future[bytes | None]) -> None:
        """Forget ``waiter`` (its awaiting task was cancelled); nothing is consumed after."""
        if self._frame_waiter is waiter:
            self._frame_waiter = self._framer = None

    # --- record phase -------------------------------------------------------------------

    async def read(self, n: int) -> bytes:
        if self._pushback:
            back, self._pushback = self._pushback[:n], self._pushback[n:]
            return back
        if self._error is not None:
            raise self._error
        while True:
            try:
                data = self.reader.read(n)
            except ProtocolError as exc:
                raise self.fail(exc) from None
            if data is not None:
                if self._read_paused:
                    self._resume_reading()
                return data
            if self._eof:
                if not self.reader.at_frame_boundary():
                    raise self.fail(
                        ProtocolError("connection closed in the middle of a record frame")
                    )
                lost = self._lost_exc
                if lost is not None and not isinstance(lost, ConnectionError):
                    raise ConnectionResetError(str(lost)) from lost
                return b""  # FIN, or a reset / broken pipe at a frame boundary: EOF
            await self._wait_readable()

    def write_frames(self, data: Any) -> None:
        """Seal ``data`` into frames and hand each to the transport in one ``write``.

        Large frames are sealed into a reused buffer when that is safe (see
        ``_transport_copies``): a fresh megabyte per frame costs page faults that showed up
        as a third of the sender's CPU.
        """
        transport, writer = self.transport, self.writer
        assert writer is not None and transport is not None
        view = memoryview(data).cast("B")
        pos = 0
        for size in payload_sizes(len(view), writer.max_payload):
            total = size + FRAME_OVERHEAD
            buf = self._frame_buffer(total)
            writer.seal_into(buf, view[pos : pos + size], size)
            pos += size
            if len(buf) == total:
                transport.write(buf)
            else:
                with memoryview(buf) as frame:
                    transport.write(frame[:total])
            if buf is self._scratch and not self._copying:
                # Zero-copy transport: the buffer is ours again only once it has been sent.
                self._scratch = None
                self._in_flight = buf
        if self._in_flight is not None and transport.get_write_buffer_size() == 0:
            self._scratch, self._in_flight = self._in_flight, None

    def _frame_buffer(self, total: int) -> bytearray:
        if total < _SCRATCH_MIN:
            return bytearray(total)  # small: the allocator serves these from its free lists
        scratch = self._scratch
        if scratch is None or len(scratch) < total:
            scratch = self._scratch = bytearray(max(total, _SCRATCH_MIN))
        self._scratch_used = self._loop.time()
        if self._scratch_timer is None:
            self._scratch_timer = self._loop.call_later(_SCRATCH_IDLE, self._release_scratch)
        return scratch

    def _release_scratch(self) -> None:
        idle = self._loop.time() - self._scratch_used
        if idle >= _SCRATCH_IDLE or self.transport_closing():
            self._scratch = self._in_flight = None
            self._scratch_timer = None
        else:
            self._scratch_timer = self._loop.call_later(_SCRATCH_IDLE - idle, self._release_scratch)

    async def drain(self) -> None:
        if self._error is not None:
            raise self._error
        if self.transport is None or self.transport.is_closing():
            # Let a pending connection_lost run first so its error is the one reported.
            await asyncio.sleep(0)
            raise ConnectionResetError("secure stream connection is closed")
        if self._write_paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
            if self.transport.is_closing():
                raise ConnectionResetError("secure stream connection lost")


class SecureStream:
    """An authenticated, encrypted byte stream to one peer.

    ``read``/``readexactly`` follow ``asyncio.StreamReader`` (clean EOF: ``read`` returns
    ``b""``, ``readexactly`` raises ``IncompleteReadError``); ``write``/``drain``/``close``/
    ``wait_closed`` follow ``asyncio.StreamWriter``. A bad frame raises ``ProtocolError`` and
    the TCP connection is dropped. One reader task and one writer task may use it at once.
    """

    def __init__(self, protocol: _SecureProtocol, result: HandshakeResult) -> None:
        self._proto = protocol
        self._result = result
        self._pending = bytearray()
        self._flush_scheduled = False
        self._closing = False
        self._gbuf: bytearray | None = None
        self._gathered = 0

    # --- identity -----------------------------------------------------------------------

    @property
    def peer_address(self) -> str:
        """The peer's bech32 account address, authenticated by the handshake."""
        return self._result.peer_address

    @property
    def peer_type(self) -> PeerType:
        """What the peer declared itself (and the chain confirmed) to be."""
        return self._result.peer_type

    @property
    def local_address(self) -> str:
        """Our own bech32 account address."""
        return self._result.local_address

    @property
    def handshake(self) -> HandshakeResult:
        """The whole handshake outcome (side, keys of the peer, record key material)."""
        return self._result

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Transport information (``peername``, ``sockname``, ``socket``...)."""
        transport = self._proto.transport
        return default if transport is None else transport.get_extra_info(name, default)

    # --- reading ------------------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``-1``: everything until EOF); ``b""`` at a clean end of stream."""
        if n >= 0:
            return await self._proto.read(n) if n else b""
        parts = []
        while chunk := await self._proto.read(_READ_ALL_CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``IncompleteReadError`` if the stream ends first.

        If cancelled half-way, the bytes already read are not lost: the next read gets them.
        """
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        if n == 0:
            return b""
        first = await self._proto.read(n)
        if len(first) == n:
            return first
        parts = [first]
        got = len(first)
        try:
            while got < n:
                chunk = await self._proto.read(n - got)
                if not chunk:
                    raise asyncio.IncompleteReadError(b"".join(parts), n)
                parts.append(chunk)
                got += len(chunk)
        except asyncio.CancelledError:
            self._proto.reader_pushback(b"".join(parts))
            raise
        return b"".join(parts)

    def at_eof(self) -> bool:
        """True once the peer has closed and every received byte has been read."""
        return self._proto.at_eof()

    # --- writing ------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for sending, sealed into record frames (no frame for ``b""``)."""
        if self._proto.error is not None:
            raise self._proto.error
        if self._closing:
            raise ConnectionResetError("secure stream is closed")
        size = len(data)
        if not size:
            return
        if size >= _COALESCE_LIMIT:
            if size <= _GATHER_MAX:
                self._gather(data, size)
                return
            self._flush()
            self._proto.write_frames(data)
            return
        if self._gathered:
            self._gather(data, size)
            return
        self._pending += data
        if len(self._pending) >= _COALESCE_LIMIT:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._proto.call_soon(self._flush)

    def send_now(self, data: bytes | bytearray | memoryview) -> None:
        """Seal and hand ``data`` to the transport now (whatever was written before first),
        as one record frame if it fits one: for a whole message, which gains nothing from
        waiting to be coalesced. ``ConnectionResetError`` if the connection is closed or
        going. Call :meth:`drain` only if :attr:`write_paused`.
        """
        proto = self._proto
        if proto.error is not None:
            raise proto.error
        if self._closing or proto.transport_closing():
            raise ConnectionResetError("secure stream is closed")
        if self._pending or self._gathered:
            self._flush()
        size = len(data)
        if 0 < size < FAST_PATH_MIN:
            transport, writer = proto.transport, proto.writer
            assert transport is not None and writer is not None
            transport.write(writer.seal_small(data))
        elif size:
            proto.write_frames(data)

    @property
    def write_paused(self) -> bool:
        """True while the transport's write buffer is over its high-water mark."""
        return self._proto.write_paused

    def frame_future(self, framer: Framer, deadline: float) -> asyncio.Future[bytes | None]:
        """The next whole small message, found by ``framer`` (see ``_SecureProtocol``)."""
        return self._proto.frame_future(framer, deadline)

    def cancel_frame_wait(self, waiter: asyncio.Future[bytes | None]) -> None:
        """Forget a :meth:`frame_future` whose awaiting task was cancelled."""
        self._proto.cancel_frame_wait(waiter)

    def writelines(self, data: list[bytes]) -> None:
        """Write each buffer in turn (small ones coalesce into one frame)."""
        for item in data:
            self.write(item)

    def _gather(self, data: Any, size: int) -> None:
        """Append ``data`` (and whatever small writes were pending) to the gather buffer;
        seal it once it holds ``MAX_PAYLOAD - _GATHER_MAX`` bytes, else at the loop's turn."""
        buf = self._gbuf
        if buf is None:
            buf = self._gbuf = bytearray(MAX_PAYLOAD)
        if self._gathered + len(self._pending) + size > MAX_PAYLOAD:
            self._flush(keep=True)
        if self._pending:
            n = len(self._pending)
            buf[self._gathered : self._gathered + n] = self._pending
            self._gathered += n
            self._pending = bytearray()
        buf[self._gathered : self._gathered + size] = data
        self._gathered += size
        if self._gathered >= MAX_PAYLOAD - _GATHER_MAX:
            self._flush(keep=True)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._proto.call_soon(self._flush)

    def _flush(self, keep: bool = False) -> None:
        """Seal what is gathered or pending; ``keep``: the gather buffer is about to be
        refilled (mid-message), otherwise it is dropped, so idle streams hold no megabyte."""
        self._flush_scheduled = False
        if self._gathered:
            assert self._gbuf is not None
            n, self._gathered = self._gathered, 0
            if not self._proto.transport_closing():
                with memoryview(self._gbuf) as view:
                    self._proto.write_frames(view[:n])
        if not keep:
            self._gbuf = None
        if self._pending:
            pending, self._pending = self._pending, bytearray()
            if not self._proto.transport_closing():
                self._proto.write_frames(pending)

    async def drain(self) -> None:
        """Send what was written and wait for room in the transport's write buffer."""
        self._flush()
        await self._proto.drain()

    def can_write_eof(self) -> bool:
        """Half-close is not part of the protocol."""
        return False

    # --- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Send what is queued, then close the TCP connection."""
        if not self._closing:
            self._flush()
            self._closing = True
            self._proto.close()

    def abort(self) -> None:
        """Drop the connection at once, discarding unsent data."""
        self._closing = True
        self._pending = bytearray()
        self._gbuf, self._gathered = None, 0
        self._proto.abort()

    def is_closing(self) -> bool:
        """True once ``close``/``abort`` was called or the connection went away."""
        return self._closing or self._proto.transport_closing()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is gone."""
        await self._proto.closed

    async def __aenter__(self) -> SecureStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        return (
            f"<SecureStream {self._result.side.name.lower()} "
            f"local={self.local_address} peer={self.peer_address}>"
        )


async def _run_handshake(
    proto: _SecureProtocol, handshake: Awaitable[HandshakeResult], deadline: float
) -> HandshakeResult:
    """Run ``handshake`` under ``deadline``; on any failure drop the connection."""
    ok = False
    try:
        async with asyncio.timeout_at(deadline):
            result = await handshake
        ok = True
    except TimeoutError as exc:
        raise proto.fail(HandshakeTimeoutError("handshake timed out")) from exc
    except ProtocolError as exc:
        raise proto.fail(exc) from None
    finally:
        if not ok and proto.transport is not None:
            proto.transport.abort()
    proto.start_records(result.key_material, result.side)
    return result


async def secure_connect(
    host: str,
    port: int,
    local_key: PrivateKey,
    expected_peer: str,
    verifier: PeerVerifier,
    *,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    peer_type: PeerType = PeerType.SUPERNODE,
    ephemeral: EphemeralKey | None = None,
    local_addr: tuple[str, int] | None = None,
) -> SecureStream:
    """Dial ``host:port`` and complete the handshake as client with ``expected_peer``.

    ``timeout`` bounds connect and handshake together: ``TimeoutError`` if the TCP connect
    does not finish, ``HandshakeTimeoutError`` (a ``ProtocolError``) if the handshake does
    not. Any handshake failure raises ``ProtocolError`` with the connection closed.
    ``local_addr`` binds the local end (a multi-homed host; tests and benchmarks dial from
    several loopback addresses).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with asyncio.timeout_at(deadline):
        _, proto = await loop.create_connection(
            lambda: _SecureProtocol(loop), host, port, local_addr=local_addr
        )
    hs = client_handshake(
        proto, proto, local_key, expected_peer, verifier, peer_type=peer_type, ephemeral=ephemeral
    )
    result = await _run_handshake(proto, hs, deadline)
    return SecureStream(proto, result)


class IncomingConnection:
    """A TCP connection accepted by :func:`start_secure_server`, before its handshake.

    Its owner either runs :meth:`handshake` (in a task of its own) or aborts it (:meth:`abort`);
    one that does neither keeps the socket open until the peer leaves. Bytes the peer sends
    before the handshake starts wait in the receive buffer (bounded: reading pauses at the
    record reader's high-water mark), and an EOF that arrives meanwhile is kept too.
    """

    def __init__(
        self,
        protocol: _SecureProtocol,
        local_key: PrivateKey,
        verifier: PeerVerifier,
        peer_type: PeerType,
        deadline: float,
    ) -> None:
        self._proto = protocol
        self._key = local_key
        self._verifier = verifier
        self._peer_type = peer_type
        self._deadline = deadline
        self._started = False

    @property
    def deadline(self) -> float:
        """The loop time by which the handshake must be complete (accept time + timeout)."""
        return self._deadline

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Transport information (``peername``, ``sockname``, ``socket``...)."""
        transport = self._proto.transport
        return default if transport is None else transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        """True once the connection is aborted, failed or gone."""
        return self._proto.transport_closing()

    def abort(self) -> None:
        """Drop the connection at once (a refused or failed peer)."""
        self._proto.abort()

    async def first_byte(self) -> bool:
        """Wait until the peer has sent something (True) or closed without a byte (False).

        Consumes nothing: the handshake reads the bytes. The server bounds this wait by a
        deadline much shorter than the handshake's, so a silent socket frees its slot fast.
        """
        return await self._proto.wait_raw(1)

    async def handshake(self, *, ephemeral: EphemeralKey | None = None) -> SecureStream:
        """Run the server handshake (Go ``ServerHandshake``) and return the secure stream.

        Raises ``ProtocolError`` (``HandshakeTimeoutError`` past the deadline) with the
        connection already dropped. ``ephemeral`` fixes our P-256 key (tests and vectors).
        May be called once.
        """
        if self._started:
            raise RuntimeError("the handshake of this connection was already run")
        self._started = True
        proto = self._proto
        hs = server_handshake(
            proto, proto, self._key, self._verifier, peer_type=self._peer_type, ephemeral=ephemeral
        )
        result = await _run_handshake(proto, hs, self._deadline)
        return SecureStream(proto, result)

    def __repr__(self) -> str:
        return f"<IncomingConnection from {self.get_extra_info('peername')}>"


class _ServerProtocol(_SecureProtocol):
    """A server-side connection: announces itself to the server's owner once connected."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        announce: Callable[[_SecureProtocol], None],
    ) -> None:
        super().__init__(loop)
        self._announce = announce

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        try:
            self._announce(self)
        except Exception:
            # A crash in the owner's callback must not leave an orphaned open socket.
            log.exception("secure server: connection callback failed")
            self.abort()


async def start_secure_server(
    on_connection: Callable[[IncomingConnection], object],
    host: str | None,
    port: int,
    local_key: PrivateKey,
    verifier: PeerVerifier,
    *,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    peer_type: PeerType = PeerType.SUPERNODE,
    **server_kwargs: Any,
) -> asyncio.Server:
    """Listen on ``host:port``; call ``on_connection`` for each accepted TCP connection.

    ``on_connection`` runs synchronously as the connection is made (admission control goes
    there) and owns the :class:`IncomingConnection`: it calls ``handshake`` in a task or
    ``abort``. The handshake must finish within ``timeout`` seconds of the accept. Other
    keyword arguments go to ``loop.create_server`` (``backlog``, ``reuse_address``...).
    """
    loop = asyncio.get_running_loop()

    def announce(proto: _SecureProtocol) -> None:
        deadline = loop.time() + timeout
        on_connection(IncomingConnection(proto, local_key, verifier, peer_type, deadline))

    return await loop.create_server(
        lambda: _ServerProtocol(loop, announce), host, port, **server_kwargs
    )
