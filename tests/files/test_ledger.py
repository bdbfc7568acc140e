"""The put ledger on a real SQLite file: which chunks count as stored on enough replicas."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumera_p2p.errors import StoreError
from lumera_p2p.files.ledger import LEDGER_FILE, Acks, ChunkLedger

A, B, C, D, E = (bytes([i]) * 32 for i in range(5))


async def test_enough_replicas_means_min_replicas_or_every_node_it_went_to(
    tmp_path: Path,
) -> None:
    ledger = await ChunkLedger.open(tmp_path, forget_before=0)
    try:
        await ledger.record(
            {
                A: Acks(6, 8),  # six of eight: enough at min_replicas 6
                B: Acks(5, 8),  # five of eight: not enough
                C: Acks(3, 3),  # a network of three store-eligible nodes: all of them
                D: Acks(2, 3),  # one of the three failed: not enough
                E: Acks(0, 0),  # no node to send to: never counts
            },
            at=1000.0,
        )
        assert await ledger.stored([A, B, C, D, E], min_replicas=6, since=0) == {A, C}
        assert await ledger.stored([A, B, C, D, E], min_replicas=2, since=0) == {A, B, C, D}
        # Records older than the window do not count...
        assert await ledger.stored([A, C], min_replicas=1, since=1000.5) == set()
        # ...and a later store of the same chunk replaces the record.
        await ledger.record({B: Acks(8, 8)}, at=2000.0)
        assert await ledger.stored([B], min_replicas=6, since=1500) == {B}
        many = [i.to_bytes(32, "big") for i in range(1000, 3000)]  # more than SQLite's variables
        await ledger.record({k: Acks(1, 1) for k in many}, at=3000.0)
        assert await ledger.stored([*many, A], min_replicas=1, since=2500) == set(many)
    finally:
        await ledger.close()
    # The file survives a restart; opening forgets what is older than the window.
    again = await ChunkLedger.open(tmp_path, forget_before=1500.0)
    try:
        assert await again.stored([A, B], min_replicas=1, since=0) == {B}
    finally:
        await again.close()
        await again.close()  # idempotent
    assert (tmp_path / LEDGER_FILE).is_file()


async def test_a_ledger_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / LEDGER_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"files\.sqlite3"):
        await ChunkLedger.open(tmp_path, forget_before=0)
