"""TcpTransport and TcpServer over real loopback sockets: RPCs, pooling, failures, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.tcp import TcpServer, TcpTransport, TransportOptions
from lumera_p2p.secure import StaticPeerVerifier
from lumera_p2p.wire.messages import (
    FindValueResponse,
    Message,
    MessageType,
    Node,
    StoreDataRequest,
    StoreDataResponse,
)
from tests.support import eventually

from .conftest import (
    CLIENT_KEY,
    FAST_LIMITS,
    SERVER_KEY,
    EchoHandler,
    command,
    contact,
    make_key,
    ping,
)

pytestmark = pytest.mark.timeout(30)

MIB = 1024 * 1024


@pytest.fixture
async def transport(verifier: StaticPeerVerifier) -> AsyncIterator[TcpTransport]:
    t = TcpTransport(CLIENT_KEY, verifier)
    yield t
    await t.close()


# --- round trips ------------------------------------------------------------------------------


async def test_ping_round_trip(
    server: TcpServer, transport: TcpTransport, handler: EchoHandler
) -> None:
    response = await transport.call(contact(server), ping(), 5.0)
    assert response.message_type == MessageType.PING
    assert response.sender is not None and response.sender.id == SERVER_KEY.address.encode()
    # The handler is told who the handshake authenticated.
    assert handler.seen == [(MessageType.PING, CLIENT_KEY.address.encode())]
    assert server.stats.requests == 1 and server.stats.sessions == 1


async def test_large_request_and_response_round_trip(
    server: TcpServer, transport: TcpTransport
) -> None:
    # Both exceed OFF_LOOP_SIZE: encoded and decoded in worker threads.
    big = Message(
        sender=Node(id=CLIENT_KEY.address.encode()),
        message_type=MessageType.STORE_DATA,
        data=StoreDataRequest(data=bytes(3 * MIB)),
    )
    response = await transport.call(contact(server), big, 10.0)
    assert isinstance(response.data, StoreDataResponse)
    assert response.data.status.err_msg == str(3 * MIB)
    response = await transport.call(contact(server), command(f"size:{5 * MIB}"), 10.0)
    assert isinstance(response.data, FindValueResponse)
    assert response.data.value == b"v" * (5 * MIB)


async def test_connection_is_reused(server: TcpServer, transport: TcpTransport) -> None:
    for _ in range(5):
        await transport.call(contact(server), ping(), 5.0)
    stats = transport.pool.stats
    assert (stats.adds, stats.misses, stats.reuse_hits) == (1, 1, 4)
    assert transport.pool.open == 1
    assert server.stats.sessions == 1 and server.stats.requests == 5


async def test_slow_call_does_not_block_a_ping_to_the_same_peer(
    server: TcpServer, transport: TcpTransport, handler: EchoHandler
) -> None:
    peer = contact(server)
    await transport.call(peer, ping(), 5.0)  # one pooled connection
    slow = asyncio.create_task(transport.call(peer, command("wait:slow"), 30.0))
    await eventually(lambda: handler.began("wait:slow"), what="the slow call reaching the server")
    # The slow call cannot finish before the gate opens: a ping that completes now did not
    # wait for it (Go would: one connection per peer, held for a whole RPC).
    await transport.call(peer, ping(), 30.0)
    assert not slow.done()
    assert transport.pool.open == 2
    handler.gate("slow").set()
    await slow
    assert transport.pool.idle == 2


async def test_connections_per_peer_are_capped(
    server: TcpServer, verifier: StaticPeerVerifier, handler: EchoHandler
) -> None:
    async with TcpTransport(CLIENT_KEY, verifier, TransportOptions(conns_per_peer=2)) as t:
        peer = contact(server)
        calls = [asyncio.create_task(t.call(peer, command(f"wait:{g}"), 30.0)) for g in "abc"]
        await eventually(lambda: sum(e.startswith("begin") for e in handler.log) == 2)
        first = handler.log[0].removeprefix("begin wait:")
        handler.gate(first).set()
        await eventually(lambda: sum(e.startswith("begin") for e in handler.log) == 3)
        for gate in "abc":
            handler.gate(gate).set()
        await asyncio.gather(*calls)
        # Two ran at once; the third began only after one of them ended, on its connection.
        begins = [i for i, e in enumerate(handler.log) if e.startswith("begin")]
        assert handler.log.index(f"end wait:{first}") < begins[2]
        assert t.pool.stats.adds == 2
        assert server.stats.sessions == 2


async def test_many_concurrent_calls(server: TcpServer, transport: TcpTransport) -> None:
    peer = contact(server)
    results = await asyncio.gather(*(transport.call(peer, ping(), 5.0) for _ in range(50)))
    assert len(results) == 50
    assert transport.pool.open <= transport.options.conns_per_peer
    assert server.stats.requests == 50


# --- stale connections, timeouts, failures ----------------------------------------------------


async def test_server_restart_is_transparent(
    handler: EchoHandler, verifier: StaticPeerVerifier, transport: TcpTransport
) -> None:
    first = TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=FAST_LIMITS)
    await first.start()
    peer = contact(first)
    await transport.call(peer, ping(), 5.0)
    await first.close()
    second = TcpServer(handler, "127.0.0.1", peer.port, SERVER_KEY, verifier, limits=FAST_LIMITS)
    await second.start()
    try:
        await transport.call(peer, ping(), 5.0)
    finally:
        await second.close()
    # The dead pooled connection was either noticed while idle or retried once.
    assert transport.pool.stats.dead + transport.stats.retries == 1
    assert transport.stats.failures == 0
    assert transport.pool.stats.adds == 2


async def test_server_idle_timeout_then_transparent_redial(
    handler: EchoHandler, verifier: StaticPeerVerifier, transport: TcpTransport
) -> None:
    limits = ServerLimits(idle_timeout=0.2)
    async with TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits) as srv:
        await transport.call(contact(srv), ping(), 5.0)
        await eventually(lambda: srv.stats.idle_closed == 1, what="the idle connection closed")
        await transport.call(contact(srv), ping(), 5.0)
        assert transport.stats.failures == 0
        assert transport.pool.stats.adds == 2


async def test_stale_pooled_connection_is_retried_once(
    server: TcpServer, transport: TcpTransport, handler: EchoHandler
) -> None:
    peer = contact(server)
    await transport.call(peer, ping(), 5.0)
    # The server closes the pooled connection without answering: the client cannot tell this
    # from a connection that died while idle, so it redials and sends again, once.
    handler.drop_next = 1
    response = await transport.call(peer, ping(), 5.0)
    assert response.message_type == MessageType.PING
    assert transport.stats.retries == 1
    assert len(handler.seen) == 3
    # Twice in a row: the retry fails too, and there is no third attempt.
    handler.drop_next = 2
    with pytest.raises(TransportError, match="closed before an answer"):
        await transport.call(peer, ping(), 5.0)
    assert transport.stats.retries == 2
    assert len(handler.seen) == 5


async def test_fresh_connection_closed_without_answer_is_not_retried(
    server: TcpServer, transport: TcpTransport, handler: EchoHandler
) -> None:
    handler.drop_next = 1
    with pytest.raises(TransportError):
        await transport.call(contact(server), ping(), 5.0)
    assert transport.stats.retries == 0
    assert len(handler.seen) == 1


async def test_timeout_raises_and_discards_the_connection(
    server: TcpServer, transport: TcpTransport
) -> None:
    peer = contact(server)
    # The handler never answers: only the call's own timeout can end it.
    with pytest.raises(TransportError, match=r"no answer within 0\.2 s"):
        await transport.call(peer, command("wait:never"), 0.2)
    assert transport.stats.timeouts == 1
    assert transport.pool.open == 0 and transport.pool.stats.discarded == 1
    # The next call dials a fresh connection; the half-used one is never handed out.
    await transport.call(peer, ping(), 5.0)
    assert transport.pool.stats.adds == 2


async def test_cancelled_call_discards_the_connection(
    server: TcpServer, transport: TcpTransport, handler: EchoHandler
) -> None:
    peer = contact(server)
    task = asyncio.create_task(transport.call(peer, command("wait:never"), 30.0))
    await eventually(lambda: handler.began("wait:never"), what="the call reaching the server")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert transport.pool.open == 0 and transport.pool.stats.discarded == 1
    await transport.call(peer, ping(), 5.0)


async def test_handler_protocol_error_closes_only_that_connection(
    server: TcpServer, verifier: StaticPeerVerifier, handler: EchoHandler
) -> None:
    peer = contact(server)
    async with (
        TcpTransport(CLIENT_KEY, verifier) as good,
        TcpTransport(CLIENT_KEY, verifier) as bad,
    ):
        await good.call(peer, ping(), 5.0)
        with pytest.raises(TransportError):
            await bad.call(peer, command("protocol-error"), 5.0)
        assert server.stats.protocol_errors == 1
        await good.call(peer, ping(), 5.0)
        assert good.pool.stats.adds == 1  # its connection survived
        assert bad.pool.open == 0


async def test_handler_crash_is_counted_and_closes_its_connection(
    server: TcpServer, transport: TcpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    peer = contact(server)
    with pytest.raises(TransportError):
        await transport.call(peer, command("crash"), 5.0)
    assert server.stats.handler_errors == 1
    assert "handler failed" in caplog.text
    await transport.call(peer, ping(), 5.0)  # the server carries on


async def test_handler_timeout_closes_the_connection(
    handler: EchoHandler, verifier: StaticPeerVerifier, transport: TcpTransport
) -> None:
    limits = ServerLimits(handler_timeout=0.2)
    async with TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits) as srv:
        with pytest.raises(TransportError, match="closed before an answer"):
            await transport.call(contact(srv), command("wait:never"), 30.0)
        assert srv.stats.handler_timeouts == 1


async def test_connection_refused(transport: TcpTransport, server: TcpServer) -> None:
    port = server.port
    await server.close()
    with pytest.raises(TransportError, match="cannot connect"):
        await transport.call(Contact(SERVER_KEY.address.encode(), "127.0.0.1", port), ping(), 2)
    assert transport.stats.dial_failures == 1


async def test_wrong_identity_at_the_address_is_refused(
    server: TcpServer, transport: TcpTransport
) -> None:
    impostor = Contact(make_key("someone else").address.encode(), "127.0.0.1", server.port)
    with pytest.raises(TransportError, match="cannot connect"):
        await transport.call(impostor, ping(), 5.0)
    assert transport.pool.open == 0


async def test_unregistered_client_is_refused(server: TcpServer) -> None:
    stranger = make_key("not registered")
    async with TcpTransport(stranger, StaticPeerVerifier([SERVER_KEY.address])) as t:
        with pytest.raises(TransportError):
            await t.call(contact(server), ping(stranger), 5.0)
    await eventually(lambda: server.stats.handshake_failures == 1, what="the refusal counted")


async def test_oversized_answer_is_refused(server: TcpServer, verifier: StaticPeerVerifier) -> None:
    options = TransportOptions(max_response_size=1000)
    async with TcpTransport(CLIENT_KEY, verifier, options) as t:
        with pytest.raises(TransportError, match="over our limit"):
            await t.call(contact(server), command("size:5000"), 5.0)
        assert t.pool.open == 0


# --- pool through the transport ---------------------------------------------------------------


async def test_pool_capacity_evicts_least_recently_used(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    servers = [
        TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=FAST_LIMITS)
        for _ in range(3)
    ]
    for srv in servers:
        await srv.start()
    try:
        async with TcpTransport(CLIENT_KEY, verifier, TransportOptions(pool_capacity=2)) as t:
            for srv in servers:
                await t.call(contact(srv), ping(), 5.0)
            assert t.pool.open == 2 and t.pool.stats.evictions == 1
            # The first server's connection was the least recently used: it was dropped.
            await t.call(contact(servers[2]), ping(), 5.0)
            assert t.pool.stats.reuse_hits == 1
            await t.call(contact(servers[0]), ping(), 5.0)
            assert t.pool.stats.adds == 4
    finally:
        for srv in servers:
            await srv.close()


async def test_idle_connections_are_pruned(server: TcpServer, verifier: StaticPeerVerifier) -> None:
    options = TransportOptions(idle_timeout=0.1, prune_interval=0.05)
    async with TcpTransport(CLIENT_KEY, verifier, options) as t:
        await t.call(contact(server), ping(), 5.0)
        assert t.pool.open == 1
        await eventually(lambda: t.pool.open == 0, what="the idle connection pruned")
        assert t.pool.stats.pruned == 1
        await t.call(contact(server), ping(), 5.0)


async def test_snapshot_names(transport: TcpTransport, server: TcpServer) -> None:
    await transport.call(contact(server), ping(), 5.0)
    snap = transport.snapshot()
    assert snap["calls"] == 1 and snap["pool_open"] == 1 and snap["pool_capacity"] == 256


# --- shutdown ---------------------------------------------------------------------------------


async def test_server_close_with_connections_open(
    handler: EchoHandler, verifier: StaticPeerVerifier, transport: TcpTransport
) -> None:
    srv = TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=FAST_LIMITS)
    await srv.start()
    peer = contact(srv)
    await transport.call(peer, ping(), 5.0)
    silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", srv.port)
    busy = asyncio.create_task(transport.call(peer, command("wait:never"), 60.0))
    await eventually(lambda: handler.began("wait:never") and srv.connections == 2)
    # The busy handler never finishes by itself: close must not wait for it.
    await asyncio.wait_for(srv.close(), 20.0)
    assert srv.connections == 0
    with pytest.raises(TransportError):
        await asyncio.wait_for(busy, 2.0)
    assert await silent_reader.read() == b""
    silent_writer.close()
    with pytest.raises(TransportError):
        await transport.call(peer, ping(), 2.0)
    await srv.close()  # idempotent


async def test_transport_close_fails_calls(
    server: TcpServer, verifier: StaticPeerVerifier, handler: EchoHandler
) -> None:
    t = TcpTransport(CLIENT_KEY, verifier)
    peer = contact(server)
    await t.call(peer, ping(), 5.0)
    busy = asyncio.create_task(t.call(peer, command("wait:never"), 60.0))
    await eventually(lambda: handler.began("wait:never"), what="the call reaching the server")
    await t.close()
    with pytest.raises(TransportError):
        await asyncio.wait_for(busy, 2.0)
    with pytest.raises(TransportError, match="closed"):
        await t.call(peer, ping(), 5.0)
    assert t.pool.open == 0
    await t.close()  # idempotent
