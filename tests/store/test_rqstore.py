"""``rqstore.db``: Go's ``rq_symbols_dir`` table exactly, our progress and journal beside it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lumera_p2p.store.rqstore import RQSTORE_DB, RQStore, SymbolDir, read_status_file

# The Go node's DDL and statements (pkg/storage/rqstore/store.go), written out here rather
# than imported, so that a drift of ours from Go's fails this test.
GO_DDL = """
  CREATE TABLE IF NOT EXISTS rq_symbols_dir (
  txid TEXT NOT NULL,
  dir TEXT NOT NULL,
  is_first_batch_stored BOOLEAN NOT NULL DEFAULT FALSE,
  is_completed BOOLEAN NOT NULL DEFAULT FALSE,
  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (txid)
);"""
GO_INSERT = "INSERT INTO rq_symbols_dir (txid, dir) VALUES (?, ?)"
GO_FIRST_BATCH = "UPDATE rq_symbols_dir SET is_first_batch_stored = TRUE WHERE txid = ?"
GO_TODO = (
    "SELECT txid, dir FROM rq_symbols_dir "
    "WHERE is_first_batch_stored = TRUE AND is_completed = FALSE"
)
GO_DIR = "SELECT dir FROM rq_symbols_dir WHERE txid = ?"


def go_file(path: Path) -> None:
    """An rqstore.db as a Go node leaves it: two directories, one with its first batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(GO_DDL)
    conn.execute(GO_INSERT, ("tx-a", "/rq/tx-a"))
    conn.execute(GO_INSERT, ("tx-b", "/rq/tx-b"))
    conn.execute(GO_FIRST_BATCH, ("tx-a",))
    conn.close()


def table_info(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA table_info(rq_symbols_dir)").fetchall()
    finally:
        conn.close()


async def test_a_go_nodes_file_is_read_and_left_readable_by_go(tmp_path: Path) -> None:
    path = tmp_path / RQSTORE_DB
    go_file(path)
    store = await RQStore.open(path)
    try:
        assert await store.todo() == [SymbolDir("tx-a", "/rq/tx-a")]
        [a, b] = await store.status()
        assert (a.txid, a.first_batch_stored, a.completed, a.stored) == ("tx-a", True, False, 0)
        assert (b.txid, b.first_batch_stored) == ("tx-b", False)
        assert await store.set_first_batch_stored("tx-b")
        assert not await store.set_first_batch_stored("tx-none")
        await store.set_completed("tx-a")
        await store.register("tx-c", "/rq/tx-c", first_batch_stored=True)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert sorted(conn.execute(GO_TODO).fetchall()) == [
            ("tx-b", "/rq/tx-b"),
            ("tx-c", "/rq/tx-c"),
        ]
        assert conn.execute(GO_DIR, ("tx-c",)).fetchone() == ("/rq/tx-c",)
        created = conn.execute("SELECT created_at FROM rq_symbols_dir WHERE txid='tx-c'")
        assert len(created.fetchone()[0]) == len("2026-01-02 03:04:05")  # CURRENT_TIMESTAMP
    finally:
        conn.close()


async def test_our_table_is_gos_column_for_column(tmp_path: Path) -> None:
    go_file(tmp_path / "go.db")
    store = await RQStore.open(tmp_path / "ours.db")
    await store.close()
    assert table_info(tmp_path / "ours.db") == table_info(tmp_path / "go.db")


async def test_registering_again_updates_the_path_and_forgets_refusals_not_progress(
    tmp_path: Path,
) -> None:
    store = await RQStore.open(tmp_path / "sub" / RQSTORE_DB)
    try:
        await store.register("tx", "/one/tx", first_batch_stored=False)
        assert await store.todo() == []
        await store.register("tx", "/one/tx", first_batch_stored=True)
        assert await store.todo() == [SymbolDir("tx", "/one/tx")]
        await store.record_acked("tx", ["block_0/a", "block_0/b"])
        await store.record_refused("tx", {"block_0/c": "content does not hash to its name"})
        await store.set_error("tx", "x" * 5000)
        [status] = await store.status("tx")
        assert (status.stored, status.refused, len(status.last_error)) == (2, 1, 1000)
        assert await store.refused_files("tx") == {"block_0/c": "content does not hash to its name"}
        await store.set_completed("tx")
        assert await store.todo() == []
        assert await store.acked("tx") == []  # nothing left to resume once complete
        await store.register("tx", "/two/tx", first_batch_stored=True)
        [status] = await store.status("tx")
        assert (status.directory, status.completed, status.stored) == ("/two/tx", False, 2)
        assert (status.refused, status.last_error) == (0, "")
        assert await store.refused_names("tx") == []
    finally:
        await store.close()


async def test_the_journal_holds_acknowledged_names_until_cleared(tmp_path: Path) -> None:
    path = tmp_path / RQSTORE_DB
    store = await RQStore.open(path)
    await store.register("tx", "/d/tx", first_batch_stored=True)
    names = [f"block_0/{i:04d}" for i in range(2500)]
    await store.record_acked("tx", names)
    await store.record_acked("tx", names[:10])  # journaling twice is harmless
    await store.close()
    # Acknowledged means committed: a new connection (a restarted node) sees it all.
    store = await RQStore.open(path)
    try:
        assert await store.acked("tx") == names
        await store.clear_acked("tx", names[:2000])
        assert await store.acked("tx") == names[2000:]
        [status] = await store.status("tx")
        assert status.stored == 2510
    finally:
        await store.close()


async def test_the_status_file_reads_read_only_and_go_files_without_progress(
    tmp_path: Path,
) -> None:
    assert read_status_file(tmp_path / "absent.db") == []
    go_file(tmp_path / "go.db")
    rows = read_status_file(tmp_path / "go.db")
    assert [(r.txid, r.stored, r.last_error) for r in rows] == [("tx-a", 0, ""), ("tx-b", 0, "")]
    before = (tmp_path / "go.db").read_bytes()
    read_status_file(tmp_path / "go.db")
    assert (tmp_path / "go.db").read_bytes() == before
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert read_status_file(empty) == []
