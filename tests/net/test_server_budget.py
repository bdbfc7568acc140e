"""The server's memory budget over real sockets: frames are reserved before they are read,
wait or are refused, large values arrive as views, answers are counted until sent, and every
way a request can end gives its bytes back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from lumera_p2p.errors import ProtocolError, TransportError
from lumera_p2p.net.budget import MemoryBudget, current_reservation
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.tcp import TcpServer, TcpTransport
from lumera_p2p.secure import SecureStream, StaticPeerVerifier, secure_connect
from lumera_p2p.wire.messages import (
    FindValueRequest,
    FindValueResponse,
    Message,
    MessageType,
    Node,
    StoreDataRequest,
    StoreDataResponse,
    encode_message,
    frame_header,
)
from tests.support import eventually

from .conftest import CLIENT_KEY, ROGUE_KEY, SERVER_KEY, contact, ping

pytestmark = pytest.mark.timeout(60)

KIB = 1024
MIB = 1024 * KIB


@dataclass
class BudgetHandler:
    """StoreData: answers the value's length and records the value's type. FindValue target
    ``grow:<n>`` grows the request's reservation by ``n`` and answers ``n`` bytes; ``block``
    waits until :attr:`release` is set; ``crash`` raises."""

    seen_types: list[type] = field(default_factory=list)
    reservations: list[int] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: Message, peer_id: bytes) -> Message:
        data: Any = None
        reservation = current_reservation()
        assert reservation is not None and reservation.peer.encode() == peer_id
        if isinstance(request.data, StoreDataRequest):
            self.seen_types.append(type(request.data.data))
            self.reservations.append(reservation.size)
            data = StoreDataResponse()
            data.status.err_msg = str(len(request.data.data))
        elif isinstance(request.data, FindValueRequest):
            cmd, _, arg = request.data.target.decode().partition(":")
            self.entered.set()
            if cmd == "grow":
                await reservation.grow(int(arg), timeout=5.0)
                self.reservations.append(reservation.size)
                data = FindValueResponse(value=bytes(int(arg)))
            elif cmd == "block":
                await self.release.wait()
            elif cmd == "crash":
                raise RuntimeError("handler bug")
            elif cmd == "protocol-error":
                raise ProtocolError("breaks the protocol")
        return Message(
            sender=Node(id=SERVER_KEY.address.encode(), ip="127.0.0.1"),
            receiver=request.sender,
            message_type=request.message_type,
            data=data,
        )


def store(size: int, sender: bytes = CLIENT_KEY.address.encode()) -> Message:
    return Message(
        sender=Node(id=sender),
        message_type=MessageType.STORE_DATA,
        data=StoreDataRequest(data=bytes(size)),
    )


def find(cmd: str) -> Message:
    return Message(
        sender=Node(id=CLIENT_KEY.address.encode()),
        message_type=MessageType.FIND_VALUE,
        data=FindValueRequest(target=cmd.encode()),
    )


@pytest.fixture
def budget_handler() -> BudgetHandler:
    return BudgetHandler()


@contextlib.asynccontextmanager
async def serving(
    handler: BudgetHandler, verifier: StaticPeerVerifier, **limits: Any
) -> AsyncIterator[TcpServer]:
    lim = ServerLimits(**{"handshake_timeout": 2.0, "frame_grace": 1.0, **limits})
    async with TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=lim) as srv:
        yield srv
        # Whatever happened, the books must balance once every connection is gone.
    assert srv.budget.used == 0, srv.budget.used


async def rogue(server: TcpServer, verifier: StaticPeerVerifier) -> SecureStream:
    return await secure_connect(
        "127.0.0.1", server.port, ROGUE_KEY, SERVER_KEY.address, verifier, timeout=2.0
    )


async def closed(stream: SecureStream, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionError, ProtocolError):
            while await stream.read(65536):
                pass


async def test_the_budget_comes_from_the_limits(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(memory_budget=10 * MIB, memory_budget_per_peer=3 * MIB)
    srv = TcpServer(budget_handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits)
    assert (srv.budget.capacity, srv.budget.per_peer) == (10 * MIB, 3 * MIB)
    shared = MemoryBudget(5 * MIB)
    srv = TcpServer(budget_handler, "127.0.0.1", 0, SERVER_KEY, verifier, budget=shared)
    assert srv.budget is shared


async def test_a_large_value_arrives_as_a_view_and_is_reserved(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(budget_handler, verifier) as srv, TcpTransport(CLIENT_KEY, verifier) as t:
        answer = await t.call(contact(srv), store(3 * MIB), 10.0)
        assert isinstance(answer.data, StoreDataResponse)
        assert answer.data.status.err_msg == str(3 * MIB)
        await t.call(contact(srv), store(100), 10.0)
    assert budget_handler.seen_types == [memoryview, bytes]
    # While the handler ran, the body (which the view points into) was still reserved.
    assert budget_handler.reservations[0] >= 3 * MIB
    assert srv.budget.stats.peak >= 3 * MIB


async def test_a_frame_over_a_peers_share_is_refused_on_its_header(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(
        budget_handler, verifier, memory_budget=4 * MIB, memory_budget_per_peer=2 * MIB
    ) as srv:
        stream = await rogue(srv, verifier)
        stream.write(frame_header(3 * MIB))  # never sends the body
        await stream.drain()
        await closed(stream, 2.0)
        assert srv.stats.over_budget == 1 and srv.budget.stats.refused == 1
        # Others are served.
        async with TcpTransport(CLIENT_KEY, verifier) as t:
            await t.call(contact(srv), store(1 * MIB), 10.0)
        stream.abort()


async def test_a_frame_waits_for_memory_then_is_served(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(budget_handler, verifier, memory_budget=4 * MIB) as srv:
        holder = srv.budget.try_reserve(3 * MIB, "someone else")
        assert holder is not None
        async with TcpTransport(CLIENT_KEY, verifier) as t:
            call = asyncio.create_task(t.call(contact(srv), store(2 * MIB), 20.0))
            await eventually(lambda: srv.budget.waiting == 1)
            assert not call.done()
            # Small requests are not held up meanwhile.
            async with TcpTransport(ROGUE_KEY, verifier) as other:
                await other.call(contact(srv), ping(ROGUE_KEY), 5.0)
            holder.release()
            answer = await call
        assert isinstance(answer.data, StoreDataResponse)
        assert answer.data.status.err_msg == str(2 * MIB)
        assert srv.budget.stats.waited == 1


async def test_a_frame_that_waits_too_long_closes_the_connection(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(budget_handler, verifier, memory_budget=4 * MIB, memory_wait=0.3) as srv:
        holder = srv.budget.try_reserve(3 * MIB, "someone else")
        assert holder is not None
        async with TcpTransport(CLIENT_KEY, verifier) as t:
            with pytest.raises(TransportError):
                await t.call(contact(srv), store(2 * MIB), 20.0)
        assert srv.stats.over_budget >= 1
        assert srv.budget.waiting == 0
        holder.release()


async def test_the_handler_grows_the_reservation_and_the_answer_is_counted(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(budget_handler, verifier, memory_budget=16 * MIB) as srv:
        async with TcpTransport(CLIENT_KEY, verifier) as t:
            answer = await t.call(contact(srv), find(f"grow:{5 * MIB}"), 10.0)
        assert isinstance(answer.data, FindValueResponse) and len(answer.data.value) == 5 * MIB
        assert budget_handler.reservations[0] >= 5 * MIB
        # Values and the frame they became were both counted before it was sent.
        assert srv.budget.stats.peak >= 10 * MIB


async def test_a_handler_that_cannot_grow_fails_alone(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with (
        serving(
            budget_handler, verifier, memory_budget=4 * MIB, memory_budget_per_peer=2 * MIB
        ) as srv,
        TcpTransport(CLIENT_KEY, verifier) as t,
    ):
        with pytest.raises(TransportError):
            await t.call(contact(srv), find(f"grow:{3 * MIB}"), 10.0)
        assert srv.stats.over_budget == 1 and srv.stats.handler_errors == 0
        await t.call(contact(srv), ping(), 5.0)


# --- every path gives the bytes back -----------------------------------------------------------


async def test_released_when_the_peer_leaves_inside_a_body(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(budget_handler, verifier) as srv:
        stream = await rogue(srv, verifier)
        frame = encode_message(store(2 * MIB, ROGUE_KEY.address.encode()))
        stream.write(frame[:MIB])
        await stream.drain()
        await eventually(lambda: srv.budget.used >= 2 * MIB)
        stream.abort()
        await eventually(lambda: srv.budget.used == 0)


async def test_released_when_a_slow_sender_is_cut_off(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(budget_handler, verifier, frame_grace=0.3) as srv:
        stream = await rogue(srv, verifier)
        stream.write(frame_header(50 * MIB) + b"x")
        await stream.drain()
        await eventually(lambda: srv.budget.used >= 50 * MIB)
        await closed(stream)
        assert srv.stats.slow_closed == 1
        await eventually(lambda: srv.budget.used == 0)


async def test_released_when_the_body_is_garbage(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(budget_handler, verifier) as srv:
        stream = await rogue(srv, verifier)
        stream.write(frame_header(200 * KIB) + b"\xff" * (200 * KIB))
        await stream.drain()
        await closed(stream)
        assert srv.stats.protocol_errors == 1
        await eventually(lambda: srv.budget.used == 0)


@pytest.mark.parametrize("cmd", ["crash", "protocol-error"])
async def test_released_when_the_handler_fails(
    cmd: str, budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(budget_handler, verifier) as srv:
        async with TcpTransport(CLIENT_KEY, verifier) as t:
            with pytest.raises(TransportError):
                await t.call(contact(srv), find(cmd), 5.0)
        await eventually(lambda: srv.budget.used == 0)


async def test_released_when_the_handler_times_out(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(budget_handler, verifier, handler_timeout=0.3) as srv:
        async with TcpTransport(CLIENT_KEY, verifier) as t:
            with pytest.raises(TransportError):
                await t.call(contact(srv), find("block"), 5.0)
        assert srv.stats.handler_timeouts == 1
        await eventually(lambda: srv.budget.used == 0)


async def test_released_when_the_server_closes_mid_request(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    lim = ServerLimits(handshake_timeout=2.0)
    srv = TcpServer(budget_handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=lim)
    await srv.start()
    async with TcpTransport(CLIENT_KEY, verifier) as t:
        call = asyncio.create_task(t.call(contact(srv), find("block"), 10.0))
        await budget_handler.entered.wait()
        assert srv.budget.used > 0
        await srv.close()  # cancels the handler
        with pytest.raises(TransportError):
            await call
    assert srv.budget.used == 0


async def test_released_when_the_peer_does_not_read_its_answer(
    budget_handler: BudgetHandler, verifier: StaticPeerVerifier
) -> None:
    async with serving(
        budget_handler, verifier, frame_grace=0.3, min_transfer_rate=50 * MIB
    ) as srv:
        stream = await rogue(srv, verifier)
        request = Message(
            sender=Node(id=ROGUE_KEY.address.encode()),
            message_type=MessageType.FIND_VALUE,
            data=FindValueRequest(target=f"grow:{40 * MIB}".encode()),
        )
        stream.write(encode_message(request))
        await stream.drain()
        # Never reads: the answer's write misses its deadline and the connection closes.
        await eventually(lambda: srv.stats.slow_closed == 1, timeout=30)
        await eventually(lambda: srv.budget.used == 0)
        stream.abort()
