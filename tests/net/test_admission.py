"""Handshake admission: the per-address cap, fair sharing of the slots, the first-byte deadline
and the registry pre-check; the slot table alone, then against a real server from several
loopback addresses (all of 127/8 is loopback on Linux)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import TransportError
from lumera_p2p.net.admission import REFUSED_ADDRESS, REFUSED_FULL, HandshakeSlots, address_key
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.tcp import TcpServer, TcpTransport
from lumera_p2p.secure import StaticPeerVerifier
from tests.support import eventually, peer_closed

from .conftest import CLIENT_KEY, SERVER_KEY, EchoHandler, contact, ping

pytestmark = pytest.mark.timeout(60)


# --- the slot table ----------------------------------------------------------------------------


def test_address_key_groups_ipv6_by_64() -> None:
    assert address_key("127.0.0.2") == "127.0.0.2"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("?") == "?"


def test_per_address_cap_once_half_the_slots_are_taken() -> None:
    slots: HandshakeSlots[str] = HandshakeSlots(total=10, per_address=2)
    for i in range(5):  # below half, one address may take more than its cap
        assert not slots.crowded
        assert slots.admit(f"a{i}", "A").admitted
    assert slots.crowded and slots.count("A") == 5
    refused = slots.admit("a5", "A")
    assert (refused.admitted, refused.refusal) == (False, REFUSED_ADDRESS)
    assert slots.at_address_cap("A") and not slots.at_address_cap("B")
    assert slots.admit("b1", "B").admitted and slots.admit("b2", "B").admitted
    assert not slots.admit("b3", "B").admitted
    for i in range(4):
        slots.release(f"a{i}")
    slots.release("a0")  # idempotent
    assert slots.count("A") == 1 and len(slots) == 3 and not slots.crowded
    assert slots.admit("a6", "A").admitted and slots.admit("a7", "A").admitted


def test_per_address_cap_never_exceeds_the_total() -> None:
    slots: HandshakeSlots[int] = HandshakeSlots(total=3, per_address=8)
    assert slots.per_address == 3
    with pytest.raises(ValueError):
        HandshakeSlots(total=0, per_address=1)
    with pytest.raises(ValueError):
        HandshakeSlots(total=1, per_address=0)


def test_a_full_table_gives_a_newcomer_the_busiest_addresss_oldest_slot() -> None:
    slots: HandshakeSlots[str] = HandshakeSlots(total=4, per_address=3)
    # (A takes 3 slots: two before the table is half full, the third within its cap.)
    for conn in ("a1", "a2", "a3"):
        assert slots.admit(conn, "A").admitted
    assert slots.admit("b1", "B").admitted
    taken = slots.admit("c1", "C")
    assert (taken.admitted, taken.evict) == (True, "a1")
    assert "a1" not in slots and slots.count("A") == 2
    # A and B now hold 2 and 1; a second newcomer from C (1) takes A's oldest again.
    assert slots.admit("c2", "C").evict == "a2"
    # Now A, B, C hold 1, 1, 2: a third from C would not be fairer, so it is refused.
    refused = slots.admit("c3", "C")
    assert (refused.admitted, refused.refusal) == (False, REFUSED_FULL)
    # One from D (0) takes the oldest of the addresses holding the most (C's first).
    assert slots.admit("d1", "D").evict == "c1"


def test_ties_between_busiest_addresses_go_to_the_oldest_handshake() -> None:
    slots: HandshakeSlots[str] = HandshakeSlots(total=4, per_address=2)
    for conn, addr in (("b1", "B"), ("a1", "A"), ("a2", "A"), ("b2", "B")):
        assert slots.admit(conn, addr).admitted
    assert slots.admit("c1", "C").evict == "b1"


def test_a_connection_cannot_hold_two_slots() -> None:
    slots: HandshakeSlots[str] = HandshakeSlots(total=4, per_address=2)
    slots.admit("a1", "A")
    with pytest.raises(ValueError):
        slots.admit("a1", "A")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 5), st.integers(0, 40)),
        max_size=120,
    ),
    st.integers(1, 12),
    st.integers(1, 6),
)
def test_slot_invariants(ops: list[tuple[bool, int, int]], total: int, per: int) -> None:
    """Any sequence of arrivals and departures: caps hold, evictions only go from an address
    busier than the newcomer's, and a refusal of a full table means none is busier."""
    slots: HandshakeSlots[int] = HandshakeSlots(total=total, per_address=per)
    live: dict[int, str] = {}
    for n, (arrive, addr_i, pick) in enumerate(ops):
        addr = f"10.0.0.{addr_i}"
        if arrive or not live:
            before = {a: slots.count(a) for a in set(live.values()) | {addr}}
            result = slots.admit(n, addr)
            if result.admitted:
                live[n] = addr
                if result.evict is not None:
                    victim_addr = live.pop(result.evict)
                    assert victim_addr != addr
                    assert before[victim_addr] > before[addr]
            elif result.refusal == REFUSED_FULL:
                assert len(live) == slots.total
                assert all(c <= before[addr] for a, c in before.items() if a != addr)
            else:
                assert before[addr] >= slots.per_address and 2 * len(live) >= slots.total
        else:
            conn = sorted(live)[pick % len(live)]
            slots.release(conn)
            del live[conn]
        assert len(slots) == len(live) <= slots.total
        # Past its cap an address only grew while the table was less than half full.
        cap = max(slots.per_address, (slots.total + 1) // 2)
        assert all(slots.count(a) <= cap for a in set(live.values()))


# --- against a real server ---------------------------------------------------------------------


async def silent(
    server: TcpServer, source: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection from ``source`` that never sends a byte."""
    return await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))


@contextlib.asynccontextmanager
async def running(
    handler: EchoHandler, verifier: StaticPeerVerifier, limits: ServerLimits
) -> AsyncIterator[TcpServer]:
    srv = TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=limits)
    async with srv:
        yield srv


async def test_one_address_cannot_take_every_handshake_slot(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(max_handshakes=10, max_handshakes_per_address=3, first_byte_timeout=30)
    async with running(handler, verifier, limits) as srv:
        flood = [await silent(srv, "127.0.0.2") for _ in range(8)]
        # Up to half the table it may take more than its cap of 3; then no more.
        await eventually(lambda: srv.stats.refused_address_handshakes == 3)
        assert srv.handshakes == 5
        # Refused at once, not after a timeout.
        assert all([await peer_closed(reader, 1.0) for reader, _ in flood[5:]])
        # Everyone else still gets in.
        async with TcpTransport(CLIENT_KEY, verifier) as client:
            await client.call(contact(srv), ping(), 2.0)
        for _, writer in flood:
            writer.close()


async def test_a_newcomer_takes_the_oldest_slot_of_the_busiest_address(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(max_handshakes=4, max_handshakes_per_address=2, first_byte_timeout=30)
    async with running(handler, verifier, limits) as srv:
        first = [await silent(srv, "127.0.0.2") for _ in range(2)]
        second = [await silent(srv, "127.0.0.3") for _ in range(2)]
        await eventually(lambda: srv.handshakes == 4)
        # The table is full; a real client from a third address still gets through.
        async with TcpTransport(CLIENT_KEY, verifier) as client:
            await client.call(contact(srv), ping(), 2.0)
        assert srv.stats.evicted_handshakes == 1
        assert srv.stats.refused_handshakes == 0
        assert await peer_closed(first[0][0], 1.0)  # the oldest pending one went
        for _, writer in first + second:
            writer.close()


async def test_a_full_table_refuses_when_nobody_is_busier(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(max_handshakes=2, max_handshakes_per_address=1, first_byte_timeout=30)
    async with running(handler, verifier, limits) as srv:
        held = [await silent(srv, "127.0.0.2"), await silent(srv, "127.0.0.3")]
        await eventually(lambda: srv.handshakes == 2)
        newcomer = await silent(srv, "127.0.0.4")
        # 1 each and the newcomer 0: it takes the oldest (127.0.0.2's) slot.
        await eventually(lambda: srv.stats.evicted_handshakes == 1)
        late = await silent(srv, "127.0.0.4")  # at its own cap of 1
        await eventually(lambda: srv.stats.refused_address_handshakes == 1)
        assert await peer_closed(late[0], 1.0)
        assert srv.handshakes == 2
        for _, writer in [*held, newcomer, late]:
            writer.close()


async def test_a_silent_connection_is_dropped_at_the_first_byte_deadline(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(first_byte_timeout=0.3, handshake_timeout=10.0)
    async with running(handler, verifier, limits) as srv:
        reader, writer = await silent(srv, "127.0.0.2")
        started = time.monotonic()
        assert await peer_closed(reader, 5.0)
        assert time.monotonic() - started < limits.handshake_timeout  # long before the handshake's
        assert srv.stats.first_byte_timeouts == 1
        assert srv.stats.handshake_failures == 0
        await eventually(lambda: srv.handshakes == 0)
        writer.close()


async def test_one_byte_in_time_leaves_the_rest_to_the_handshake_deadline(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(first_byte_timeout=0.2, handshake_timeout=0.8)
    async with running(handler, verifier, limits) as srv:
        reader, writer = await silent(srv, "127.0.0.2")
        writer.write(b"\x00")
        started = time.monotonic()
        assert await peer_closed(reader, 5.0)
        assert time.monotonic() - started >= 0.5  # past the first-byte deadline
        assert srv.stats.first_byte_timeouts == 0
        assert srv.stats.handshake_failures == 1
        writer.close()


async def test_a_client_that_closes_without_a_byte_is_not_a_failure(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    async with running(handler, verifier, ServerLimits()) as srv:
        _, writer = await silent(srv, "127.0.0.2")
        await eventually(lambda: srv.handshakes == 1)
        writer.close()
        await eventually(lambda: srv.handshakes == 0)
        assert srv.stats.handshake_failures == srv.stats.first_byte_timeouts == 0


async def test_registered_addresses_only(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    limits = ServerLimits(registered_addresses_only=True)
    async with running(handler, verifier, limits) as srv:
        # Until the service has set the list, nobody is refused.
        async with TcpTransport(CLIENT_KEY, verifier) as client:
            await client.call(contact(srv), ping(), 2.0)
        srv.set_allowed_addresses({"127.0.0.2"})
        reader, writer = await silent(srv, "127.0.0.3")
        assert await peer_closed(reader, 1.0)
        assert srv.stats.refused_unlisted == 1
        writer.close()
        async with TcpTransport(CLIENT_KEY, verifier) as client:
            with pytest.raises(TransportError):
                await client.call(contact(srv), ping(), 2.0)  # from 127.0.0.1: not listed
        srv.set_allowed_addresses({"127.0.0.1", "::ffff:127.0.0.2"})
        assert srv.allowed_addresses == frozenset({"127.0.0.1", "127.0.0.2"})
        async with TcpTransport(CLIENT_KEY, verifier) as client:
            await client.call(contact(srv), ping(), 2.0)
        assert srv.stats.refused_unlisted == 2


async def test_the_allowed_list_is_ignored_when_the_option_is_off(
    handler: EchoHandler, verifier: StaticPeerVerifier
) -> None:
    async with running(handler, verifier, ServerLimits()) as srv:
        srv.set_allowed_addresses({"127.0.0.2"})
        async with TcpTransport(CLIENT_KEY, verifier) as client:
            await client.call(contact(srv), ping(), 2.0)
        assert srv.stats.refused_unlisted == 0
