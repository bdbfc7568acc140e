"""Symbol directories on real nodes: RaptorQ symbol files registered with one node end up on
the network (read back through another), deleted, and the directory marked complete and
removed; across a SIGKILL of a real ``lumera-p2p run`` half-way too, without storing again
what the network had acknowledged. 500 files by default, 5,000 under ``-m slow`` (creating and
deleting files is what costs, at several milliseconds each on a busy shared disk)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from lumera_p2p import P2P, DataDirLocked, NotRunning, SymbolDirError, load_config
from lumera_p2p.content import key_to_hex
from lumera_p2p.localnet import LocalNode, create_localnet, load_configs, start_nodes
from lumera_p2p.store.rqstore import RQSTORE_DB, SymbolDirStatus, read_status_file
from lumera_p2p.symbols.files import LAYOUT_FILE
from lumera_p2p.symbols.registration import register_offline
from tests.support import eventually
from tests.symbols.dirs import files_left, write_symbol_dir

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="module")]

#: Directory sizes: the default suite's, and the issue's 5,000 under ``-m slow``.
SIZES = [pytest.param(500, id="500"), pytest.param(5000, id="5000", marks=pytest.mark.slow)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def network(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[P2P]]:
    nodes = await start_nodes(load_configs(create_localnet(tmp_path_factory.mktemp("net"), 4)))
    yield nodes
    await asyncio.gather(*(n.stop() for n in nodes))


def data_rows(data_dir: Path, keys: list[str]) -> dict[str, tuple[int, str, str]]:
    """``key → (datatype, createdAt, updatedAt)`` in a node's data table, read-only."""
    by_hex = {key_to_hex(k): k for k in keys}
    conn = sqlite3.connect(f"file:{data_dir / 'data001.sqlite3'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT key, datatype, createdAt, updatedAt FROM data").fetchall()
    finally:
        conn.close()
    return {by_hex[k]: (d, c, u) for k, d, c, u in rows if k in by_hex}


async def completed(node: P2P, txid: str) -> bool:
    [status] = await node.symbol_dirs(txid)
    return status.completed


@pytest.mark.parametrize("count", SIZES)
async def test_symbol_files_are_stored_deleted_and_marked_complete(
    network: list[P2P], tmp_path: Path, count: int
) -> None:
    origin, reader = network[0], network[2]
    txid = f"tx-{count}"
    directory = tmp_path / "raptorq_files" / txid
    symbols = write_symbol_dir(directory, count, blocks=2)
    status = await origin.register_symbol_dir(txid, directory)
    assert status.directory == str(directory) and not status.completed
    await eventually(lambda: completed(origin, txid), 120, "the directory completed")
    await eventually(lambda: not directory.exists(), 60, "the directory removed")
    [status] = await origin.symbol_dirs(txid)
    assert status.stored == count and status.refused == 0 and status.last_error == ""
    # Batches of Go's 1,000 (the default), each as datatype 1.
    assert origin.symbol_worker.options.batch_size == 1000
    found = await reader.batch_retrieve(list(symbols))
    assert found == symbols
    rows = data_rows(origin.config.p2p.data_dir, list(symbols))
    assert len(rows) == count and {d for d, _, _ in rows.values()} == {1}


async def test_a_directory_not_named_after_its_txid_is_stored_but_kept(
    network: list[P2P], tmp_path: Path
) -> None:
    origin = network[1]
    directory = tmp_path / "symbols-of-tx-guard"
    symbols = write_symbol_dir(directory, 40)
    await origin.register_symbol_dir("tx-guard", directory)
    await eventually(lambda: completed(origin, "tx-guard"), 60, "the directory completed")
    assert directory.is_dir() and files_left(directory) == set()
    assert (directory / LAYOUT_FILE).exists()
    assert await network[3].batch_retrieve(list(symbols)) == symbols


async def test_registration_refuses_bad_input(network: list[P2P], tmp_path: Path) -> None:
    node = network[0]
    for txid in ("", "a/b", "has space", "..", "x" * 300):
        with pytest.raises(SymbolDirError):
            await node.register_symbol_dir(txid, tmp_path)
    with pytest.raises(SymbolDirError, match="not a directory"):
        await node.register_symbol_dir("tx-none", tmp_path / "absent")
    assert [s.txid for s in await node.symbol_dirs("tx-none")] == []


