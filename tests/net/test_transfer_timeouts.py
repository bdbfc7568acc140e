"""RPC timeouts that grow with what is sent and received (``transport.transfer_rate``), the
client's answer budget, and frames that carry a value by reference, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from lumera_p2p.errors import RpcTimeout
from lumera_p2p.net.frames import Frame
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.tcp import WATCHED_ANSWER, TcpServer, TcpTransport, TransportOptions
from lumera_p2p.secure import StaticPeerVerifier
from lumera_p2p.wire.messages import (
    FindValueRequest,
    FindValueResponse,
    Message,
    MessageType,
    Node,
    StoreDataRequest,
    StoreDataResponse,
    decode_message,
    encode_message,
)

from .conftest import CLIENT_KEY, SERVER_KEY, contact

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024


async def slow_handler(request: Message, peer_id: bytes) -> Message:
    """Takes a second over every request; FindValue answers ``target`` (a size) bytes."""
    await asyncio.sleep(1.0)
    data: StoreDataResponse | FindValueResponse = StoreDataResponse()
    if isinstance(request.data, FindValueRequest):
        data = FindValueResponse(value=b"v" * int(request.data.target))
    return Message(
        sender=Node(id=SERVER_KEY.address.encode(), ip="127.0.0.1"),
        receiver=request.sender,
        message_type=request.message_type,
        data=data,
    )


@contextlib.asynccontextmanager
async def server(verifier: StaticPeerVerifier) -> AsyncIterator[TcpServer]:
    limits = ServerLimits(handshake_timeout=5.0)
    async with TcpServer(slow_handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits) as s:
        yield s


def store(size: int) -> Message:
    return Message(
        sender=Node(id=CLIENT_KEY.address.encode()),
        message_type=MessageType.STORE_DATA,
        data=StoreDataRequest(data=bytes(size)),
    )


def find(size: int) -> Message:
    return Message(
        sender=Node(id=CLIENT_KEY.address.encode()),
        message_type=MessageType.FIND_VALUE,
        data=FindValueRequest(target=str(size).encode()),
    )


async def test_a_large_request_gets_its_size_at_the_transfer_rate(
    verifier: StaticPeerVerifier,
) -> None:
    """0.5 s would time out the slow handler; 4 MiB at 1 MiB/s adds 4 s, so it answers. The
    same request with an unbounded rate (a fixed timeout) times out."""
    async with server(verifier) as srv:
        options = TransportOptions(transfer_rate=1.0 * MIB)
        async with TcpTransport(CLIENT_KEY, verifier, options) as t:
            answer = await t.call(contact(srv), store(4 * MIB), 0.5)
        assert isinstance(answer.data, StoreDataResponse)
        fixed = TransportOptions(transfer_rate=1e15)
        async with TcpTransport(CLIENT_KEY, verifier, fixed) as t:
            with pytest.raises(RpcTimeout, match=r"within 0\.5 s"):
                await t.call(contact(srv), store(4 * MIB), 0.5)


async def test_a_large_answer_is_watched_and_its_body_reserved(
    verifier: StaticPeerVerifier,
) -> None:
    """An answer of WATCHED_ANSWER bytes or more is reported to ``on_answer`` with the time it
    adds, read within the answer budget (released after), and handed over as ``bytes``."""
    size = 2 * WATCHED_ANSWER
    async with server(verifier) as srv:
        async with TcpTransport(CLIENT_KEY, verifier, TransportOptions()) as t:
            granted: list[float] = []
            answer = await t.call(contact(srv), find(size), 5.0, on_answer=granted.append)
            small: list[float] = []
            await t.call(contact(srv), find(100), 5.0, on_answer=small.append)
            assert t.answers.stats.peak >= size and t.answers.used == 0
    assert isinstance(answer.data, FindValueResponse)
    assert type(answer.data.value) is bytes and len(answer.data.value) == size
    assert len(granted) == 1 and granted[0] == pytest.approx(size / MIB, rel=0.01)
    assert small == []


async def test_answers_wait_for_room_in_the_answer_budget(verifier: StaticPeerVerifier) -> None:
    """With room for one 3 MiB answer, two asked at once are read one after the other."""
    async with server(verifier) as srv:
        options = TransportOptions(answer_budget=4 * MIB, max_response_size=4 * MIB)
        async with TcpTransport(CLIENT_KEY, verifier, options) as t:
            answers = await asyncio.gather(
                t.call(contact(srv), find(3 * MIB), 10.0), t.call(contact(srv), find(3 * MIB), 10.0)
            )
            # Never both at once (when they overlapped, the second waited for the first).
            assert t.answers.stats.peak <= 4 * MIB and t.answers.stats.waited <= 1
    for answer in answers:
        assert isinstance(answer.data, FindValueResponse) and len(answer.data.value) == 3 * MIB


def test_a_frame_holds_large_values_by_reference() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB
    msg = Message(
        sender=Node(id=b"lumera1x"),
        message_type=MessageType.STORE_DATA,
        data=StoreDataRequest(data=value, type=1),
    )
    frame = Frame.of(msg)
    assert any(part is value for part in frame.parts)
    assert frame.tobytes() == encode_message(msg) and len(frame) == len(frame.tobytes())
    view = memoryview(value).toreadonly()
    msg.data = StoreDataRequest(data=view, type=1)  # type: ignore[arg-type]
    by_view = Frame.of(msg)
    assert any(part is view for part in by_view.parts)
    assert decode_message(by_view.tobytes()).data == StoreDataRequest(data=value, type=1)
