"""Shared keys, verifiers and loopback helpers for the secure-channel tests."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from lumera_p2p.errors import ProtocolError
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.secure.channel import IncomingConnection, SecureStream, start_secure_server
from lumera_p2p.secure.handshake import PeerVerifier, StaticPeerVerifier


def make_key(label: str) -> PrivateKey:
    """A deterministic test key."""
    return PrivateKey(hashlib.sha256(label.encode()).digest())


@pytest.fixture
def client_key() -> PrivateKey:
    return make_key("secure-test client")


@pytest.fixture
def server_key() -> PrivateKey:
    return make_key("secure-test server")


@pytest.fixture
def verifier(client_key: PrivateKey, server_key: PrivateKey) -> StaticPeerVerifier:
    return StaticPeerVerifier([client_key.address, server_key.address])


@dataclass
class Accepted:
    """What the server side of one connection produced."""

    stream: SecureStream | None = None
    error: BaseException | None = None
    conn: IncomingConnection | None = None


@dataclass
class Server:
    """A loopback server (``start_secure_server``) that handshakes every connection."""

    port: int
    results: asyncio.Queue[Accepted] = field(default_factory=asyncio.Queue)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def next(self, timeout: float = 10.0) -> Accepted:
        async with asyncio.timeout(timeout):
            return await self.results.get()


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Collect anything the event loop would log as an unhandled error; must stay empty."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    yield errors
    await asyncio.sleep(0.01)  # let callbacks of closing transports run
    loop.set_exception_handler(None)
    assert not errors, errors


async def start_server(
    key: PrivateKey,
    verifier: PeerVerifier,
    *,
    timeout: float = 5.0,
    delay: float = 0.0,
) -> tuple[Server, asyncio.Server]:
    """Start a server on 127.0.0.1:0; ``delay`` waits before the handshake (early-data tests)."""
    server = Server(port=0)

    async def handle(conn: IncomingConnection) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            stream = await conn.handshake()
        except ProtocolError as exc:
            await server.results.put(Accepted(error=exc, conn=conn))
            return
        await server.results.put(Accepted(stream=stream, conn=conn))

    def on_connection(conn: IncomingConnection) -> None:
        task = asyncio.get_running_loop().create_task(handle(conn))
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    srv = await start_secure_server(on_connection, "127.0.0.1", 0, key, verifier, timeout=timeout)
    server.port = srv.sockets[0].getsockname()[1]
    return server, srv


async def stop_server(server: Server, srv: asyncio.Server) -> None:
    """Close the listener and finish the handshake tasks still running."""
    srv.close()
    for task in list(server.tasks):
        task.cancel()
    await asyncio.gather(*server.tasks, return_exceptions=True)
    await srv.wait_closed()


@pytest.fixture
async def server(server_key: PrivateKey, verifier: StaticPeerVerifier) -> AsyncIterator[Server]:
    srv_state, srv = await start_server(server_key, verifier)
    yield srv_state
    await stop_server(srv_state, srv)
