"""Hostile peers aimed at the server while a legitimate client keeps getting answers.

Each abuse must end with the server closing the abuser's connection (and counting why), and
must not cost the legitimate client a single failed RPC.

No upper bound on time is asserted (a loaded machine is slow, and that is not a bug): which
limit fired is read from the server's counters, and where a limit must not fire *early*, the
time it took is checked from below.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator

import pytest

from lumera_p2p.errors import ProtocolError, TransportError
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.tcp import TcpServer, TcpTransport
from lumera_p2p.secure import SecureStream, StaticPeerVerifier, secure_connect
from lumera_p2p.wire.messages import encode_message, frame_header
from tests.support import eventually, peer_closed

from .conftest import (
    CLIENT_KEY,
    FAST_LIMITS,
    ROGUE_KEY,
    SERVER_KEY,
    EchoHandler,
    contact,
    ping,
)

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def legit_client(
    server: TcpServer, verifier: StaticPeerVerifier, interval: float = 0.05
) -> AsyncIterator[list[int]]:
    """Ping ``server`` about every ``interval`` s in the background, for as long as the block
    runs; yields a one-item list counting the answers.

    Any failed ping fails the test on exit. The connection is made before the abuse starts.
    """
    transport = TcpTransport(CLIENT_KEY, verifier)
    peer = contact(server)
    await transport.call(peer, ping(), 10.0)
    answers = [0]
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            await transport.call(peer, ping(), 10.0)
            answers[0] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)  # the client's own pace

    task = asyncio.create_task(loop())
    try:
        yield answers
    finally:
        stop.set()
        await task  # re-raises a TransportError
        await transport.close()
    assert answers[0], "the legitimate client got no answer at all"


async def rogue_stream(server: TcpServer, verifier: StaticPeerVerifier) -> SecureStream:
    """A peer that passes the handshake (it is registered) and then misbehaves."""
    return await secure_connect(
        "127.0.0.1", server.port, ROGUE_KEY, SERVER_KEY.address, verifier, timeout=2.0
    )


async def closed_by_server(stream: SecureStream, timeout: float = 30.0) -> float:
    """Seconds until the server closes ``stream`` (fails the test after ``timeout``, a
    deadline for a hang, not a bound on how fast the server must be)."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionError, ProtocolError):
            while await stream.read(65536):
                pass
    return time.monotonic() - started


async def trickle(stream: SecureStream, data: bytes | None, interval: float = 0.2) -> None:
    """Send ``data`` one byte every ``interval`` s (forever with ``None``) until the server
    hangs up: the abuser's pace, which is the point of the test."""
    i = 0
    with contextlib.suppress(ConnectionError, ProtocolError):
        while data is None or i < len(data):
            stream.write(b"x" if data is None else data[i : i + 1])
            await stream.drain()
            i += 1
            await asyncio.sleep(interval)


async def test_random_bytes_instead_of_a_handshake(
    server: TcpServer, verifier: StaticPeerVerifier
) -> None:
    async with legit_client(server, verifier):
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(os.urandom(4096))
            assert await peer_closed(reader, 2.0)
            writer.close()
    assert server.stats.handshake_failures == 5


async def test_random_bytes_after_the_handshake(
    server: TcpServer, verifier: StaticPeerVerifier
) -> None:
    async with legit_client(server, verifier):
        rogue = await rogue_stream(server, verifier)
        rogue.write(os.urandom(4096))
        await closed_by_server(rogue)
        rogue.abort()
    # Garbage as a body, or a random header promising more than ever comes.
    assert server.stats.protocol_errors + server.stats.slow_closed == 1


async def test_half_open_handshake(server: TcpServer, verifier: StaticPeerVerifier) -> None:
    async with legit_client(server, verifier):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        assert await peer_closed(reader, 30.0)  # sent nothing: dropped at the handshake timeout
        elapsed = time.monotonic() - started
        writer.close()
    assert elapsed >= FAST_LIMITS.handshake_timeout - 0.1  # not before its time
    assert server.stats.handshake_failures == 1


async def test_endless_slow_sender_inside_a_frame(
    server: TcpServer, verifier: StaticPeerVerifier
) -> None:
    async with legit_client(server, verifier):
        rogue = await rogue_stream(server, verifier)
        rogue.write(frame_header(1000))  # promises 1000 bytes, then 5 bytes a second forever
        sender = asyncio.create_task(trickle(rogue, None))
        elapsed = await closed_by_server(rogue)  # endless: only the frame deadline ends it
        await sender
        rogue.abort()
    assert elapsed >= FAST_LIMITS.frame_grace - 0.1
    assert server.stats.slow_closed == 1
    assert server.stats.idle_closed == 0


async def test_slow_sender_from_the_first_byte(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    # A whole valid Ping at 5 bytes a second: stuck in the header past the idle timeout.
    limits = ServerLimits(idle_timeout=0.5, frame_grace=0.5)
    async with TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits) as srv:
        async with legit_client(srv, verifier):
            rogue = await rogue_stream(srv, verifier)
            sender = asyncio.create_task(trickle(rogue, encode_message(ping(ROGUE_KEY))))
            elapsed = await closed_by_server(rogue)
            await sender
            rogue.abort()
        # Cut off inside the header, at the idle timeout: long before the trickle would end.
        assert elapsed >= limits.idle_timeout - 0.1
        assert srv.stats.idle_closed == 1
        assert srv.stats.slow_closed == 0
        assert all(peer != ROGUE_KEY.address.encode() for _, peer in handler.seen)


