"""The real transport: Kademlia frames over the secure channel on TCP.

:class:`TcpTransport` is the client (the DHT's ``Transport``, a drop-in alternative to
``MemoryTransport``); :class:`TcpServer` accepts peers and runs the DHT's handler for each
request. Both keep the Go node's wire behaviour (one request then one response per connection
at a time, pool key ``id@ip:port``, a stale pooled connection redialled once) and leave out its
known defects (p2p-behaviour.md §11.2 items 13 and 14):

* a busy peer gets several client connections, so a long RPC never delays a short one;
* a server read timeout closes the connection instead of continuing mid-frame, and a frame
  must arrive at a minimum average rate, so a slow sender cannot hold a connection;
* new connections are rate-limited per IP and globally, open connections and concurrent
  handshakes are capped (handshakes also per address, with fair sharing of the slots:
  ``net/admission.py``), a connection must send its first byte within seconds, and a failing
  handler closes only its own connection;
* every large frame read, and every answer built and sent, holds a reservation in one
  node-wide memory budget (``net/budget.py``), released however the request ends.

Most RPCs are small: a request or answer that arrives whole in one record is taken straight
from the secure channel (``SecureStream.frame_future``, one future, the connection's timer),
decoded and answered without a coroutine or a timeout per read, and a handler that finishes
without suspending runs without a timeout object. Anything else takes the general path, which
applies every deadline, limit and budget wait as before, from the same byte on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import asdict, dataclass, field
from types import CoroutineType
from typing import Any, Final, cast

from lumera_p2p.errors import (
    HandshakeTimeoutError,
    OverBudget,
    PeerRejected,
    ProtocolError,
    RpcTimeout,
    TransportError,
)
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.kademlia import Contact
from lumera_p2p.log_throttle import LogThrottle
from lumera_p2p.net.admission import REFUSED_ADDRESS, HandshakeSlots, address_key
from lumera_p2p.net.budget import MemoryBudget, Reservation, serving
from lumera_p2p.net.frames import (
    OFF_LOOP_SIZE,
    VIEW_MIN,
    Frame,
    decode_frame_body,
    decode_frame_now,
    detach_views,
    encode_now,
    joined,
    payload_hint,
    read_body_view,
    read_frame_length,
    response_limit,
    small_frames,
    write_frame,
)
from lumera_p2p.net.limits import (
    MIB,
    KeyedRateLimiter,
    ServerLimits,
    TokenBucket,
    transfer_deadline,
)
from lumera_p2p.net.pool import ConnectionPool
from lumera_p2p.net.trim import give_back_freed_memory
from lumera_p2p.secure import (
    IncomingConnection,
    PeerType,
    PeerVerifier,
    SecureStream,
    secure_connect,
    start_secure_server,
)
from lumera_p2p.wire.gob import GobDecodeCache, GobEncodeError
from lumera_p2p.wire.messages import HEADER_SIZE, MAX_PAYLOAD_SIZE, Message

#: ``handler(request, peer_id)``: ``peer_id`` is the authenticated bech32 address as bytes.
Handler = Callable[[Message, bytes], Awaitable[Message]]
#: ``on_answer(extra)``: a large answer has started to arrive and is given ``extra`` seconds.
AnswerWatcher = Callable[[float], None]
#: Answers at least this large are reported to ``on_answer`` (smaller ones take no time).
WATCHED_ANSWER: Final = 1024 * 1024

#: Go's dial timeout; ours covers the handshake too.
DEFAULT_DIAL_TIMEOUT: Final = 5.0

log = logging.getLogger(__name__)


# --- client -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransportOptions:
    """Client tunables (defaults: Go's pool, plus several connections per peer)."""

    #: TCP connect and handshake together, inside the RPC's own timeout.
    dial_timeout: float = DEFAULT_DIAL_TIMEOUT
    #: Connections kept in total (Go: 256) and per peer (Go: 1, shared and serialised).
    pool_capacity: int = 256
    conns_per_peer: int = 4
    #: Idle connections are closed after this long (Go: 1 h), checked this often.
    idle_timeout: float = 3600.0
    prune_interval: float = 300.0
    #: The largest response body read (the protocol's 400 MB by default); answers that carry
    #: no values are held to less (``net.frames.response_limit``).
    max_response_size: int = MAX_PAYLOAD_SIZE
    #: Messages above this size are encoded and decoded in a worker thread.
    off_loop_size: int = OFF_LOOP_SIZE
    #: Bytes a second a large request or answer is given at least: an RPC may take its
    #: timeout plus its request frame's size and its answer's (once its header says it) at
    #: this rate. A fixed timeout sent a 256 MiB value to no replica on a busy machine; 1 MiB/s
    #: is what servers require of a sender (``server.min_transfer_rate``), so a transfer they
    #: would keep is never given up here.
    transfer_rate: float = 1.0 * MIB
    #: Bytes of large answers being read at once, from all peers: the body of each is
    #: reserved here before it is read, and one that does not fit waits (its sender held
    #: back by TCP). A FIND_VALUE that widened to several holders of a 400 MiB value must
    #: not read it from all of them at once; the first to arrive ends the lookup. (Never
    #: less than ``max_response_size``: the largest answer must fit.)
    answer_budget: int = 512 * MIB
    #: Dial from this address (a node listening on one address dials from it too, so peers
    #: see the address the registry lists); None: the kernel's choice.
    source_host: str | None = None

    def __post_init__(self) -> None:
        if self.dial_timeout <= 0:
            raise ValueError(f"dial_timeout must be positive, not {self.dial_timeout}")
        if self.transfer_rate <= 0:
            raise ValueError(f"transfer_rate must be positive, not {self.transfer_rate}")
        if self.answer_budget < 1:
            raise ValueError(f"answer_budget must be at least 1, not {self.answer_budget}")
        if self.max_response_size < 0 or self.off_loop_size < 0:
            raise ValueError("max_response_size and off_loop_size cannot be negative")


@dataclass
class TransportStats:
    """Client counters since the transport was made."""

    calls: int = 0
    #: Calls that raised ``TransportError`` (timeouts included).
    failures: int = 0
    timeouts: int = 0
    #: Calls retried on a fresh connection because the pooled one was stale.
    retries: int = 0
    dial_failures: int = 0
    #: Frame bytes written and read (length prefixes included, before encryption).
    bytes_sent: int = 0
    bytes_received: int = 0


class _StaleConnection(Exception):
    """The connection ended before any byte of the answer: a pooled one may be retried."""


class TcpTransport:
    """Sends requests to peers over pooled secure connections; see the module docstring.

    ``call`` never raises anything but ``TransportError`` (and ``CancelledError``): refused,
    timed out, handshake rejected, connection lost, malformed or oversized answer.
    """

    def __init__(
        self,
        local_key: PrivateKey,
        verifier: PeerVerifier,
        options: TransportOptions | None = None,
        *,
        peer_type: PeerType = PeerType.SUPERNODE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = opts = options or TransportOptions()
        self.stats = TransportStats()
        self.pool: ConnectionPool[SecureStream] = ConnectionPool(
            capacity=opts.pool_capacity,
            per_peer=opts.conns_per_peer,
            idle_timeout=opts.idle_timeout,
            prune_interval=opts.prune_interval,
            clock=clock,
        )
        self._key = local_key
        self._verifier = verifier
        self._peer_type = peer_type
        self._cache = GobDecodeCache()
        # Answers of up to VIEW_MIN bytes (never over an answer's limit: response_limit is
        # at least 1 MiB or max_response_size) may be taken whole from the record layer.
        self._small_answer = small_frames(min(VIEW_MIN, opts.max_response_size))
        #: The budget of large answers being read (``TransportOptions.answer_budget``).
        self.answers = MemoryBudget(max(opts.answer_budget, opts.max_response_size))

    def snapshot(self) -> dict[str, int]:
        """Client and pool counters by name (pool ones prefixed ``pool_``)."""
        pool = {f"pool_{name}": value for name, value in self.pool.snapshot().items()}
        return {**asdict(self.stats), **pool}

    async def call(
        self,
        peer: Contact,
        request: Message,
        timeout: float,
        *,
        on_answer: AnswerWatcher | None = None,
    ) -> Message:
        """Send ``request`` to ``peer`` and return its answer within ``timeout`` seconds plus
        the request's and the answer's frame sizes at ``transfer_rate`` (the answer's counted
        from when its header arrives; ``on_answer`` is then told the seconds that adds, for an
        answer of :data:`WATCHED_ANSWER` bytes or more)."""
        if self.pool.closed:
            raise TransportError("transport is closed")
        self.stats.calls += 1
        opts = self.options
        deadline = _Deadline(timeout, opts.transfer_rate, on_answer)
        frame: Frame | bytes
        try:
            try:
                if payload_hint(request) > opts.off_loop_size:
                    async with deadline.bound():
                        frame = await asyncio.to_thread(Frame.of, request)
                else:
                    frame = encode_now(request)
            except GobEncodeError as exc:  # e.g. over 400 MB: no peer would take it
                raise TransportError(f"{peer}: cannot encode the request: {exc}") from exc
            deadline.extend(len(frame))
            limit = response_limit(request, opts.max_response_size)
            return await self._exchange(peer, frame, limit, deadline)
        except TimeoutError:
            self.stats.timeouts += 1
            self.stats.failures += 1
            raise RpcTimeout(f"{peer}: no answer within {deadline.allowed:.1f} s") from None
        except TransportError:
            self.stats.failures += 1
            raise

    async def _exchange(
        self, peer: Contact, frame: Frame | bytes, max_size: int, deadline: _Deadline
    ) -> Message:
        key = peer.pool_key
        pool = self.pool
        if not pool.try_slot(key):
            async with deadline.bound():
                await pool.wait_slot(key)
        try:
            conn = pool.take(key)
            reused = conn is not None
            while True:
                if conn is None:
                    async with deadline.bound():
                        conn = await self._dial(peer)
                    pool.add(conn)
                try:
                    response = await self._round_trip(conn, frame, max_size, deadline)
                except _StaleConnection as exc:
                    pool.discard(conn)
                    conn = None
                    if reused:
                        # Closed by the peer while idle, noticed only now: the request never
                        # reached a live connection, so sending it again is safe (Go does too).
                        reused = False
                        self.stats.retries += 1
                        continue
                    raise TransportError(f"{peer}: connection closed before an answer") from exc
                except TimeoutError:
                    # This RPC's deadline (an OSError, but not the connection's fault).
                    pool.discard(conn)
                    raise
                except (ProtocolError, OSError) as exc:
                    pool.discard(conn)
                    raise TransportError(f"{peer}: {str(exc) or type(exc).__name__}") from exc
                except BaseException:
                    # Timeout or cancellation mid-RPC: the stream may hold half a frame.
                    pool.discard(conn)
                    raise
                pool.release(key, conn)
                return response
        finally:
            pool.free_slot(key)

    def _source_for(self, ip: str) -> tuple[str, int] | None:
        """``(source_host, 0)`` if ``ip`` is of its family (else the kernel chooses)."""
        source = self.options.source_host
        if source is None:
            return None
        try:
            same = ipaddress.ip_address(ip).version == ipaddress.ip_address(source).version
        except ValueError:  # a hostname: let the kernel choose
            return None
        return (source, 0) if same else None

    async def _dial(self, peer: Contact) -> SecureStream:
        try:
            return await secure_connect(
                peer.ip,
                peer.port,
                self._key,
                peer.address,
                self._verifier,
                timeout=self.options.dial_timeout,
                peer_type=self._peer_type,
                local_addr=self._source_for(peer.ip),
            )
        except (OSError, ProtocolError) as exc:  # TimeoutError is an OSError
            self.stats.dial_failures += 1
            reason = str(exc) or type(exc).__name__
            raise TransportError(f"{peer}: cannot connect: {reason}") from exc

    async def _round_trip(
        self, conn: SecureStream, frame: Frame | bytes, max_size: int, deadline: _Deadline
    ) -> Message:
        try:
            data = frame if isinstance(frame, bytes) else joined(frame)
            if data is not None:
                conn.send_now(data)
                if conn.write_paused:
                    async with deadline.bound():
                        await conn.drain()
            else:
                async with deadline.bound():
                    await write_frame(conn, frame)
        except ConnectionError as exc:
            raise _StaleConnection from exc
        self.stats.bytes_sent += len(frame)
        # A small answer that arrives whole is taken straight from the record layer, bounded
        # by the connection's timer; anything else (larger, split, the stream ending) is read
        # by the ordinary readers from the same byte on.
        waiter = conn.frame_future(self._small_answer, deadline.when)
        if waiter.done():
            whole = waiter.result()
        else:
            try:
                whole = await waiter
            except asyncio.CancelledError:
                conn.cancel_frame_wait(waiter)
                raise
        if whole is None:
            async with deadline.bound() as timer:
                deadline.timer = timer
                try:
                    return await self._read_answer(conn, max_size, deadline)
                finally:
                    deadline.timer = None
        self.stats.bytes_received += len(whole)
        deadline.answer_started(len(whole) - HEADER_SIZE)
        return decode_frame_now(whole, self._cache, start=HEADER_SIZE)

    async def _read_answer(self, conn: SecureStream, max_size: int, deadline: _Deadline) -> Message:
        # Bounded by the caller's timeout; the length is checked (against what this request's
        # answer may be) before the body is read, and what the body decodes to is bounded by
        # the decoder (wire.gob.costs).
        length = await read_frame_length(conn, max_size=max_size)
        if length is None:
            raise _StaleConnection
        self.stats.bytes_received += HEADER_SIZE + length
        deadline.answer_started(length)
        if length <= VIEW_MIN:
            body = await read_body_view(conn, length)
            return await decode_frame_body(body, self._cache, self.options.off_loop_size)
        # Bounded by the caller's timeout, which ends first (the budget's own wait is longer).
        reservation = await self.answers.reserve(length, conn.peer_address, _FOREVER)
        try:
            # Read into one buffer and decoded with the values as views into it; they are
            # then copied out once, so the buffer goes and callers get ``bytes``.
            body = await read_body_view(conn, length)
            message = await decode_frame_body(
                body, self._cache, self.options.off_loop_size, views_from=VIEW_MIN
            )
            del body
            return detach_views(message)
        finally:
            reservation.release()

    async def close(self) -> None:
        """Close every connection; later calls raise ``TransportError``. Idempotent."""
        await self.pool.close()

    async def __aenter__(self) -> TcpTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


#: A wait bounded by an enclosing timeout instead.
_FOREVER: Final = 365 * 24 * 3600.0


class _Deadline:
    """When one RPC must end (loop time): its timeout, then its request's and its answer's
    sizes at the transfer rate. Waits that may block are bounded by :meth:`bound`; the
    answer's wait by the connection's own timer (``SecureStream.frame_future``)."""

    __slots__ = ("_on_answer", "_rate", "allowed", "timer", "when")

    def __init__(self, timeout: float, rate: float, on_answer: AnswerWatcher | None) -> None:
        self.when = asyncio.get_running_loop().time() + timeout
        #: Seconds allowed so far (for the error message).
        self.allowed = timeout
        self._rate = rate
        self._on_answer = on_answer
        #: The timeout of the answer being read, moved when its header says its size.
        self.timer: asyncio.Timeout | None = None

    def bound(self) -> asyncio.Timeout:
        """A timeout at the deadline as it stands."""
        return asyncio.timeout_at(self.when)

    def extend(self, size: int) -> float:
        """Allow ``size`` more bytes at the transfer rate; return the seconds added."""
        extra = size / self._rate
        self.when += extra
        self.allowed += extra
        return extra

    def answer_started(self, length: int) -> None:
        """The answer's header declared ``length`` bytes: allow for them."""
        extra = self.extend(length)
        if self.timer is not None:
            self.timer.reschedule(self.when)
        if self._on_answer is not None and length >= WATCHED_ANSWER:
            self._on_answer(extra)


# --- server -----------------------------------------------------------------------------------


@dataclass
class ServerStats:
    """Server counters since start."""

    accepted: int = 0
    refused_ip_rate: int = 0
    refused_global_rate: int = 0
    refused_connections: int = 0  # max_connections reached
    refused_handshakes: int = 0  # max_handshakes reached (and no slot to take)
    refused_address_handshakes: int = 0  # max_handshakes_per_address reached
    refused_unlisted: int = 0  # registered_addresses_only: the registry lists no such address
    evicted_handshakes: int = 0  # pending handshakes whose slot a newcomer took
    first_byte_timeouts: int = 0  # connections that sent nothing within first_byte_timeout
    handshake_failures: int = 0
    sessions: int = 0  # connections that completed the handshake
    requests: int = 0
    protocol_errors: int = 0  # bad frames, undecodable messages, handler ProtocolErrors
    handler_errors: int = 0  # handler crashes (our bugs): logged with a traceback
    handler_timeouts: int = 0
    idle_closed: int = 0
    slow_closed: int = 0  # a frame or a response write missed its deadline
    over_budget: int = 0  # frames refused (connection closed): no room in the memory budget
    crashed: int = 0  # connection tasks ended by an unexpected exception (bugs): logged
    #: Frame bytes read and written (length prefixes included, before encryption).
    bytes_received: int = 0
    bytes_sent: int = 0
    #: ``handshake_failures`` by reason: ``rejected`` (the registry does not list the peer,
    #: or could not be asked), ``timeout``, ``malformed``, ``connection`` (lost mid-way).
    handshake_failures_by_reason: dict[str, int] = field(default_factory=dict)


#: Seconds between two warnings about refused connections or failed handshakes.
REFUSAL_WARNING_INTERVAL: Final = 60.0


def handshake_failure_reason(exc: BaseException) -> str:
    """The ``handshake_failures_by_reason`` key of a failed server handshake."""
    if isinstance(exc, PeerRejected):
        return "rejected"
    if isinstance(exc, (HandshakeTimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, ProtocolError):
        return "malformed"
    return "connection"


class TcpServer:
    """Accepts peers on ``host:port`` and answers their requests with ``handler``.

    ``port`` 0 picks a free port; read the bound one from :attr:`port` after :meth:`start`.
    ``clock`` drives the rate limits only. ``budget`` is the node's memory budget (one is
    made from ``limits`` if none is given); handlers reach the current request's reservation
    through :func:`~lumera_p2p.net.budget.current_reservation`.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | None,
        port: int,
        local_key: PrivateKey,
        verifier: PeerVerifier,
        *,
        limits: ServerLimits | None = None,
        budget: MemoryBudget | None = None,
        peer_type: PeerType = PeerType.SUPERNODE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = lim = limits or ServerLimits()
        self.budget = budget or MemoryBudget(lim.memory_budget, per_peer=lim.memory_budget_per_peer)
        #: With ``limits.registered_addresses_only``: the addresses (IP text) that may connect,
        #: set from the registry by the service; None until it is first set (nobody refused).
        self.allowed_addresses: frozenset[str] | None = None
        self.stats = ServerStats()
        self._handler = handler
        self._host = host
        self._port = port
        self._key = local_key
        self._verifier = verifier
        self._peer_type = peer_type
        self._clock = clock
        self._per_ip = KeyedRateLimiter(
            lim.per_ip_rate, lim.per_ip_burst, max_keys=lim.max_tracked_ips
        )
        self._global = TokenBucket(lim.global_rate, lim.global_burst, clock())
        self._cache = GobDecodeCache()
        # Requests of up to this size are granted their memory at once (the budget's small
        # ones), so they may be taken whole from the record layer before the reservation.
        self._small_request = small_frames(min(VIEW_MIN, self.budget.small))
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Connections still in their handshake, by address. Counted from accept, not from when
        # their task first runs, so a burst accepted in one loop iteration cannot overshoot.
        self._slots: HandshakeSlots[IncomingConnection] = HandshakeSlots(
            lim.max_handshakes, lim.max_handshakes_per_address
        )
        self._task_of: dict[IncomingConnection, asyncio.Task[None]] = {}
        self._open = 0
        self._closing = False
        # One warning a minute about refusals, however many peers cause them.
        self._refusals = LogThrottle(log, REFUSAL_WARNING_INTERVAL, clock=clock)

    @property
    def port(self) -> int:
        """The port listened on (the bound one when started with port 0)."""
        if self._server is not None and self._server.sockets:
            port: int = self._server.sockets[0].getsockname()[1]
            return port
        return self._port

    @property
    def connections(self) -> int:
        """Connections open now, handshaking or serving."""
        return self._open

    async def start(self) -> None:
        """Start listening."""
        if self._server is not None:
            raise RuntimeError("server already started")
        if self._closing:
            raise RuntimeError("a closed server cannot be started again")
        self._server = await start_secure_server(
            self._on_connect,
            self._host,
            self._port,
            self._key,
            self._verifier,
            timeout=self.limits.handshake_timeout,
            peer_type=self._peer_type,
        )
        log.info("listening on %s:%d", self._host or "*", self.port)

    async def close(self) -> None:
        """Stop accepting, close every connection and wait for their tasks. Idempotent."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- admission ------------------------------------------------------------------------

    @property
    def handshakes(self) -> int:
        """Connections in their handshake now (first-byte wait included)."""
        return len(self._slots)

    def set_allowed_addresses(self, addresses: frozenset[str] | set[str]) -> None:
        """The addresses (IP text, any spelling) that may connect when
        ``limits.registered_addresses_only`` is on; the service sets it from the registry."""
        self.allowed_addresses = frozenset(address_key(a) for a in addresses)

    def _admit(self, conn: IncomingConnection, ip: str) -> bool:
        """Whether a new connection from ``ip`` may handshake; counts the refusals.

        Cheap refusals that spend nothing come first; a handshake slot is taken last, so a
        connection refused for its rate never costs another one its slot.
        """
        lim, stats = self.limits, self.stats
        if self._closing:
            return False
        address = address_key(ip)
        allowed = self.allowed_addresses if lim.registered_addresses_only else None
        if allowed is not None and address not in allowed:
            stats.refused_unlisted += 1
            return False
        if self._open >= lim.max_connections:
            stats.refused_connections += 1
            return False
        if self._slots.at_address_cap(address):
            stats.refused_address_handshakes += 1
            return False
        now = self._clock()
        # Per IP first: one flooding address must not use up everyone's global tokens.
        if not self._per_ip.allow(ip, now):
            stats.refused_ip_rate += 1
            return False
        if not self._global.take(now):
            stats.refused_global_rate += 1
            return False
        admission = self._slots.admit(conn, address)
        if not admission.admitted:
            if admission.refusal == REFUSED_ADDRESS:
                stats.refused_address_handshakes += 1
            else:
                stats.refused_handshakes += 1
            return False
        if admission.evict is not None:
            stats.evicted_handshakes += 1
            victim = self._task_of.pop(admission.evict, None)
            admission.evict.abort()
            if victim is not None:
                victim.cancel()
        return True

    def _on_connect(self, conn: IncomingConnection) -> None:
        """Admit or refuse a new connection; an admitted one gets its own tracked task."""
        peername = conn.get_extra_info("peername")
        ip = str(peername[0]) if peername else "?"
        if not self._admit(conn, ip):
            log.debug("refused a connection from %s", ip)
            self._refusals.log("refusing connections (over the server's limits): last from %s", ip)
            conn.abort()
            return
        self._open += 1
        self.stats.accepted += 1
        task = asyncio.get_running_loop().create_task(self._connection(conn, ip))
        self._tasks.add(task)
        self._task_of[conn] = task
        task.add_done_callback(lambda t: self._connection_done(t, conn))

    def _connection_done(self, task: asyncio.Task[None], conn: IncomingConnection) -> None:
        self._open -= 1
        self._tasks.discard(task)
        self._slots.release(conn)
        if self._task_of.get(conn) is task:
            del self._task_of[conn]
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.stats.crashed += 1
            log.error("connection task failed", exc_info=exc)

    async def _connection(self, conn: IncomingConnection, ip: str) -> None:
        stream: SecureStream | None = None
        try:
            stream = await self._handshake(conn, ip)
            if stream is not None:
                await self._serve(stream)
        finally:
            # Also reached on cancellation (server close), whatever step it interrupted.
            # On close, abort: a graceful close waits for a peer to read what is still queued.
            if stream is None:
                conn.abort()
            elif self._closing:
                stream.abort()
            else:
                stream.close()  # no-op after an abort

    async def _handshake(self, conn: IncomingConnection, ip: str) -> SecureStream | None:
        try:
            first_byte_by = asyncio.get_running_loop().time() + self.limits.first_byte_timeout
            try:
                async with asyncio.timeout_at(min(first_byte_by, conn.deadline)):
                    if not await conn.first_byte():
                        return None  # closed without a word: not worth counting
            except TimeoutError:
                if first_byte_by <= conn.deadline:
                    self.stats.first_byte_timeouts += 1
                    log.debug("%s sent nothing within %s s", ip, self.limits.first_byte_timeout)
                else:  # the whole handshake's time ran out
                    self.stats.handshake_failures += 1
                    by_reason = self.stats.handshake_failures_by_reason
                    by_reason["timeout"] = by_reason.get("timeout", 0) + 1
                return None
            return await conn.handshake()
        except (ProtocolError, OSError, asyncio.IncompleteReadError) as exc:
            stats = self.stats
            stats.handshake_failures += 1
            reason = handshake_failure_reason(exc)
            by_reason = stats.handshake_failures_by_reason
            by_reason[reason] = by_reason.get(reason, 0) + 1
            log.debug("handshake from %s failed: %s", ip, exc)
            if reason != "connection":  # a peer hanging up early is no news
                self._refusals.log("refused a handshake from %s (%s): %s", ip, reason, exc)
            return None
        finally:
            self._slots.release(conn)
            self._task_of.pop(conn, None)

    # --- serving --------------------------------------------------------------------------

    async def _serve(self, stream: SecureStream) -> None:
        """Answer requests until the peer leaves or breaks a rule; every exit closes.

        A small request that arrives whole (the usual case) is taken straight from the
        record layer, bounded by the connection's timer; any other is read by the ordinary
        readers from the same byte on, under the same idle deadline (:meth:`_serve_slowly`).
        """
        self.stats.sessions += 1
        peer = stream.peer_address
        loop = asyncio.get_running_loop()
        idle = self.limits.idle_timeout
        small = self._small_request
        try:
            while True:
                idle_by = loop.time() + idle
                waiter = stream.frame_future(small, idle_by)
                if waiter.done():
                    whole = waiter.result()
                else:
                    try:
                        whole = await waiter
                    except TimeoutError:
                        self._idle(stream)
                        return
                    except asyncio.CancelledError:
                        stream.cancel_frame_wait(waiter)
                        raise
                if whole is None:
                    if not await self._serve_slowly(stream, peer, idle_by):
                        return
                elif not await self._serve_small(stream, peer, whole):
                    return
        except ProtocolError as exc:
            self.stats.protocol_errors += 1
            log.debug("closing connection from %s: %s", peer, exc)
            stream.abort()
        except ConnectionError as exc:
            log.debug("connection from %s lost: %s", peer, exc)
            stream.abort()

    async def _serve_small(self, stream: SecureStream, peer: str, whole: bytes) -> bool:
        """Answer the request in ``whole`` (header and body); ``False``: close."""
        length = len(whole) - HEADER_SIZE
        # Within the budget's small size, so granted at once (counted, never waiting).
        reservation = self.budget.try_reserve(length, peer)
        if reservation is None:  # pragma: no cover - the framer's limit rules it out
            raise RuntimeError("a small request was not granted its memory")
        try:
            stats = self.stats
            stats.bytes_received += len(whole)
            request = decode_frame_now(whole, self._cache, start=HEADER_SIZE)
            del whole
            stats.requests += 1
            return await self._respond(stream, peer, request, reservation)
        finally:
            held = reservation.size
            reservation.release()
            give_back_freed_memory(held)

    def _idle(self, stream: SecureStream) -> bool:
        # Idle, or stuck inside a header: either way, never resume mid-frame.
        self.stats.idle_closed += 1
        stream.abort()
        return False

    async def _serve_slowly(self, stream: SecureStream, peer: str, idle_by: float) -> bool:
        """:meth:`_serve_one` for a request that is large, split or not there yet."""
        lim, stats = self.limits, self.stats
        try:
            async with asyncio.timeout_at(idle_by):
                length = await read_frame_length(stream)
        except TimeoutError:
            return self._idle(stream)
        if length is None:
            return False  # the peer closed between requests
        # The body is reserved before a byte of it is read (its values are decoded as views
        # into it, so this is all it costs). Nothing is read while this waits: TCP holds the
        # sender back meanwhile.
        try:
            reservation = await self.budget.reserve(length, peer, lim.memory_wait)
        except OverBudget as exc:
            # Before the body we cannot tell the type, so there is no Failed answer to give:
            # the peer sees the connection close (Go: an RPC error for this one request).
            stats.over_budget += 1
            log.info("closing %s: its %d-byte frame does not fit: %s", peer, length, exc)
            stream.abort()
            return False
        try:
            return await self._serve_request(stream, peer, length, reservation)
        finally:
            held = reservation.size
            reservation.release()
            give_back_freed_memory(max(held, length))

    async def _serve_request(
        self, stream: SecureStream, peer: str, length: int, reservation: Reservation
    ) -> bool:
        """Read the body of a frame whose header said ``length``, answer it; see above."""
        lim, stats = self.limits, self.stats
        try:
            body = await read_body_view(
                stream, length, grace=lim.frame_grace, min_rate=lim.min_transfer_rate
            )
        except TimeoutError:
            stats.slow_closed += 1
            log.debug("%s sends a %d-byte frame too slowly", peer, length)
            stream.abort()
            return False
        stats.bytes_received += HEADER_SIZE + length
        # Values of VIEW_MIN bytes or more stay views into the body: the reservation of the
        # body covers them until the handler is done with the request.
        request = await decode_frame_body(body, self._cache, views_from=VIEW_MIN)
        del body
        stats.requests += 1
        return await self._respond(stream, peer, request, reservation)

    async def _respond(
        self, stream: SecureStream, peer: str, request: Message, reservation: Reservation
    ) -> bool:
        """Answer ``request`` (handed over: the caller keeps no reference) and send it."""
        lim, stats = self.limits, self.stats
        response = await self._answer(_Owned(request), peer, reservation)
        del request
        if response is None:
            stream.abort()
            return False
        try:
            data = response if isinstance(response, bytes) else joined(response)
            if data is None:
                await write_frame(
                    stream,
                    response,
                    transfer_deadline(len(response), lim.frame_grace, lim.min_transfer_rate),
                )
            else:
                # Whole into the transport's buffer; waiting only if that is full.
                stream.send_now(data)
                if stream.write_paused:
                    allowed = transfer_deadline(len(data), lim.frame_grace, lim.min_transfer_rate)
                    async with asyncio.timeout(allowed):
                        await stream.drain()
        except TimeoutError:
            stats.slow_closed += 1
            log.debug("%s does not read its %d-byte answer", peer, len(response))
            stream.abort()
            return False
        stats.bytes_sent += len(response)
        return True

    async def _answer(
        self, owned: _Owned, peer: str, reservation: Reservation
    ) -> Frame | bytes | None:
        """The encoded response, or ``None`` if the handler failed (not the peer's fault).

        The handler sees ``reservation`` as its :func:`current_reservation` and grows it for
        the answer it builds; the request is dropped before the answer is encoded, and the
        reservation then holds what the encoded answer takes. A ``ProtocolError`` from the
        handler (the peer broke the protocol) propagates.

        The handler's first step runs here, without a timeout: most answers (a Ping, a
        lookup) are done without suspending. Only one that suspends is finished under the
        handler budget, counted from when it started.
        """
        stats = self.stats
        request = owned.take()
        mtype = request.message_type
        limit = self.limits.handler_timeout
        budget: asyncio.Timeout | None = None
        try:
            with serving(reservation):
                by = None if limit is None else asyncio.get_running_loop().time() + limit
                step = self._handler(request, peer.encode())
                del request
                if type(step) is not CoroutineType:  # another awaitable: no first step here
                    budget = asyncio.timeout_at(by)
                    async with budget:
                        response: Message = await step
                else:
                    coro = cast("Coroutine[Any, Any, Message]", step)  # (no alias built per call)
                    try:
                        yielded = coro.send(None)
                    except StopIteration as done:
                        response = done.value
                    else:
                        budget = asyncio.timeout_at(by)
                        async with budget:
                            response = await _Resumed(coro, yielded)
            # The answer's values exist now; the frame references them (no second copy).
            hint = payload_hint(response)
            if hint > reservation.size:
                reservation.resize(hint)
            frame: Frame | bytes
            if hint > OFF_LOOP_SIZE:
                frame = await asyncio.to_thread(Frame.of, response)
            else:
                frame = encode_now(response)
            del response
            reservation.resize(len(frame))
            return frame
        except ProtocolError:
            raise
        except OverBudget as exc:
            # A handler that could not get the memory for its answer and had no Failed
            # answer to give instead: not a bug, the peer asked for more than fits.
            stats.over_budget += 1
            log.info("no memory for a type %d answer to %s: %s", mtype, peer, exc)
            return None
        except Exception as exc:
            if isinstance(exc, TimeoutError) and budget is not None and budget.expired():
                stats.handler_timeouts += 1
                log.warning(
                    "handler took over %s s for a type %d request from %s", limit, mtype, peer
                )
            else:
                stats.handler_errors += 1
                log.exception("handler failed on a type %d request from %s", mtype, peer)
            return None


class _Resumed:
    """Awaits the rest of a coroutine whose first step the caller ran (``send(None)``),
    which suspended on ``yielded``: the task waits on that, then drives the coroutine on."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Message], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Message]:
        coro, value = self._coro, self._yielded
        self._yielded = None
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation (the handler budget, a shutdown)
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]


class _Owned:
    """Hands a decoded request to :meth:`TcpServer._answer` without the caller keeping a
    reference, so its values can be freed as soon as the handler is done with them."""

    __slots__ = ("_message",)

    def __init__(self, message: Message) -> None:
        self._message: Message | None = message

    def take(self) -> Message:
        message, self._message = self._message, None
        assert message is not None
        return message