async def test_a_node_alone_keeps_the_files_and_says_why(tmp_path: Path) -> None:
    [local] = create_localnet(tmp_path / "alone", 1)
    node = await P2P.create(load_config(local.config_path))
    directory = tmp_path / "tx-alone"
    symbols = write_symbol_dir(directory, 30)
    await node.register_symbol_dir("tx-alone", directory)  # before start: taken at start
    await node.start()
    try:

        async def failed() -> bool:
            [status] = await node.symbol_dirs("tx-alone")
            return bool(status.last_error)

        await eventually(failed, 60, "the failure recorded")
        [status] = await node.symbol_dirs("tx-alone")
        assert not status.completed and status.stored == 0
        assert files_left(directory) == set(symbols)
    finally:
        await node.stop()
    with pytest.raises(NotRunning):
        await node.symbol_dirs()


async def test_registering_without_the_node_is_refused_while_it_runs(
    network: list[P2P], tmp_path: Path
) -> None:
    with pytest.raises(DataDirLocked, match="register through the node itself"):
        await register_offline(network[0].config, "tx-offline", tmp_path, first_batch_stored=True)


# --- a real process, SIGKILLed half-way ------------------------------------------------------

#: Batches per directory in the kill test, so that the kill lands with many still to go.
KILL_BATCHES = 50


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lumera_p2p", *args]


def status_of(config: Path, txid: str) -> SymbolDirStatus | None:
    path = load_config(config).p2p.data_dir / RQSTORE_DB
    return next((s for s in read_status_file(path) if s.txid == txid), None)


def journal(config: Path, txid: str) -> set[str]:
    path = load_config(config).p2p.data_dir / RQSTORE_DB
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name FROM rq_symbols_dir_acked WHERE txid=?", (txid,))
        return {str(name).rsplit("/", 1)[-1] for (name,) in rows}
    finally:
        conn.close()


def small_batches(node: LocalNode, batch_size: int) -> None:
    config = yaml.safe_load(node.config_path.read_text())
    config["symbols"] = {"batch_size": batch_size, "interval": 1.0}
    node.config_path.write_text(yaml.safe_dump(config))


async def start_run(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *cli("run", "--config", str(config), "--log-level", "info"),
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.mark.parametrize("count", SIZES)
async def test_a_sigkill_half_way_resumes_without_storing_again_and_completes(
    tmp_path: Path, count: int
) -> None:
    batch = count // KILL_BATCHES
    local = create_localnet(tmp_path / "net", 4)
    origin = local[0]
    small_batches(origin, batch)
    # The peers only serve: the origin, once up, finds them through the registry.
    peers = [await P2P.create(load_config(n.config_path)) for n in local[1:]]
    await asyncio.gather(*(p.start(bootstrap=False) for p in peers))
    proc: asyncio.subprocess.Process | None = None
    try:
        txid = "tx-kill"
        directory = tmp_path / "raptorq_files" / txid
        symbols = write_symbol_dir(directory, count, size=512, blocks=1)
        # What `lumera-p2p symbols add` does (tests/symbols/test_cli.py), without its start-up.
        await register_offline(
            load_config(origin.config_path), txid, directory, first_batch_stored=True
        )
        log = tmp_path / "origin.log"

        proc = await start_run(origin.config_path, log)

        def half_way() -> bool:
            status = status_of(origin.config_path, txid)
            return status is not None and status.stored >= count // 2

        await eventually(half_way, 120, "half the symbols acknowledged")
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        proc = None

        status = status_of(origin.config_path, txid)
        assert status is not None and not status.completed, "finished before the kill"
        acknowledged = (set(symbols) - files_left(directory)) | journal(origin.config_path, txid)
        assert count // 2 <= len(acknowledged) < count
        stored_before = status.stored

        proc = await start_run(origin.config_path, log)
        await eventually(
            lambda: (s := status_of(origin.config_path, txid)) is not None and s.completed,
            120,
            "the directory completed after the restart",
        )
        await eventually(lambda: not directory.exists(), 30, "the directory removed")
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
        proc = None

        status = status_of(origin.config_path, txid)
        assert status is not None and status.completed and status.refused == 0
        # At most the batch in flight at the kill went out twice (acknowledged by the network
        # but not yet journaled); nothing journaled did.
        assert count <= status.stored <= count + batch
        assert stored_before <= len(acknowledged)
        rows = data_rows(load_config(origin.config_path).p2p.data_dir, list(symbols))
        assert len(rows) == count and {d for d, _, _ in rows.values()} == {1}
        stored_again = [k for k in acknowledged if rows[k][1] != rows[k][2]]
        assert stored_again == [], f"{len(stored_again)} acknowledged symbols were stored again"
        # Every peer holds every symbol (4 nodes, 6 replicas), read back without the origin.
        for peer in peers:
            assert await peer.batch_retrieve(list(symbols), local_only=True) == symbols
    finally:
        if proc is not None:
            proc.kill()
            await proc.wait()
        await asyncio.gather(*(p.stop() for p in peers))
