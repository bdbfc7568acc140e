"""Request slots on the virtual clock: caps in all and per peer, waiting, refusal, cancellation."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.net.slots import RequestSlots
from lumera_p2p.net.virtual_time import run_virtual


def test_caps_in_all_and_per_peer() -> None:
    slots = RequestSlots(total=3, per_peer=2)
    assert slots.try_acquire("a") and slots.try_acquire("a")
    assert not slots.try_acquire("a")  # a's cap
    assert slots.try_acquire("b")
    assert not slots.try_acquire("c")  # the total
    assert (slots.in_use, slots.held_by("a"), slots.held_by("b")) == (3, 2, 1)
    slots.release("a")
    assert slots.try_acquire("c")
    with pytest.raises(RuntimeError):
        slots.release("nobody")
    assert RequestSlots(total=2, per_peer=5).per_peer == 2
    with pytest.raises(ValueError):
        RequestSlots(total=0, per_peer=1)


def test_a_waiter_gets_the_next_free_slot_or_is_refused() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        slots = RequestSlots(total=1, per_peer=1)
        assert slots.try_acquire("a")
        loop.call_later(3.0, slots.release, "a")
        started = loop.time()
        assert await slots.acquire("b", timeout=10.0)
        assert loop.time() - started == pytest.approx(3.0)
        assert not await slots.acquire("c", timeout=2.0)
        assert slots.refused == 1 and slots.waiting == 0 and slots.in_use == 1

    run_virtual(main())


def test_a_peer_at_its_cap_does_not_block_others() -> None:
    async def main() -> None:
        slots = RequestSlots(total=4, per_peer=1)
        assert slots.try_acquire("a")
        third = asyncio.create_task(slots.acquire("a", timeout=100))
        await asyncio.sleep(0)
        assert slots.waiting == 1
        assert await slots.acquire("b", timeout=0.1)  # goes ahead of a's second
        slots.release("a")
        assert await third

    run_virtual(main())


def test_waiters_for_the_total_go_in_order_and_before_newcomers() -> None:
    async def main() -> None:
        slots = RequestSlots(total=1, per_peer=1)
        assert slots.try_acquire("x")
        order: list[str] = []

        async def want(peer: str) -> None:
            assert await slots.acquire(peer, timeout=100)
            order.append(peer)

        tasks = [asyncio.create_task(want(p)) for p in ("a", "b")]
        await asyncio.sleep(0)
        assert not slots.try_acquire("c")  # a and b are queued for the one slot
        slots.release("x")
        await asyncio.sleep(0)
        assert order == ["a"]
        slots.release("a")
        await asyncio.gather(*tasks)
        assert order == ["a", "b"]

    run_virtual(main())


def test_cancelled_waiters_leave_nothing() -> None:
    async def main() -> None:
        slots = RequestSlots(total=1, per_peer=1)
        assert slots.try_acquire("x")
        waiter = asyncio.create_task(slots.acquire("a", timeout=100))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert slots.waiting == 0
        # Granted, then cancelled before it could run: the slot comes back.
        waiter = asyncio.create_task(slots.acquire("a", timeout=100))
        await asyncio.sleep(0)
        slots.release("x")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert slots.in_use == 0 and slots.held_by("a") == 0

    run_virtual(main())


def test_the_slot_context_gives_back_on_errors() -> None:
    async def main() -> None:
        slots = RequestSlots(total=1, per_peer=1)
        with pytest.raises(RuntimeError):
            async with slots.slot("a", 1.0) as got:
                assert got and slots.in_use == 1
                raise RuntimeError("handler failed")
        assert slots.in_use == 0
        assert slots.try_acquire("x")
        async with slots.slot("a", 1.0) as got:
            assert not got
        assert slots.in_use == 1

    run_virtual(main())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.floats(0.0, 3.0)), max_size=40))
def test_slots_always_balance(ops: list[tuple[bool, int, float]]) -> None:
    async def main() -> None:
        slots = RequestSlots(total=3, per_peer=2)

        async def request(peer: str, hold: float) -> None:
            async with slots.slot(peer, timeout=2.0) as got:
                if got:
                    assert slots.held_by(peer) <= 2 and slots.in_use <= 3
                    await asyncio.sleep(hold)

        tasks = []
        for cancel, peer, hold in ops:
            task = asyncio.create_task(request(f"p{peer}", hold))
            tasks.append(task)
            await asyncio.sleep(0.1)
            if cancel:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert slots.in_use == 0 and slots.waiting == 0

    run_virtual(main())