async def test_oversized_frame_header(server: TcpServer, verifier: StaticPeerVerifier) -> None:
    async with legit_client(server, verifier):
        rogue = await rogue_stream(server, verifier)
        rogue.write(frame_header(401 * 1024 * 1024))  # over the 400 MB limit
        await closed_by_server(rogue)
        rogue.abort()
    # Refused on the header as a protocol error, not after a read timeout.
    assert server.stats.protocol_errors == 1
    assert server.stats.slow_closed == 0 and server.stats.idle_closed == 0


async def test_large_declared_frame_that_never_comes(
    server: TcpServer, verifier: StaticPeerVerifier
) -> None:
    # 300 MB is allowed, but the deadline only grows with bytes actually received.
    async with legit_client(server, verifier):
        rogue = await rogue_stream(server, verifier)
        rogue.write(frame_header(300 * 1024 * 1024))
        rogue.write(b"some")
        elapsed = await closed_by_server(rogue)
        rogue.abort()
    assert elapsed >= FAST_LIMITS.frame_grace - 0.1
    assert server.stats.slow_closed == 1


async def test_per_ip_rate_limit_refuses_a_flood(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(per_ip_rate=0.001, per_ip_burst=3, handshake_timeout=0.5)
    srv = TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits)
    # The legitimate client spends one of 127.0.0.1's tokens, then keeps its connection.
    async with srv, legit_client(srv, verifier):
        flood = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(10)]
        await eventually(lambda: srv.stats.accepted + srv.stats.refused_ip_rate == 11)
        assert srv.stats.refused_ip_rate == 8  # burst 3, minus the legitimate one
        # Refused connections are closed at accept, not after the handshake timeout: the
        # handshake-failure count stays where it was while they are found closed.
        failures = srv.stats.handshake_failures
        closed = [await peer_closed(reader, 30.0) for reader, _ in flood[2:]]
        assert all(closed)
        assert srv.stats.handshake_failures == failures
        # Another address has its own bucket (all of 127/8 is loopback on Linux).
        accepted = srv.stats.accepted
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", srv.port, local_addr=("127.0.0.2", 0)
        )
        await eventually(lambda: srv.stats.accepted == accepted + 1, what="127.0.0.2 admitted")
        assert srv.stats.refused_ip_rate == 8
        for _, w in [*flood, (reader, writer)]:
            w.close()


async def test_global_rate_limit(handler: EchoHandler, verifier: StaticPeerVerifier) -> None:
    limits = ServerLimits(global_rate=0.001, global_burst=2, handshake_timeout=0.5)
    async with TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits) as srv:
        conns = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(5)]
        await eventually(lambda: srv.stats.accepted + srv.stats.refused_global_rate == 5)
        assert srv.stats.refused_global_rate == 3
        for _, w in conns:
            w.close()


async def test_handshake_slots_are_limited(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    # The silent ones must still hold their slots when the call dials, on a busy machine
    # too (at 0.5 s they were sometimes gone by then, and the call rightly got through).
    limits = ServerLimits(max_handshakes=2, handshake_timeout=2.0)
    async with TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits) as srv:
        silent = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(2)]
        await eventually(lambda: srv.connections == 2, what="both silent ones handshaking")
        async with TcpTransport(CLIENT_KEY, verifier) as t:
            # Refused at once, not queued: a queued call would get a slot when the silent
            # ones time out (2 s) and succeed within its 10 s; this one fails.
            with pytest.raises(TransportError):
                await t.call(contact(srv), ping(), 10.0)
            # One address holds both slots (the per-address cap is capped at the total).
            assert srv.stats.refused_address_handshakes == 1
            # Once the silent ones time out, their slots are free again.
            for reader, _ in silent:
                assert await peer_closed(reader, 30.0)
            await eventually(lambda: srv.connections == 0, what="the silent ones' slots freed")
            await t.call(contact(srv), ping(), 10.0)
        for _, w in silent:
            w.close()


async def test_open_connections_are_capped(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(max_connections=2, handshake_timeout=0.5)
    srv = TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits)
    async with srv, legit_client(srv, verifier):
        conns = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(3)]
        # The legitimate client holds one of the two; of the three more, one fits.
        await eventually(lambda: srv.stats.accepted + srv.stats.refused_connections == 4)
        assert srv.stats.refused_connections == 2
        assert srv.connections == 2
        for _, w in conns:
            w.close()


async def test_handshake_limit_holds_for_a_simultaneous_burst(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(max_handshakes=2, handshake_timeout=0.5)
    async with TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits) as srv:
        conns = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", srv.port) for _ in range(6))
        )
        await eventually(lambda: srv.stats.accepted + srv.stats.refused_address_handshakes == 6)
        assert srv.stats.refused_address_handshakes == 4
        assert srv.connections == 2
        for _, w in conns:
            w.close()
