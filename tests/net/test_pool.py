"""ConnectionPool alone, with fake connections and a fake clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from lumera_p2p.errors import TransportError
from lumera_p2p.net.pool import ConnectionPool
from lumera_p2p.net.virtual_time import run_virtual

pytestmark = pytest.mark.timeout(10)


@dataclass(eq=False)
class FakeConn:
    name: str
    aborted: bool = False
    eof: bool = False

    def is_closing(self) -> bool:
        return self.aborted

    def at_eof(self) -> bool:
        return self.eof

    def abort(self) -> None:
        self.aborted = True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_pool(**kwargs: float) -> tuple[ConnectionPool[FakeConn], Clock]:
    clock = Clock()
    return ConnectionPool(clock=clock, **kwargs), clock  # type: ignore[arg-type]


async def use(pool: ConnectionPool[FakeConn], key: str, name: str | None = None) -> FakeConn:
    """One RPC: reuse or "dial", then release."""
    async with pool.slot(key):
        conn = pool.take(key)
        if conn is None:
            conn = FakeConn(name or key)
            pool.add(conn)
        pool.release(key, conn)
    return conn


async def test_reuse_hits_and_misses() -> None:
    pool, _ = make_pool()
    first = await use(pool, "a")
    assert await use(pool, "a") is first
    assert (pool.stats.adds, pool.stats.misses, pool.stats.reuse_hits) == (1, 1, 1)
    assert pool.open == pool.idle == 1
    await pool.close()


async def test_lru_eviction_at_capacity() -> None:
    pool, clock = make_pool(capacity=2)
    a = await use(pool, "a")
    clock.now = 1
    b = await use(pool, "b")
    clock.now = 2
    await use(pool, "a")  # a is now the most recently used
    c = await use(pool, "c")
    assert b.aborted and not a.aborted and not c.aborted
    assert pool.stats.evictions == 1 and pool.open == 2
    await pool.close()
    assert a.aborted and c.aborted


async def test_over_capacity_when_everything_is_busy() -> None:
    pool, _ = make_pool(capacity=1)
    async with pool.slot("a"), pool.slot("b"):
        a, b = FakeConn("a"), FakeConn("b")
        pool.add(a)
        pool.add(b)  # nothing idle to evict: the pool goes over capacity for a moment
        assert pool.open == 2
        pool.release("a", a)  # released while still over capacity: closed
        pool.release("b", b)
    assert a.aborted and not b.aborted
    assert pool.open == 1 and pool.stats.evictions == 1
    await pool.close()


async def test_dead_idle_connection_is_skipped() -> None:
    pool, _ = make_pool()
    first = await use(pool, "a")
    first.eof = True  # the peer closed it while idle
    second = await use(pool, "a")
    assert second is not first and first.aborted
    assert pool.stats.dead == 1 and pool.stats.misses == 2
    await pool.close()


async def test_most_recently_used_is_taken_first() -> None:
    pool, clock = make_pool()
    async with pool.slot("a"), pool.slot("a"):
        one, two = FakeConn("1"), FakeConn("2")
        pool.add(one)
        pool.add(two)
        pool.release("a", one)
        clock.now = 1
        pool.release("a", two)
    assert await use(pool, "a") is two
    await pool.close()


async def test_prune_closes_only_long_idle_connections() -> None:
    pool, clock = make_pool(idle_timeout=10)
    old = await use(pool, "a")
    clock.now = 8
    fresh = await use(pool, "b")
    clock.now = 10
    assert pool.prune() == 1
    assert old.aborted and not fresh.aborted
    assert pool.stats.pruned == 1 and pool.open == 1
    clock.now = 18
    assert pool.prune() == 1 and pool.open == 0
    await pool.close()


def test_background_pruner() -> None:
    """On the virtual clock (the pool's clock and its pruner's sleeps are the loop's)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool: ConnectionPool[FakeConn] = ConnectionPool(
            idle_timeout=0.05, prune_interval=0.02, clock=loop.time
        )
        conn = await use(pool, "a")
        await asyncio.sleep(0.05)  # idle 0.05 s: the pruner's next round (at 0.06) takes it
        assert not conn.aborted
        await asyncio.sleep(0.011)
        assert conn.aborted and pool.stats.pruned == 1
        await pool.close()

    run_virtual(main())


def test_per_peer_slots() -> None:
    run_virtual(per_peer_slots())


async def per_peer_slots() -> None:
    pool, _ = make_pool(per_peer=2)
    release = asyncio.Event()
    inside = 0
    peak = 0

    async def rpc() -> None:
        nonlocal inside, peak
        async with pool.slot("a"):
            inside += 1
            peak = max(peak, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(rpc()) for _ in range(3)]
    await asyncio.sleep(60)  # virtual: everything that can run has run, and the third waits
    assert inside == 2
    async with pool.slot("b"):  # another peer is not affected
        pass
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2
    await pool.close()


async def test_discard_and_close() -> None:
    pool, _ = make_pool()
    async with pool.slot("a"):
        conn = FakeConn("a")
        pool.add(conn)
        pool.discard(conn)
    assert conn.aborted and pool.open == 0 and pool.stats.discarded == 1
    busy = FakeConn("busy")
    async with pool.slot("a"):
        pool.add(busy)
        await pool.close()
        assert busy.aborted
        pool.release("a", busy)  # harmless after close
    with pytest.raises(TransportError):
        async with pool.slot("a"):
            pass
    with pytest.raises(TransportError):
        pool.add(FakeConn("late"))


async def test_snapshot() -> None:
    pool, _ = make_pool(capacity=7)
    await use(pool, "a")
    snap = pool.snapshot()
    assert snap["adds"] == 1 and snap["open"] == 1 and snap["capacity"] == 7
    await pool.close()


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        ConnectionPool(capacity=0)
    with pytest.raises(ValueError):
        ConnectionPool(idle_timeout=0)


def test_slots_without_a_context_manager() -> None:
    run_virtual(slots_without_a_context_manager())


async def slots_without_a_context_manager() -> None:
    pool, _ = make_pool(per_peer=1)
    assert pool.try_slot("a")
    assert not pool.try_slot("a")  # taken
    assert pool.try_slot("b")  # another peer's
    order: list[str] = []

    async def waiter(name: str) -> None:
        await pool.wait_slot("a")
        order.append(name)
        await asyncio.sleep(1)
        pool.free_slot("a")

    first = asyncio.create_task(waiter("first"))
    second = asyncio.create_task(waiter("second"))
    await asyncio.sleep(0)
    assert not pool.try_slot("a")  # a waiter is in line: no jumping the queue
    pool.free_slot("a")  # handed to the first in line
    await asyncio.gather(first, second)
    assert order == ["first", "second"]
    pool.free_slot("b")

    # A waiter handed the slot as it is cancelled passes it on.
    assert pool.try_slot("a")
    late = asyncio.create_task(pool.wait_slot("a"))
    after = asyncio.create_task(pool.wait_slot("a"))
    await asyncio.sleep(0)
    pool.free_slot("a")  # hands it to ``late`` ...
    late.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await late
    await after  # so ``after`` got it
    pool.free_slot("a")
    assert pool.try_slot("a")
    pool.free_slot("a")
    await pool.close()
    with pytest.raises(TransportError):
        pool.try_slot("a")
