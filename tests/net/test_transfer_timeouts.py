"""RPC timeouts that grow with what is sent and received (``transport.transfer_rate``), the
client's answer budget, and frames that carry a value by reference, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lumera_p2p.dht import DHTOptions
from lumera_p2p.dht import Node as DHTNode
from lumera_p2p.dht.server import STREAMED_VALUE
from lumera_p2p.errors import ProtocolError, RpcTimeout, TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.net.frames import WRITE_CHUNK, Frame, LazyBytes, write_frame
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.tcp import WATCHED_ANSWER, TcpServer, TcpTransport, TransportOptions
from lumera_p2p.secure import StaticPeerVerifier
from lumera_p2p.store import LocalStore
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
    async with server(verifier) as srv, TcpTransport(CLIENT_KEY, verifier) as t:
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


async def test_a_large_find_value_answer_is_streamed_from_the_store(tmp_path: Path) -> None:
    """A FindValue of a value of STREAMED_VALUE bytes or more is answered with a LazyBytes
    read from SQLite as it is written: the same bytes on the wire as the value itself, in
    slices of at most WRITE_CHUNK; a value that goes away mid-answer breaks the frame."""
    value = os.urandom(STREAMED_VALUE + 12345)
    store = await LocalStore.open(tmp_path)
    try:
        [key] = await store.store_batch([value])
        node = DHTNode(
            Contact(b"lumera1me", "127.0.0.1", 4445),
            store,
            _Offline(),
            options=DHTOptions(allow_private=True),
        )
        request = Message(
            sender=Node(id=b"lumera1peer", ip="127.0.0.1", port=4446),
            message_type=MessageType.FIND_VALUE,
            data=FindValueRequest(target=key),
        )
        answer = await node.handle(request, b"lumera1peer")
        assert isinstance(answer.data, FindValueResponse)
        assert isinstance(answer.data.value, LazyBytes) and len(answer.data.value) == len(value)
        frame = Frame.of(answer)
        sink = Sink()
        await write_frame(sink, frame)
        expected = encode_message(
            dataclasses.replace(answer, data=FindValueResponse(closest=[], value=value))
        )
        assert bytes(sink.data) == expected and max(sink.sizes) <= WRITE_CHUNK
        with pytest.raises(TypeError):
            frame.tobytes()
        await store.delete(key)
        with pytest.raises(ProtocolError, match="went away"):
            await write_frame(Sink(), frame)
    finally:
        await store.close()


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.sizes: list[int] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sizes.append(len(data))
        self.data += data

    async def drain(self) -> None:
        await asyncio.sleep(0)


class _Offline:
    async def call(
        self, peer: Contact, request: Message, timeout: float, *, on_answer: object = None
    ) -> Message:
        raise TransportError("offline")
