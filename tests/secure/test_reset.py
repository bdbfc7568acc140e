"""A connection reset right after the handshake reads like EOF ("Looks like EOF" in the README).

A Go server that refuses our handshake sends its HS2 first, then closes. If our first record
frame is already in its socket by then, its kernel answers the close with RST instead of FIN,
so our first read fails with ECONNRESET instead of seeing EOF; which one happens is a race.
Nothing else came back in either case, so both must read the same: as a clean end of stream.
A reset in the middle of a frame is still a truncated frame, an error.

The server here is a raw non-blocking socket driven by the test, so it can leave our bytes
unread and produce the reset deterministically.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from lumera_p2p.errors import ProtocolError, TransportError
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.kademlia import Contact
from lumera_p2p.net.tcp import TcpTransport, TransportOptions
from lumera_p2p.secure.channel import SecureStream, secure_connect
from lumera_p2p.secure.handshake import (
    PeerType,
    StaticPeerVerifier,
    create_request,
    encode_message,
    generate_ephemeral,
)
from lumera_p2p.wire.messages import Message, MessageType, Node

#: Each handshake message is ``u32be len ‖ info ‖ u32be len ‖ sig``.
_U32BE = struct.Struct(">I")

RawServer = Callable[[socket.socket], Awaitable[None]]


async def recv_exactly(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(sock, n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


async def read_hs(sock: socket.socket) -> bytes:
    """Read one whole handshake message off the raw socket."""
    head = await recv_exactly(sock, 4)
    info = await recv_exactly(sock, _U32BE.unpack(head)[0])
    sig_head = await recv_exactly(sock, 4)
    sig = await recv_exactly(sock, _U32BE.unpack(sig_head)[0])
    return head + info + sig_head + sig


async def wait_unread(sock: socket.socket) -> None:
    """Wait until the client's next bytes sit in our receive queue (not reading them)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())
    assert sock.recv(1, socket.MSG_PEEK)  # data, not a FIN


def reset(sock: socket.socket) -> None:
    """Close so that the peer gets RST: unread data already guarantees it; linger 0 too."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawServer], Awaitable[int]]]:
    """Start a one-connection raw server running ``script(sock)``; yields a starter."""
    listeners: list[socket.socket] = []
    tasks: list[asyncio.Task[None]] = []

    async def start(script: RawServer) -> int:
        loop = asyncio.get_running_loop()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        listeners.append(listener)

        async def serve() -> None:
            sock, _ = await loop.sock_accept(listener)
            sock.setblocking(False)
            try:
                await script(sock)
            finally:
                if sock.fileno() != -1:
                    sock.close()

        tasks.append(loop.create_task(serve()))
        port: int = listener.getsockname()[1]
        return port

    yield start
    for task in tasks:
        if not task.done():
            task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for listener in listeners:
        listener.close()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


def hs2_from(server_key: PrivateKey) -> bytes:
    return encode_message(*create_request(server_key, PeerType.SUPERNODE, generate_ephemeral()))


def reset_seen(stream: SecureStream) -> bool:
    """Whether the connection really ended with a reset (so the test tests what it says)."""
    return isinstance(stream._proto._lost_exc, ConnectionResetError)


async def test_reset_after_our_first_frame_reads_as_eof(
    raw_server: Callable[[RawServer], Awaitable[int]],
    client_key: PrivateKey,
    server_key: PrivateKey,
    verifier: StaticPeerVerifier,
) -> None:
    """Go's race: HS2 comes back, our Ping reaches the socket, the server closes: RST."""

    async def refuse_after_answering(sock: socket.socket) -> None:
        await read_hs(sock)
        await asyncio.get_running_loop().sock_sendall(sock, hs2_from(server_key))
        await wait_unread(sock)
        sock.close()  # our frame is unread in its queue: the kernel sends RST

    port = await raw_server(refuse_after_answering)
    async with asyncio.timeout(10):
        stream = await secure_connect(
            "127.0.0.1", port, client_key, server_key.address, verifier, timeout=5
        )
        stream.write(b"\x00" * 375)  # a Ping's worth
        await stream.drain()
        assert await stream.read(1) == b""
        assert stream.at_eof()
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await stream.readexactly(8)
        assert info.value.partial == b""
    assert reset_seen(stream)
    stream.close()


async def test_reset_with_nothing_sent_reads_as_eof(
    raw_server: Callable[[RawServer], Awaitable[int]],
    client_key: PrivateKey,
    server_key: PrivateKey,
    verifier: StaticPeerVerifier,
) -> None:
    async def answer_then_reset(sock: socket.socket) -> None:
        await read_hs(sock)
        await asyncio.get_running_loop().sock_sendall(sock, hs2_from(server_key))
        reset(sock)

    port = await raw_server(answer_then_reset)
    async with asyncio.timeout(10):
        stream = await secure_connect(
            "127.0.0.1", port, client_key, server_key.address, verifier, timeout=5
        )
        assert await stream.read(100) == b""
    assert reset_seen(stream)
    stream.close()


async def test_reset_in_the_middle_of_a_frame_is_an_error(
    raw_server: Callable[[RawServer], Awaitable[int]],
    client_key: PrivateKey,
    server_key: PrivateKey,
    verifier: StaticPeerVerifier,
) -> None:
    async def half_a_frame_then_reset(sock: socket.socket) -> None:
        await read_hs(sock)
        # Any 12 bytes after HS2 are the start of a frame that never finishes.
        await asyncio.get_running_loop().sock_sendall(
            sock, hs2_from(server_key) + b"\x40" + bytes(11)
        )
        reset(sock)

    port = await raw_server(half_a_frame_then_reset)
    async with asyncio.timeout(10):
        stream = await secure_connect(
            "127.0.0.1", port, client_key, server_key.address, verifier, timeout=5
        )
        with pytest.raises(ProtocolError, match="middle of a record frame"):
            await stream.read(100)
    stream.close()


async def test_transport_sees_a_refusal_by_reset_as_a_close(
    raw_server: Callable[[RawServer], Awaitable[int]],
    client_key: PrivateKey,
    server_key: PrivateKey,
    verifier: StaticPeerVerifier,
) -> None:
    """End to end the RPC fails as "closed before an answer", the outcome of a FIN.

    (``net.frames.read_header`` also maps a reset before the first byte to an end of stream,
    so this pins the transport's behaviour rather than the stream's.)
    """

    async def refuse_after_answering(sock: socket.socket) -> None:
        await read_hs(sock)
        await asyncio.get_running_loop().sock_sendall(sock, hs2_from(server_key))
        await wait_unread(sock)
        sock.close()

    port = await raw_server(refuse_after_answering)
    peer = Contact(server_key.address.encode(), "127.0.0.1", port)
    request = Message(
        sender=Node(id=client_key.address.encode(), ip="127.0.0.1", port=4445, version="v2.6.2"),
        receiver=Node(id=peer.id, ip=peer.ip, port=peer.port),
        message_type=int(MessageType.PING),
    )
    async with TcpTransport(client_key, verifier, TransportOptions(dial_timeout=5)) as transport:
        with pytest.raises(TransportError, match="connection closed before an answer"):
            await transport.call(peer, request, timeout=10)
        assert transport.stats.failures == 1 and transport.stats.dial_failures == 0
