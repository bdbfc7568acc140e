"""The memory budget on its own, on the virtual clock: grants, waits in order, per-peer shares,
small requests that never wait, and every way a reservation or a waiter can end."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import OverBudget
from lumera_p2p.net.budget import MemoryBudget, Reservation, current_reservation, serving
from lumera_p2p.net.virtual_time import run_virtual


def test_grants_until_full_then_refuses_without_waiting() -> None:
    async def main() -> None:
        budget = MemoryBudget(1000, small=10)
        first = budget.try_reserve(600, "a")
        assert first is not None and budget.used == 600 and budget.available == 400
        assert budget.try_reserve(500, "b") is None
        second = budget.try_reserve(400, "b")
        assert second is not None and budget.available == 0
        assert budget.held_by("a") == 600 and budget.held_by("b") == 400
        first.release()
        first.release()  # idempotent
        assert first.released and budget.used == 400 and budget.held_by("a") == 0
        with second:
            pass
        assert budget.used == 0 and budget.stats.peak == 1000 and budget.stats.granted == 2

    run_virtual(main())


def test_small_requests_never_wait() -> None:
    async def main() -> None:
        budget = MemoryBudget(100, small=10)
        big = budget.try_reserve(100, "a")
        assert big is not None
        smalls = [await budget.reserve(10, "b", timeout=0.001) for _ in range(5)]
        assert budget.used == 150  # counted, over the capacity
        # Even with a large waiter queued ahead of them.
        waiter = asyncio.create_task(budget.reserve(50, "c", timeout=100))
        await asyncio.sleep(0)
        assert budget.waiting == 1
        assert budget.try_reserve(10, "d") is not None
        assert budget.try_reserve(11, "d") is None  # not small: it would jump the queue
        big.release()
        for r in smalls:
            r.release()
        granted = await waiter
        assert granted.size == 50

    run_virtual(main())


def test_a_waiter_is_granted_when_memory_is_released() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        budget = MemoryBudget(1000, small=0)
        held = budget.try_reserve(800, "a")
        assert held is not None
        loop.call_later(5.0, held.release)
        started = loop.time()
        reservation = await budget.reserve(500, "b", timeout=10.0)
        assert loop.time() - started == pytest.approx(5.0)
        assert reservation.size == 500 and budget.stats.waited == 1
        reservation.release()
        assert budget.used == 0

    run_virtual(main())


def test_a_wait_that_runs_out_is_refused_and_leaves_nothing() -> None:
    async def main() -> None:
        budget = MemoryBudget(1000, small=0)
        held = budget.try_reserve(800, "a")
        assert held is not None
        with pytest.raises(OverBudget) as info:
            await budget.reserve(500, "b", timeout=2.0)
        assert "within 2.0 s" in str(info.value)
        assert budget.waiting == 0 and budget.used == 800 and budget.stats.refused == 1
        held.release()
        assert budget.used == 0

    run_virtual(main())


def test_what_can_never_fit_is_refused_at_once() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        budget = MemoryBudget(1000, per_peer=400, small=10)
        assert budget.can_ever_fit(400) and budget.can_ever_fit(10)
        assert not budget.can_ever_fit(401)
        started = loop.time()
        with pytest.raises(OverBudget) as info:
            await budget.reserve(401, "a", timeout=60.0)
        assert loop.time() == started
        assert "at most 400 bytes" in str(info.value)

    run_virtual(main())


def test_per_peer_share() -> None:
    async def main() -> None:
        budget = MemoryBudget(1000, per_peer=500, small=0)
        a1 = budget.try_reserve(300, "a")
        assert a1 is not None
        assert budget.try_reserve(300, "a") is None  # a would hold 600
        assert budget.try_reserve(300, "b") is not None
        # a waits for its own share; b's next request is not held up behind it.
        waiter = asyncio.create_task(budget.reserve(300, "a", timeout=100))
        await asyncio.sleep(0)
        assert budget.waiting == 1
        b2 = await budget.reserve(200, "b", timeout=0.5)
        assert b2.size == 200 and budget.held_by("b") == 500
        a1.release()
        assert (await waiter).size == 300

    run_virtual(main())


def test_waiters_are_served_in_order() -> None:
    async def main() -> None:
        budget = MemoryBudget(1000, small=0)
        held = budget.try_reserve(1000, "x")
        assert held is not None
        order: list[str] = []

        async def want(name: str, size: int) -> Reservation:
            r = await budget.reserve(size, name, timeout=100)
            order.append(name)
            return r

        big = asyncio.create_task(want("big", 900))
        await asyncio.sleep(0)
        small = asyncio.create_task(want("small", 200))
        await asyncio.sleep(0)
        held.resize(700)  # 300 free: small would fit, but big is first in line
        await asyncio.sleep(0)
        assert order == []
        held.release()
        granted = await big
        assert order == ["big"]
        granted.release()
        await small
        assert order == ["big", "small"]

    run_virtual(main())


def test_a_cancelled_waiter_leaves_nothing_and_unblocks_the_queue() -> None:
    async def main() -> None:
        budget = MemoryBudget(1000, small=0)
        held = budget.try_reserve(600, "x")
        assert held is not None
        blocked = asyncio.create_task(budget.reserve(900, "a", timeout=100))
        await asyncio.sleep(0)
        behind = asyncio.create_task(budget.reserve(300, "b", timeout=100))
        await asyncio.sleep(0)
        assert budget.waiting == 2
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        # The 300 fit as soon as the 900 ahead of them was gone.
        assert (await behind).size == 300
        assert budget.waiting == 0 and budget.used == 900

    run_virtual(main())


def test_a_grant_that_races_a_cancellation_is_given_back() -> None:
    async def main() -> None:
        budget = MemoryBudget(1000, small=0)
        held = budget.try_reserve(1000, "x")
        assert held is not None
        waiter = asyncio.create_task(budget.reserve(500, "a", timeout=100))
        await asyncio.sleep(0)
        held.release()  # grants the waiter...
        waiter.cancel()  # ...which is cancelled before it can run
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert budget.used == 0 and budget.held_by("a") == 0

    run_virtual(main())


def test_grow_and_resize() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        budget = MemoryBudget(1000, per_peer=800, small=0)
        r = budget.try_reserve(100, "a")
        assert r is not None
        assert r.try_grow(400) and r.size == 500
        other = budget.try_reserve(400, "b")
        assert other is not None
        assert not r.try_grow(200)  # only 100 left
        loop.call_later(3.0, other.release)
        await r.grow(200, timeout=5.0)
        assert r.size == 700
        with pytest.raises(OverBudget):
            await r.grow(200, timeout=5.0)  # a's share is 800
        r.resize(1500)  # memory that already exists is counted, whatever the budget says
        assert budget.used == 1500
        assert budget.try_reserve(1, "c") is None
        r.resize(10)
        assert budget.used == 10
        r.release()
        with pytest.raises(RuntimeError):
            r.resize(5)
        with pytest.raises(RuntimeError):
            r.try_grow(5)
        assert budget.used == 0

    run_virtual(main())


def test_a_growth_that_times_out_keeps_what_was_held() -> None:
    async def main() -> None:
        budget = MemoryBudget(1000, small=0)
        r = budget.try_reserve(300, "a")
        other = budget.try_reserve(700, "b")
        assert r is not None and other is not None
        with pytest.raises(OverBudget):
            await r.grow(100, timeout=1.0)
        assert r.size == 300 and budget.used == 1000

    run_virtual(main())


def test_current_reservation() -> None:
    async def main() -> None:
        budget = MemoryBudget(1000)
        r = budget.try_reserve(10, "a")
        assert current_reservation() is None
        with serving(r):
            assert current_reservation() is r

            async def inner() -> Reservation | None:
                return current_reservation()

            assert await asyncio.create_task(inner()) is r  # tasks inherit the context
        assert current_reservation() is None

    run_virtual(main())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MemoryBudget(0)
    with pytest.raises(ValueError):
        MemoryBudget(10, per_peer=-1)
    assert MemoryBudget(10, per_peer=0).per_peer == 10
    assert MemoryBudget(10, per_peer=50).per_peer == 10
    with pytest.raises(ValueError):
        MemoryBudget(10).try_reserve(-1, "a")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["reserve", "release", "grow", "cancel"]),
            st.integers(0, 3),
            st.integers(0, 700),
        ),
        max_size=60,
    )
)
def test_accounting_always_returns_to_zero(ops: list[tuple[str, int, int]]) -> None:
    """Whatever the order of reservations, growths, waits, cancellations and releases, the
    books balance: ``used`` is the sum of the live reservations and ends at zero."""

    async def main() -> None:
        budget = MemoryBudget(1000, per_peer=600, small=50)
        live: list[Reservation] = []
        waiting: list[asyncio.Task[Reservation]] = []
        for op, peer, size in ops:
            if op == "reserve":
                waiting.append(asyncio.create_task(budget.reserve(size, f"p{peer}", 5.0)))
            elif op == "release" and live:
                live.pop(size % len(live)).release()
            elif op == "grow" and live:
                r = live[size % len(live)]
                if not r.try_grow(size):
                    assert r.size + size > 50
            elif op == "cancel" and waiting:
                waiting[size % len(waiting)].cancel()
            await asyncio.sleep(0.1)
            for task in [t for t in waiting if t.done()]:
                waiting.remove(task)
                if not task.cancelled() and task.exception() is None:
                    live.append(task.result())
            assert budget.used == sum(r.size for r in live)
            for p in range(4):
                # Small reservations are always granted, past the peer's share too.
                smalls = sum(r.size for r in live if r.peer == f"p{p}" and r.size <= 50)
                assert budget.held_by(f"p{p}") <= 600 + smalls
        for r in live:
            r.release()
        for task in waiting:
            task.cancel()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        for result in results:
            if isinstance(result, Reservation):
                result.release()
        assert budget.used == 0 and budget.waiting == 0

    run_virtual(main())


def test_could_grow() -> None:
    budget = MemoryBudget(1000, per_peer=600, small=10)
    r = budget.try_reserve(500, "a")
    assert r is not None
    assert r.could_grow(100) and not r.could_grow(101)
