"""Requests and answers that the fast path cannot take whole still get through.

Both ends take a small frame straight from the record layer when it arrives in one record;
a frame split across records (a Go peer sends 4 KiB records; a slow link delivers a header
and its body apart) is read by the ordinary readers from the same byte on. These tests send
frames split in every way that matters and check that the answers are the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lumera_p2p.kademlia import Contact
from lumera_p2p.net.frames import read_message
from lumera_p2p.net.tcp import TcpServer, TcpTransport
from lumera_p2p.secure import (
    IncomingConnection,
    SecureStream,
    StaticPeerVerifier,
    secure_connect,
    start_secure_server,
)
from lumera_p2p.wire.messages import (
    HEADER_SIZE,
    Message,
    MessageType,
    Node,
    StoreDataRequest,
    StoreDataResponse,
    encode_message,
)

from .conftest import CLIENT_KEY, ROGUE_KEY, SERVER_KEY, contact, ping

pytestmark = pytest.mark.timeout(30)


def store(size: int, sender: str = ROGUE_KEY.address) -> Message:
    return Message(
        sender=Node(id=sender.encode()),
        message_type=MessageType.STORE_DATA,
        data=StoreDataRequest(data=b"v" * size),
    )


async def send_in_pieces(stream: SecureStream, frame: bytes, cuts: list[int]) -> None:
    """``frame`` as one record per piece (each drained before the next is written)."""
    start = 0
    for cut in [*cuts, len(frame)]:
        stream.write(frame[start:cut])
        await stream.drain()
        await asyncio.sleep(0.01)  # so the pieces arrive apart
        start = cut


@pytest.fixture
async def rogue(server: TcpServer, verifier: StaticPeerVerifier) -> AsyncIterator[SecureStream]:
    stream = await secure_connect(
        "127.0.0.1", server.port, ROGUE_KEY, SERVER_KEY.address, verifier, timeout=5
    )
    yield stream
    stream.abort()


@pytest.mark.parametrize(
    "cuts",
    [
        [3],  # inside the header
        [HEADER_SIZE],  # the header, then the body
        [HEADER_SIZE + 10, HEADER_SIZE + 500],  # the body in three records
        list(range(4096, 12_000, 4096)),  # Go's 4 KiB records
    ],
)
async def test_split_requests_are_answered(rogue: SecureStream, cuts: list[int]) -> None:
    for size in (1000, 9000):
        frame = encode_message(store(size))
        await send_in_pieces(rogue, frame, [c for c in cuts if c < len(frame)])
        answer = await asyncio.wait_for(read_message(rogue), 10)
        assert answer is not None and isinstance(answer.data, StoreDataResponse)
        assert answer.data.status.err_msg == str(size)
    # Then a whole one on the same connection: back on the fast path, still aligned.
    rogue.send_now(encode_message(ping(ROGUE_KEY)))
    answer = await asyncio.wait_for(read_message(rogue), 10)
    assert answer is not None and answer.message_type == MessageType.PING


async def test_split_answers_are_read(verifier: StaticPeerVerifier) -> None:
    """A server that sends its answers in pieces (header apart, body in several records)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def serve(conn: IncomingConnection) -> None:
        stream = await conn.handshake()
        turn = 0
        while (request := await read_message(stream)) is not None:
            answer = encode_message(
                Message(
                    sender=Node(id=SERVER_KEY.address.encode()),
                    message_type=request.message_type,
                )
            )
            cuts = [[3], [HEADER_SIZE], [HEADER_SIZE + 5, HEADER_SIZE + 20], []][turn % 4]
            turn += 1
            await send_in_pieces(stream, answer, cuts)

    def on_connection(conn: IncomingConnection) -> None:
        task = loop.create_task(serve(conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    srv = await start_secure_server(on_connection, "127.0.0.1", 0, SERVER_KEY, verifier)
    port = srv.sockets[0].getsockname()[1]
    transport = TcpTransport(CLIENT_KEY, verifier)
    try:
        peer = contact_at(port)
        for _ in range(8):
            answer = await transport.call(peer, ping(), 10.0)
            assert answer.message_type == MessageType.PING
        assert transport.stats.failures == 0
        assert transport.pool.stats.adds == 1  # one connection all along: never misaligned
    finally:
        await transport.close()
        srv.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def contact_at(port: int) -> Contact:
    return Contact(SERVER_KEY.address.encode(), "127.0.0.1", port)


async def test_many_small_rpcs_keep_the_counters(
    server: TcpServer, verifier: StaticPeerVerifier
) -> None:
    transport = TcpTransport(CLIENT_KEY, verifier)
    try:
        peer = contact(server)
        for _ in range(50):
            await transport.call(peer, ping(), 10.0)
        frame = len(encode_message(ping()))
        assert transport.stats.bytes_sent == 50 * frame
        assert server.stats.requests == 50
        assert server.stats.bytes_received == 50 * frame
        assert transport.stats.bytes_received == server.stats.bytes_sent
        assert server.budget.used == 0  # every small reservation given back
        assert transport.pool.stats.adds == 1
    finally:
        await transport.close()
