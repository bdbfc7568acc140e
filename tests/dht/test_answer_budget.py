"""fit_values: which stored values an answer carries within its cap and its reservation."""

from __future__ import annotations

import asyncio

import pytest

from lumera_p2p.dht.answer_budget import fit_values
from lumera_p2p.dht.valuestore import MemoryStore
from lumera_p2p.errors import OverBudget
from lumera_p2p.net.budget import MemoryBudget, serving
from lumera_p2p.net.virtual_time import run_virtual


async def _store(sizes: list[int]) -> tuple[MemoryStore, list[bytes]]:
    store = MemoryStore()
    keys = await store.store_batch([bytes([i]) * n for i, n in enumerate(sizes)])
    return store, keys


def test_without_a_reservation_only_the_cap_applies() -> None:
    async def main() -> None:
        store, keys = await _store([100, 200, 300, 50])
        absent = bytes(32)
        fitted = await fit_values(store, [absent, *keys], cap=400, factor=2, wait=1.0)
        assert fitted.keys == [keys[0], keys[1], keys[3]]  # 300 would pass the cap; 50 fits
        assert (fitted.trimmed, fitted.value_bytes) == (True, 350)
        everything = await fit_values(store, keys + keys, cap=10_000, factor=2, wait=1.0)
        assert everything.keys == keys and not everything.trimmed  # repeats carried once

    run_virtual(main())


def test_values_fit_the_reservation_times_the_factor() -> None:
    async def main() -> None:
        store, keys = await _store([100, 200, 300, 400])
        budget = MemoryBudget(1400, small=0)
        request = budget.try_reserve(100, "peer")
        assert request is not None
        with serving(request):
            fitted = await fit_values(store, keys, cap=10_000, factor=2, wait=1.0)
        # 100 + 2 × (100 + 200 + 300) = 1300; the 400 would need 800 more.
        assert fitted.keys == keys[:3] and fitted.trimmed
        assert request.size == 1300 and budget.used == 1300

    run_virtual(main())


def test_the_first_value_waits_then_nothing_fits() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        store, keys = await _store([300, 300])
        budget = MemoryBudget(1000, small=0)
        other = budget.try_reserve(900, "other")
        request = budget.try_reserve(0, "peer")
        assert other is not None and request is not None
        loop.call_later(2.0, other.release)
        with serving(request):
            fitted = await fit_values(store, keys, cap=10_000, factor=1, wait=5.0)
        assert fitted.keys == keys and request.size == 600
        request.release()
        hog = budget.try_reserve(500, "hog")
        assert hog is not None
        late = budget.try_reserve(0, "peer")
        assert late is not None
        with serving(late), pytest.raises(OverBudget):
            await fit_values(store, keys, cap=10_000, factor=2, wait=1.0)
        assert late.size == 0

    run_virtual(main())


def test_a_value_over_a_peers_share_is_left_out_not_waited_for() -> None:
    async def main() -> None:
        store, keys = await _store([700, 100])
        budget = MemoryBudget(10_000, per_peer=1000, small=0)
        request = budget.try_reserve(0, "peer")
        assert request is not None
        with serving(request):
            fitted = await fit_values(store, keys, cap=10_000, factor=2, wait=100.0)
        assert fitted.keys == [keys[1]] and fitted.trimmed and request.size == 200

    run_virtual(main())
