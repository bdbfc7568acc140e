"""The decode bound (``wire/gob/costs.py``) over real sockets, on both sides.

A registered peer whose request would decode to far more than its size (empty structs,
one-byte elements) has its connection closed before any handler sees the request, while a
legitimate client keeps being answered. A client holds each answer to a size that depends on
what it asked (a FindNode answer of megabytes is refused on its header) and to the same decode
bound as the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lumera_p2p.errors import TransportError
from lumera_p2p.net.frames import SMALL_RESPONSE, VIEW_MIN, response_limit
from lumera_p2p.net.tcp import TcpServer, TcpTransport
from lumera_p2p.secure import StaticPeerVerifier
from lumera_p2p.wire.messages import (
    MAX_PAYLOAD_SIZE,
    BatchFindNodeRequest,
    BatchFindNodeResponse,
    BatchGetValuesRequest,
    FindNodeRequest,
    FindNodeResponse,
    FindValueRequest,
    FindValueResponse,
    Message,
    MessageType,
    Node,
    ResponseStatus,
    encode_message,
)
from tests.support import eventually

from .conftest import CLIENT_KEY, FAST_LIMITS, ROGUE_KEY, SERVER_KEY, EchoHandler, contact, ping
from .test_abuse import closed_by_server, legit_client, rogue_stream

pytestmark = pytest.mark.timeout(60)

NODE = Node(SERVER_KEY.address.encode(), "127.0.0.1", 4445, "v2.4.0", b"h" * 32)


def _request(data: object, mtype: MessageType) -> bytes:
    sender = Node(id=ROGUE_KEY.address.encode())
    return encode_message(Message(sender=sender, message_type=mtype, data=data))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", ["small", "large"])
async def test_an_amplifying_request_closes_only_its_connection(
    server: TcpServer, handler: EchoHandler, verifier: StaticPeerVerifier, size: str
) -> None:
    """A small frame (the generated decoder's path) of 60,000 empty nodes, and a 3 MB frame
    (decoded in place, with views) of 1.5 million one-byte targets."""
    if size == "small":
        frame = _request(FindNodeResponse(ResponseStatus(), [Node()] * 60_000), MessageType.PING)
        assert len(frame) - 8 <= VIEW_MIN
    else:
        frame = _request(BatchFindNodeRequest([b"x"] * 1_500_000), MessageType.BATCH_FIND_NODE)
        assert len(frame) - 8 > VIEW_MIN
    async with legit_client(server, verifier) as answers:
        rogue = await rogue_stream(server, verifier)
        rogue.write(frame)
        await rogue.drain()
        await closed_by_server(rogue)
        rogue.abort()
        after = answers[0]
        await eventually(lambda: answers[0] >= after + 3, what="the client still answered")
    assert server.stats.protocol_errors == 1
    rogue_id = ROGUE_KEY.address.encode()
    assert all(peer != rogue_id for _, peer in handler.seen), "a handler saw the request"
    assert any(peer == CLIENT_KEY.address.encode() for _, peer in handler.seen)
    assert server.budget.used == 0


def _answer(request: Message, data: object) -> Message:
    return Message(
        sender=Node(id=SERVER_KEY.address.encode(), ip="127.0.0.1"),
        receiver=request.sender,
        message_type=request.message_type,
        data=data,  # type: ignore[arg-type]
    )


async def crafty(request: Message, peer_id: bytes) -> Message:
    """A server whose answers are oversized for what was asked (target ``big``), amplify
    (``empty``), or are what Go sends (anything else)."""
    body = request.data
    if isinstance(body, FindNodeRequest):
        nodes = [NODE] * (15_000 if body.target == b"big" else 20)
        return _answer(request, FindNodeResponse(ResponseStatus(), nodes))
    if isinstance(body, FindValueRequest):
        if body.target == b"empty":
            return _answer(request, FindValueResponse(ResponseStatus(), [Node()] * 200_000))
        return _answer(request, FindValueResponse(ResponseStatus(), [], b"v" * 3_000_000))
    if isinstance(body, BatchFindNodeRequest):
        closest = {t.hex(): [NODE] * 20 for t in body.hashed_target}
        return _answer(request, BatchFindNodeResponse(ResponseStatus(), closest))
    return _answer(request, None)


@pytest.fixture
async def crafty_server(verifier: StaticPeerVerifier) -> AsyncIterator[TcpServer]:
    srv = TcpServer(crafty, "127.0.0.1", 0, SERVER_KEY, verifier, limits=FAST_LIMITS)
    await srv.start()
    yield srv
    await srv.close()


def _find(mtype: MessageType, data: object) -> Message:
    return Message(sender=Node(id=CLIENT_KEY.address.encode()), message_type=mtype, data=data)  # type: ignore[arg-type]


async def test_a_client_bounds_what_it_reads_by_what_it_asked(
    crafty_server: TcpServer, verifier: StaticPeerVerifier
) -> None:
    peer = contact(crafty_server)
    async with TcpTransport(CLIENT_KEY, verifier) as t:
        # Answers of the sizes Go sends, including a 3 MB value.
        small = await t.call(peer, _find(MessageType.FIND_NODE, FindNodeRequest(b"t")), 10.0)
        assert isinstance(small.data, FindNodeResponse) and len(small.data.closest) == 20
        value = await t.call(peer, _find(MessageType.FIND_VALUE, FindValueRequest(b"k")), 10.0)
        assert isinstance(value.data, FindValueResponse) and len(value.data.value) == 3_000_000
        batch = BatchFindNodeRequest([b"a" * 32, b"b" * 32])
        found = await t.call(peer, _find(MessageType.BATCH_FIND_NODE, batch), 10.0)
        assert isinstance(found.data, BatchFindNodeResponse) and found.data.closest_nodes
        assert len(found.data.closest_nodes) == 2
        # 1.5 MB of nodes for a FindNode: refused on the header, the connection dropped.
        assert t.pool.open == 1  # one connection, reused
        with pytest.raises(TransportError, match="over our limit of 1048576 bytes"):
            await t.call(peer, _find(MessageType.FIND_NODE, FindNodeRequest(b"big")), 10.0)
        assert t.pool.open == 0
        # 200,000 empty nodes in a 200 KB answer to a FindValue: within its size, refused by
        # the decoder.
        with pytest.raises(TransportError, match="too many elements in message"):
            await t.call(peer, _find(MessageType.FIND_VALUE, FindValueRequest(b"empty")), 10.0)
        assert t.pool.open == 0
        # And the next call is served as before.
        assert (await t.call(peer, ping(), 10.0)).message_type == MessageType.PING
    await eventually(lambda: crafty_server.budget.used == 0, what="the server's budget freed")


def test_response_limits_by_request_type() -> None:
    def limit(mtype: MessageType, data: object = None, max_size: int = MAX_PAYLOAD_SIZE) -> int:
        return response_limit(_find(mtype, data), max_size)

    for small in (
        MessageType.PING,
        MessageType.STORE_DATA,
        MessageType.FIND_NODE,
        MessageType.REPLICATE,
        MessageType.BATCH_STORE_DATA,
    ):
        assert limit(small) == SMALL_RESPONSE
    for big in (MessageType.FIND_VALUE, MessageType.BATCH_FIND_VALUES):
        assert limit(big) == MAX_PAYLOAD_SIZE
    assert limit(MessageType.BATCH_GET_VALUES, BatchGetValuesRequest({})) == MAX_PAYLOAD_SIZE
    one = limit(MessageType.BATCH_FIND_NODE, BatchFindNodeRequest([b"t" * 32]))
    many = limit(MessageType.BATCH_FIND_NODE, BatchFindNodeRequest([b"t" * 32] * 100))
    assert SMALL_RESPONSE < one < many < MAX_PAYLOAD_SIZE
    assert limit(MessageType.BATCH_FIND_NODE, BatchFindNodeRequest([b"t"] * 10**5)) == (
        MAX_PAYLOAD_SIZE
    )
    # The transport's own ceiling applies to every type.
    assert limit(MessageType.FIND_VALUE, max_size=1000) == 1000
    assert limit(MessageType.PING, max_size=1000) == 1000
