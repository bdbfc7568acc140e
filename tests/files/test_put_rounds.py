"""A put's store rounds against a scripted network: later rounds go only to the replicas that
did not acknowledge, a value that reached nobody fails the put, and the ledger keeps the counts.

The network here is a stand-in on purpose: it decides which node "refuses" which round, which
real nodes only do under load (the real-node tests are in test_files_network.py and
test_files_quota.py).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from lumera_p2p.errors import StoreFailed
from lumera_p2p.files.ledger import ChunkLedger
from lumera_p2p.files.network import Accept, Acked
from lumera_p2p.files.options import FileOptions
from lumera_p2p.files.put import put_file

NODES = [f"127.0.0.1:{4000 + i}" for i in range(4)]
OPTIONS = FileOptions(chunk_size=4096, store_batch_chunks=4, store_rounds=3, store_retry_delay=0)


class Scripted:
    """Every key's replicas are ``NODES``; ``refusing[address]`` rounds are refused by it."""

    def __init__(self, refusing: dict[str, int]) -> None:
        self.refusing = dict(refusing)
        #: (round, address, key) of every value sent.
        self.sent: list[tuple[int, str, bytes]] = []
        self.rounds = 0
        self.local: set[bytes] = set()

    async def store_values(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        task_id: str,
        acked: Mapping[bytes, set[str]] | None = None,
    ) -> Acked:
        self.rounds += 1
        if acked is None:
            self.local.update(keys)
        done = acked or {}
        result: Acked = {k: set() for k in keys}
        for address in NODES:
            share = [k for k in keys if address not in done.get(k, set())]
            if not share:
                continue
            self.sent.extend((self.rounds, address, k) for k in share)
            if self.refusing.get(address, 0) > 0:
                self.refusing[address] -= 1
                continue
            for k in share:
                result[k].add(address)
        return result

    def replica_count(self, key: bytes) -> int:
        return len(NODES)

    async def fetch(self, keys: Sequence[bytes], tx_id: str, accept: Accept) -> int:
        raise AssertionError("a put does not fetch")


async def test_a_busy_replica_gets_its_copy_in_a_later_round_and_only_it(tmp_path: Path) -> None:
    network = Scripted({NODES[2]: 1})
    ledger = await ChunkLedger.open(tmp_path, forget_before=0)
    try:
        data = bytes(range(256)) * 16 * 3  # three chunks and a root
        report = await put_file(network, ledger, io.BytesIO(data), OPTIONS, min_replicas=len(NODES))
        assert report.min_acks == len(NODES)
        first_batch_round2 = [(a, k) for r, a, k in network.sent if r == 2]
        assert first_batch_round2, "the refused node is asked again"
        assert {a for a, _ in first_batch_round2} == {NODES[2]}
        # Every value was recorded as on all four replicas: a put run again sends nothing.
        again = await put_file(network, ledger, io.BytesIO(data), OPTIONS, min_replicas=4)
        assert (again.sent, again.skipped) == (0, report.sent)
    finally:
        await ledger.close()


async def test_a_replica_refusing_every_round_is_recorded_short_and_sent_again(
    tmp_path: Path,
) -> None:
    network = Scripted({NODES[0]: 1000})
    ledger = await ChunkLedger.open(tmp_path, forget_before=0)
    try:
        data = b"x" * 4096 * 2
        report = await put_file(network, ledger, io.BytesIO(data), OPTIONS, min_replicas=4)
        assert report.min_acks == 3
        # Three rounds per batch, each asking the refusing node again.
        assert sum(a == NODES[0] for _, a, _ in network.sent) == 3 * report.sent
        # Short of min_replicas: a put run again sends everything again...
        again = await put_file(network, ledger, io.BytesIO(data), OPTIONS, min_replicas=4)
        assert again.skipped == 0 and again.sent == report.sent
        # ...but three acknowledgements are enough for min_replicas 3.
        third = await put_file(network, ledger, io.BytesIO(data), OPTIONS, min_replicas=3)
        assert (third.sent, third.skipped) == (0, report.sent)
    finally:
        await ledger.close()


async def test_a_value_no_replica_took_fails_the_put_after_the_last_round(tmp_path: Path) -> None:
    network = Scripted({a: 1000 for a in NODES})
    ledger = await ChunkLedger.open(tmp_path, forget_before=0)
    try:
        with pytest.raises(StoreFailed, match=r"reached no replica in 3 round"):
            await put_file(network, ledger, io.BytesIO(b"y" * 5000), OPTIONS, min_replicas=1)
        assert network.rounds == 3
        assert network.local, "the values stay committed locally"
    finally:
        await ledger.close()
