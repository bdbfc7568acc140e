"""The symbol worker over real files and a real rqstore.db, with a stand-in for the network."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from lumera_p2p.content import content_key
from lumera_p2p.errors import StoreFailed
from lumera_p2p.store.rqstore import RQSTORE_DB, RQStore, SymbolDir
from lumera_p2p.symbols.files import LAYOUT_FILE
from lumera_p2p.symbols.worker import RAPTORQ_SYMBOL, SymbolWorker, SymbolWorkerOptions
from tests.support import eventually
from tests.symbols.dirs import files_left, write_symbol_dir


@dataclass
class FakeNetwork:
    """Takes batches as ``P2P.store_batch`` would, failing the calls it is told to."""

    fail_calls: set[int] = field(default_factory=set)
    crash_calls: set[int] = field(default_factory=set)
    calls: list[tuple[list[bytes], int, str]] = field(default_factory=list)
    accepted: list[bytes] = field(default_factory=list)

    async def store_batch(self, values: Sequence[bytes], datatype: int, task_id: str) -> None:
        self.calls.append((list(values), datatype, task_id))
        if len(self.calls) in self.crash_calls:
            raise RuntimeError("a bug, not a store failure")
        if len(self.calls) in self.fail_calls:
            raise StoreFailed("too few requests succeeded")
        self.accepted.extend(values)


@pytest_asyncio.fixture
async def rq(tmp_path: Path) -> AsyncIterator[RQStore]:
    store = await RQStore.open(tmp_path / RQSTORE_DB)
    yield store
    await store.close()


#: Batches of 10 here (the plan's tests show Go's 1,000): files are slow to create on a busy disk.
BATCH = 10


def worker(rq: RQStore, net: FakeNetwork, interval: float = 30.0) -> SymbolWorker:
    options = SymbolWorkerOptions(interval=interval, batch_size=BATCH)
    return SymbolWorker(rq, net.store_batch, options)


async def test_a_directory_is_stored_in_batches_deleted_completed_and_removed(
    tmp_path: Path, rq: RQStore
) -> None:
    directory = tmp_path / "rq" / "tx1"
    symbols = write_symbol_dir(directory, 25, blocks=2)
    await rq.register("tx1", str(directory), first_batch_stored=True)
    net = FakeNetwork()
    outcomes = await worker(rq, net).run_round()
    assert [len(v) for v, _, _ in net.calls] == [10, 10, 5]
    assert {(d, t) for _, d, t in net.calls} == {(RAPTORQ_SYMBOL, "tx1")}
    assert sorted(net.accepted) == sorted(symbols.values())
    assert outcomes["tx1"].completed and outcomes["tx1"].removed
    assert not directory.exists()
    [status] = await rq.status("tx1")
    assert status.completed and status.stored == 25 and status.last_error == ""
    assert await rq.todo() == []


async def test_a_failed_batch_resumes_from_what_is_left_and_nothing_goes_twice(
    tmp_path: Path, rq: RQStore
) -> None:
    directory = tmp_path / "tx2"
    symbols = write_symbol_dir(directory, 30)
    await rq.register("tx2", str(directory), first_batch_stored=True)
    net = FakeNetwork(fail_calls={2})
    work = worker(rq, net)
    first = await work.run_round()
    assert first["tx2"].stored == 10 and not first["tx2"].completed
    assert len(files_left(directory)) == 20
    [status] = await rq.status("tx2")
    assert "not stored: too few requests succeeded" in status.last_error
    assert not status.completed and status.stored == 10
    second = await work.run_round()
    assert second["tx2"].completed
    assert sorted(net.accepted) == sorted(symbols.values())  # each acknowledged once
    assert [len(v) for v, _, _ in net.calls] == [10, 10, 10, 10]
    assert net.calls[1][0] == net.calls[2][0]  # only the failed batch went again
    assert work.counters.failed_batches == 1 and work.counters.symbols_stored == 30


async def test_journaled_files_are_deleted_after_a_crash_without_being_sent_again(
    tmp_path: Path, rq: RQStore
) -> None:
    directory = tmp_path / "tx3"
    symbols = write_symbol_dir(directory, 15)
    names = sorted(f"block_0/{k}" for k in symbols)
    await rq.register("tx3", str(directory), first_batch_stored=True)
    # A crash after the network acknowledged the first batch and the journal committed, but
    # before the files were deleted.
    await rq.record_acked("tx3", names[:10])
    net = FakeNetwork()
    work = worker(rq, net)
    outcome = (await work.run_round())["tx3"]
    sent = {content_key(v) for v, _, _ in net.calls for v in v}
    assert sent == {n.split("/")[1] for n in names[10:]}
    assert outcome.forgotten == 10 and outcome.stored == 5 and outcome.completed
    assert work.counters.symbols_forgotten == 10
    [status] = await rq.status("tx3")
    assert status.completed and status.stored == 15
    assert not directory.exists()


async def test_files_that_are_not_their_symbol_are_refused_reported_and_kept(
    tmp_path: Path, rq: RQStore
) -> None:
    directory = tmp_path / "tx4"
    symbols = write_symbol_dir(directory, 20)
    damaged = sorted(symbols)[0]
    (directory / "block_0" / damaged).write_bytes(b"bit rot")
    (directory / "block_0" / "symbol_3.bin").write_bytes(b"misnamed")
    await rq.register("tx4", str(directory), first_batch_stored=True)
    net = FakeNetwork()
    work = worker(rq, net)
    outcome = (await work.run_round())["tx4"]
    assert outcome.refused == 2 and outcome.stored == 19
    assert outcome.completed and not outcome.removed
    assert b"bit rot" not in net.accepted and len(net.accepted) == 19
    assert files_left(directory) == {damaged, "symbol_3.bin"}
    refused = await rq.refused_files("tx4")
    assert set(refused) == {f"block_0/{damaged}", "block_0/symbol_3.bin"}
    [status] = await rq.status("tx4")
    assert status.completed and status.refused == 2 and status.stored == 19
    # The operator fixes the files and registers again: this time the directory goes.
    (directory / "block_0" / damaged).write_bytes(symbols[damaged])
    (directory / "block_0" / "symbol_3.bin").unlink()
    await rq.register("tx4", str(directory), first_batch_stored=True)
    again = (await work.run_round())["tx4"]
    assert again.stored == 1 and again.removed and not directory.exists()


async def test_a_directory_not_named_after_its_txid_is_stored_but_not_removed(
    tmp_path: Path, rq: RQStore
) -> None:
    directory = tmp_path / "not-tx5"
    write_symbol_dir(directory, 30, blocks=3)
    await rq.register("tx5", str(directory), first_batch_stored=True)
    outcome = (await worker(rq, FakeNetwork()).run_round())["tx5"]
    assert outcome.completed and outcome.stored == 30 and not outcome.removed
    assert directory.is_dir()
    assert [p.name for p in directory.iterdir()] == [LAYOUT_FILE]  # empty blocks pruned
    [status] = await rq.status("tx5")
    assert status.completed


async def test_only_directories_whose_first_batch_is_stored_are_taken(
    tmp_path: Path, rq: RQStore
) -> None:
    directory = tmp_path / "tx6"
    write_symbol_dir(directory, 5)
    await rq.register("tx6", str(directory), first_batch_stored=False)
    net = FakeNetwork()
    assert await worker(rq, net).run_round() == {}
    assert net.calls == [] and len(files_left(directory)) == 5


async def test_a_missing_directory_is_an_error_until_it_appears(
    tmp_path: Path, rq: RQStore, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "tx7"
    await rq.register("tx7", str(directory), first_batch_stored=True)
    work = worker(rq, FakeNetwork())
    for _ in range(3):
        assert (await work.run_round())["tx7"].error
    assert await rq.todo() == [SymbolDir("tx7", str(directory))]
    [status] = await rq.status("tx7")
    assert "cannot list" in status.last_error
    assert sum("tx7" in r.getMessage() for r in caplog.records) == 1  # logged once, not per round
    write_symbol_dir(directory, 3)
    assert (await work.run_round())["tx7"].completed


async def test_the_loop_runs_at_once_wakes_on_demand_and_survives_a_failed_round(
    tmp_path: Path, rq: RQStore
) -> None:
    net = FakeNetwork(crash_calls={1})
    work = worker(rq, net, interval=3600.0)
    task = asyncio.create_task(work.run())
    try:
        await eventually(lambda: work.counters.rounds >= 1, what="the first round")
        directory = tmp_path / "tx8"
        write_symbol_dir(directory, 10)
        await rq.register("tx8", str(directory), first_batch_stored=True)
        work.wake()
        await eventually(lambda: len(net.calls) == 1, what="the woken round")
        assert directory.exists()  # that round failed on a bug; the loop goes on
        work.wake()
        await eventually(lambda: not directory.exists(), what="the next round")
        assert len(net.accepted) == 10
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
