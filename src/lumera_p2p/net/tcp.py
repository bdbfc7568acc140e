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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Final

from lumera_p2p.errors import (
    HandshakeTimeoutError,
    OverBudget,
    PeerRejected,
    ProtocolError,
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
    decode_frame_body,
    encode_frame,
    payload_hint,
    read_body_view,
    read_frame,
    read_frame_length,
    write_frame,
)
from lumera_p2p.net.limits import KeyedRateLimiter, ServerLimits, TokenBucket, transfer_deadline
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
from lumera_p2p.wire.messages import MAX_PAYLOAD_SIZE, Message

#: ``handler(request, peer_id)``: ``peer_id`` is the authenticated bech32 address as bytes.
Handler = Callable[[Message, bytes], Awaitable[Message]]

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
    #: The largest response body read (the protocol's 400 MB by default).
    max_response_size: int = MAX_PAYLOAD_SIZE
    #: Messages above this size are encoded and decoded in a worker thread.
    off_loop_size: int = OFF_LOOP_SIZE

    def __post_init__(self) -> None:
        if self.dial_timeout <= 0:
            raise ValueError(f"dial_timeout must be positive, not {self.dial_timeout}")
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

    def snapshot(self) -> dict[str, int]:
        """Client and pool counters by name (pool ones prefixed ``pool_``)."""
        pool = {f"pool_{name}": value for name, value in self.pool.snapshot().items()}
        return {**asdict(self.stats), **pool}

    async def call(self, peer: Contact, request: Message, timeout: float) -> Message:
        """Send ``request`` to ``peer`` and return its answer, all within ``timeout`` seconds."""
        if self.pool.closed:
            raise TransportError("transport is closed")
        self.stats.calls += 1
        try:
            async with asyncio.timeout(timeout):
                try:
                    frame = await encode_frame(request, self.options.off_loop_size)
                except GobEncodeError as exc:  # e.g. over 400 MB: no peer would take it
                    raise TransportError(f"{peer}: cannot encode the request: {exc}") from exc
                return await self._exchange(peer, frame)
        except TimeoutError:
            self.stats.timeouts += 1
            self.stats.failures += 1
            raise TransportError(f"{peer}: no answer within {timeout} s") from None
        except TransportError:
            self.stats.failures += 1
            raise

    async def _exchange(self, peer: Contact, frame: bytes) -> Message:
        key = peer.pool_key
        pool = self.pool
        async with pool.slot(key):
            conn = pool.take(key)
            reused = conn is not None
            while True:
                if conn is None:
                    conn = await self._dial(peer)
                    pool.add(conn)
                try:
                    response = await self._round_trip(conn, frame)
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
                except (ProtocolError, OSError) as exc:
                    pool.discard(conn)
                    raise TransportError(f"{peer}: {str(exc) or type(exc).__name__}") from exc
                except BaseException:
                    # Timeout or cancellation mid-RPC: the stream may hold half a frame.
                    pool.discard(conn)
                    raise
                pool.release(key, conn)
                return response

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
            )
        except (OSError, ProtocolError) as exc:  # TimeoutError is an OSError
            self.stats.dial_failures += 1
            reason = str(exc) or type(exc).__name__
            raise TransportError(f"{peer}: cannot connect: {reason}") from exc

    async def _round_trip(self, conn: SecureStream, frame: bytes) -> Message:
        try:
            conn.write(frame)
            await conn.drain()
        except ConnectionError as exc:
            raise _StaleConnection from exc
        self.stats.bytes_sent += len(frame)
        # Bounded by the caller's timeout; the length is checked before the body is read.
        body = await read_frame(conn, max_size=self.options.max_response_size)
        if body is None:
            raise _StaleConnection
        self.stats.bytes_received += 4 + len(body)
        return await decode_frame_body(body, self._cache, self.options.off_loop_size)

    async def close(self) -> None:
        """Close every connection; later calls raise ``TransportError``. Idempotent."""
        await self.pool.close()

    async def __aenter__(self) -> TcpTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


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
        """Answer requests until the peer leaves or breaks a rule; every exit closes."""
        self.stats.sessions += 1
        peer = stream.peer_address
        try:
            while await self._serve_one(stream, peer):
                pass
        except ProtocolError as exc:
            self.stats.protocol_errors += 1
            log.debug("closing connection from %s: %s", peer, exc)
            stream.abort()
        except ConnectionError as exc:
            log.debug("connection from %s lost: %s", peer, exc)
            stream.abort()

    async def _serve_one(self, stream: SecureStream, peer: str) -> bool:
        """Read one request, answer it; ``False`` when the connection is to be closed."""
        lim, stats = self.limits, self.stats
        try:
            async with asyncio.timeout(lim.idle_timeout):
                length = await read_frame_length(stream)
        except TimeoutError:
            # Idle, or stuck inside a header: either way, never resume mid-frame.
            stats.idle_closed += 1
            stream.abort()
            return False
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
        stats.bytes_received += 4 + length
        # Values of VIEW_MIN bytes or more stay views into the body: the reservation of the
        # body covers them until the handler is done with the request.
        request = await decode_frame_body(body, self._cache, views_from=VIEW_MIN)
        del body
        stats.requests += 1
        response = await self._answer(_Owned(request), peer, reservation)
        if response is None:
            stream.abort()
            return False
        try:
            await write_frame(
                stream,
                response,
                transfer_deadline(len(response), lim.frame_grace, lim.min_transfer_rate),
            )
        except TimeoutError:
            stats.slow_closed += 1
            log.debug("%s does not read its %d-byte answer", peer, len(response))
            stream.abort()
            return False
        stats.bytes_sent += len(response)
        return True

    async def _answer(self, owned: _Owned, peer: str, reservation: Reservation) -> bytes | None:
        """The encoded response, or ``None`` if the handler failed (not the peer's fault).

        The handler sees ``reservation`` as its :func:`current_reservation` and grows it for
        the answer it builds; the request is dropped before the answer is encoded, and the
        reservation then holds what the encoded answer takes. A ``ProtocolError`` from the
        handler (the peer broke the protocol) propagates.
        """
        stats = self.stats
        request = owned.take()
        mtype = request.message_type
        budget = asyncio.timeout(self.limits.handler_timeout)
        try:
            async with budget:
                with serving(reservation):
                    response = await self._handler(request, peer.encode())
            del request
            # The answer's values exist now and the frame is about to; count both.
            size = payload_hint(response)
            reservation.resize(max(reservation.size, 2 * size))
            frame = await encode_frame(response)
            del response
            reservation.resize(len(frame))
            give_back_freed_memory(size)  # the values are gone; the frame is one mapping
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
            if isinstance(exc, TimeoutError) and budget.expired():
                stats.handler_timeouts += 1
                log.warning(
                    "handler took over %s s for a type %d request from %s",
                    self.limits.handler_timeout,
                    mtype,
                    peer,
                )
            else:
                stats.handler_errors += 1
                log.exception("handler failed on a type %d request from %s", mtype, peer)
            return None


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
