"""Hostile peers aimed at the server while a legitimate client keeps getting answers.

Each abuse must end with the server closing the abuser's connection (and counting why), and
must not cost the legitimate client a single failed RPC.
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
from tests.support import peer_closed

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
) -> AsyncIterator[list[float]]:
    """Ping ``server`` every ``interval`` s in the background; yields the round-trip times.

    Any failed ping fails the test on exit. The connection is made before the abuse starts.
    """
    transport = TcpTransport(CLIENT_KEY, verifier)
    peer = contact(server)
    await transport.call(peer, ping(), 2.0)
    times: list[float] = []
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            await transport.call(peer, ping(), 2.0)
            times.append(time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    task = asyncio.create_task(loop())
    try:
        yield times
    finally:
        stop.set()
        await task  # re-raises a TransportError
        await transport.close()
    assert times, "the legitimate client got no answer at all"


async def rogue_stream(server: TcpServer, verifier: StaticPeerVerifier) -> SecureStream:
    """A peer that passes the handshake (it is registered) and then misbehaves."""
    return await secure_connect(
        "127.0.0.1", server.port, ROGUE_KEY, SERVER_KEY.address, verifier, timeout=2.0
    )


async def closed_by_server(stream: SecureStream, timeout: float) -> float:
    """Seconds until the server closes ``stream`` (fails the test after ``timeout``)."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionError, ProtocolError):
            while await stream.read(65536):
                pass
    return time.monotonic() - started


async def trickle(stream: SecureStream, data: bytes | None, interval: float = 0.2) -> None:
    """Send ``data`` one byte at a time (forever with ``None``) until the server hangs up."""
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
        await closed_by_server(rogue, 2.0)
        rogue.abort()
    # Garbage as a body, or a random header promising more than ever comes.
    assert server.stats.protocol_errors + server.stats.slow_closed == 1


async def test_half_open_handshake(server: TcpServer, verifier: StaticPeerVerifier) -> None:
    async with legit_client(server, verifier):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        assert await peer_closed(reader, 3.0)  # sent nothing: dropped at the handshake timeout
        elapsed = time.monotonic() - started
        writer.close()
    assert FAST_LIMITS.handshake_timeout - 0.1 <= elapsed < FAST_LIMITS.handshake_timeout + 1.0
    assert server.stats.handshake_failures == 1


async def test_endless_slow_sender_inside_a_frame(
    server: TcpServer, verifier: StaticPeerVerifier
) -> None:
    async with legit_client(server, verifier):
        rogue = await rogue_stream(server, verifier)
        rogue.write(frame_header(1000))  # promises 1000 bytes, then 5 bytes a second forever
        sender = asyncio.create_task(trickle(rogue, None))
        elapsed = await closed_by_server(rogue, 3.0)
        await sender
        rogue.abort()
    assert elapsed < FAST_LIMITS.frame_grace + 1.0
    assert server.stats.slow_closed == 1


async def test_slow_sender_from_the_first_byte(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    # A whole valid Ping at 5 bytes a second: stuck in the header past the idle timeout.
    limits = ServerLimits(idle_timeout=0.5, frame_grace=0.5)
    async with TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits) as srv:
        async with legit_client(srv, verifier):
            rogue = await rogue_stream(srv, verifier)
            sender = asyncio.create_task(trickle(rogue, encode_message(ping(ROGUE_KEY))))
            elapsed = await closed_by_server(rogue, 3.0)
            await sender
            rogue.abort()
        assert elapsed < 1.5
        assert srv.stats.idle_closed == 1
        assert all(peer != ROGUE_KEY.address.encode() for _, peer in handler.seen)


async def test_oversized_frame_header(server: TcpServer, verifier: StaticPeerVerifier) -> None:
    async with legit_client(server, verifier):
        rogue = await rogue_stream(server, verifier)
        rogue.write(frame_header(401 * 1024 * 1024))  # over the 400 MB limit
        elapsed = await closed_by_server(rogue, 2.0)
        rogue.abort()
    assert elapsed < 0.5  # refused on the header, not after a read timeout
    assert server.stats.protocol_errors == 1


async def test_large_declared_frame_that_never_comes(
    server: TcpServer, verifier: StaticPeerVerifier
) -> None:
    # 300 MB is allowed, but the deadline only grows with bytes actually received.
    async with legit_client(server, verifier):
        rogue = await rogue_stream(server, verifier)
        rogue.write(frame_header(300 * 1024 * 1024))
        rogue.write(b"some")
        elapsed = await closed_by_server(rogue, 3.0)
        rogue.abort()
    assert elapsed < FAST_LIMITS.frame_grace + 1.0
    assert server.stats.slow_closed == 1


async def test_per_ip_rate_limit_refuses_a_flood(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(per_ip_rate=0.001, per_ip_burst=3, handshake_timeout=0.5)
    srv = TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits)
    # The legitimate client spends one of 127.0.0.1's tokens, then keeps its connection.
    async with srv, legit_client(srv, verifier):
        flood = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(10)]
        await asyncio.sleep(0.1)
        assert srv.stats.refused_ip_rate == 8  # burst 3, minus the legitimate one
        # Refused connections are closed at once, not after the handshake timeout.
        closed = [await peer_closed(reader, 0.2) for reader, _ in flood[2:]]
        assert all(closed)
        # Another address has its own bucket (all of 127/8 is loopback on Linux).
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", srv.port, local_addr=("127.0.0.2", 0)
        )
        await asyncio.sleep(0.1)
        assert srv.stats.refused_ip_rate == 8
        for _, w in [*flood, (reader, writer)]:
            w.close()


async def test_global_rate_limit(handler: EchoHandler, verifier: StaticPeerVerifier) -> None:
    limits = ServerLimits(global_rate=0.001, global_burst=2, handshake_timeout=0.5)
    async with TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits) as srv:
        conns = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert srv.stats.refused_global_rate == 3
        for _, w in conns:
            w.close()


async def test_handshake_slots_are_limited(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(max_handshakes=2, handshake_timeout=0.5)
    async with TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits) as srv:
        silent = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        async with TcpTransport(CLIENT_KEY, verifier) as t:
            started = time.monotonic()
            with pytest.raises(TransportError):
                await t.call(contact(srv), ping(), 2.0)
            assert time.monotonic() - started < 0.3  # refused at once, not queued
            # One address holds both slots (the per-address cap is capped at the total).
            assert srv.stats.refused_address_handshakes == 1
            # Once the silent ones time out, their slots are free again.
            for reader, _ in silent:
                assert await peer_closed(reader, 2.0)
            await t.call(contact(srv), ping(), 2.0)
        for _, w in silent:
            w.close()


async def test_open_connections_are_capped(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(max_connections=2, handshake_timeout=0.5)
    srv = TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits)
    async with srv, legit_client(srv, verifier):
        conns = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(3)]
        await asyncio.sleep(0.1)
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
        await asyncio.sleep(0.1)
        assert srv.stats.refused_address_handshakes == 4
        assert srv.connections == 2
        for _, w in conns:
            w.close()
