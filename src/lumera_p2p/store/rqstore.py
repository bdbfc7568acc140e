"""``RQStore``: the RaptorQ symbol directories to store, in the Go node's ``rqstore.db``.

The Go supernode records each action's directory of RaptorQ symbol files in the table
``rq_symbols_dir`` of ``rqstore.db`` (``pkg/storage/rqstore/store.go``); its P2P worker stores
the files of every directory whose first batch is stored and that is not yet complete. The
table here is Go's, column for column, so either node reads the other's file.

Three tables of our own sit beside it (a Go node never reads them):

* ``rq_symbols_dir_progress``: per directory, the symbols acknowledged so far, the files
  refused, and the last error (the status ``P2P.symbol_dirs`` reports);
* ``rq_symbols_dir_acked``: the journal that makes a restart resume without storing anything
  twice. A batch's file names are written here, durably, once the network acknowledged the
  batch and before the files are deleted; a name leaves the journal once its file is gone.
  After a crash, a journaled file is deleted without being stored again;
* ``rq_symbols_dir_refused``: files that were not stored because they are not what a symbol
  file must be (content that does not hash to the file's name, not a regular file, too large,
  unreadable), so they are reported and not read again on every tick.

Writes go through one writer thread and are acknowledged after their commit (``synchronous``
FULL); reads use a read-only connection of their own.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lumera_p2p.errors import StoreError
from lumera_p2p.store import schema
from lumera_p2p.store.readers import Readers
from lumera_p2p.store.writer import WriterThread, describe_sqlite_error

#: The Go node's file name (``<raptorq files_dir>/rq/rqstore.db`` there).
RQSTORE_DB = "rqstore.db"

#: Go's table, exactly (``createRQSymbolsDir`` in ``pkg/storage/rqstore/store.go``).
GO_SCHEMA = """CREATE TABLE IF NOT EXISTS rq_symbols_dir (
  txid TEXT NOT NULL,
  dir TEXT NOT NULL,
  is_first_batch_stored BOOLEAN NOT NULL DEFAULT FALSE,
  is_completed BOOLEAN NOT NULL DEFAULT FALSE,
  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (txid)
)"""

OUR_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS rq_symbols_dir_progress(
        txid TEXT PRIMARY KEY,
        stored INTEGER NOT NULL DEFAULT 0,
        refused INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS rq_symbols_dir_acked(
        txid TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (txid, name))""",
    """CREATE TABLE IF NOT EXISTS rq_symbols_dir_refused(
        txid TEXT NOT NULL,
        name TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (txid, name))""",
)

#: Longest error text kept per directory (a traceback-sized message is cut).
MAX_ERROR_TEXT = 1000

# Go's ``UpsertSymbolDirectory``, plus the first-batch flag the caller gives.
_UPSERT_DIR = (
    "INSERT INTO rq_symbols_dir(txid, dir, is_first_batch_stored, is_completed) "
    "VALUES(?, ?, ?, FALSE) ON CONFLICT(txid) DO UPDATE SET dir=excluded.dir, "
    "is_first_batch_stored=excluded.is_first_batch_stored, is_completed=FALSE"
)
_UPSERT_PROGRESS = (
    "INSERT INTO rq_symbols_dir_progress(txid) VALUES(?) ON CONFLICT(txid) DO NOTHING"
)
_TOUCH = "updated_at=CURRENT_TIMESTAMP"
_STATUS = (
    "SELECT d.txid, d.dir, d.is_first_batch_stored, d.is_completed, d.created_at, "
    "coalesce(p.stored, 0), coalesce(p.refused, 0), coalesce(p.last_error, '') "
    "FROM rq_symbols_dir d LEFT JOIN rq_symbols_dir_progress p ON p.txid = d.txid"
)


@dataclass(frozen=True)
class SymbolDir:
    """A row of ``rq_symbols_dir``: an action's txid and its directory of symbol files."""

    txid: str
    dir: str


@dataclass(frozen=True)
class SymbolDirStatus:
    """Where one registered directory stands (what ``P2P.symbol_dirs`` reports)."""

    txid: str
    directory: str
    #: Go's flag: the caller stored the first batch; the worker only takes such directories.
    first_batch_stored: bool
    #: Every file was stored (or refused) and the directory is done with.
    completed: bool
    #: When the row was created (SQLite's ``CURRENT_TIMESTAMP``, UTC).
    created_at: str
    #: Symbols the network acknowledged (through this node's worker), over all attempts.
    stored: int
    #: Files not stored because they are not valid symbol files (see ``refused_files``).
    refused: int
    #: Why the last attempt stopped short (empty when it did not).
    last_error: str


#: A row of ``_STATUS``, as SQLite returns it.
_StatusRow = tuple[str, str, int, int, str, int, int, str]


def _status(row: _StatusRow) -> SymbolDirStatus:
    txid, directory, first, completed, created, stored, refused, error = row
    return SymbolDirStatus(
        txid, directory, bool(first), bool(completed), str(created), stored, refused, error
    )


class RQStore:
    """The symbol-directory tables of one ``rqstore.db`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = WriterThread(str(path), schema.WRITER_PRAGMAS, name="rqstore-writer")
        self._readers = Readers(str(path), 1, "rqstore-reader")
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> RQStore:
        """Open (creating if needed) ``path`` and its tables; raise ``StoreError``."""
        file = Path(path)
        try:
            file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"{file.parent}: cannot create the directory ({exc})") from exc
        store = cls(file)
        await asyncio.to_thread(store._open_sync)
        return store

    def _open_sync(self) -> None:
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, str(self.path)) from exc
        try:
            conn.execute("PRAGMA busy_timeout=15000")
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            for statement in (GO_SCHEMA, *OUR_SCHEMA):
                conn.execute(statement)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, str(self.path)) from exc
        finally:
            conn.close()
        self._writer.start()

    async def close(self) -> None:
        """Finish queued writes and close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True

        def close_sync() -> None:
            self._writer.close()
            self._readers.close()

        await asyncio.to_thread(close_sync)

    # --- registration (Go's StoreSymbolDirectory / UpsertSymbolDirectory) -----------------

    async def register(self, txid: str, directory: str, *, first_batch_stored: bool) -> None:
        """Record ``directory`` for ``txid``, or update it: not complete, its refusals and
        last error forgotten (the files may have been fixed), its progress and journal kept."""

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(_UPSERT_DIR, (txid, directory, first_batch_stored))
            conn.execute(_UPSERT_PROGRESS, (txid,))
            conn.execute(
                f"UPDATE rq_symbols_dir_progress SET refused=0, last_error='', {_TOUCH} "
                "WHERE txid=?",
                (txid,),
            )
            conn.execute("DELETE FROM rq_symbols_dir_refused WHERE txid=?", (txid,))

        await self._writer.submit(job)

    async def set_first_batch_stored(self, txid: str) -> bool:
        """Go's ``UpdateIsFirstBatchStored``; return whether ``txid`` is registered."""

        def job(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE rq_symbols_dir SET is_first_batch_stored=TRUE WHERE txid=?", (txid,)
            ).rowcount

        return await self._writer.submit(job) == 1

    # --- what the worker reads ------------------------------------------------------------

    async def todo(self) -> list[SymbolDir]:
        """Go's ``GetToDoStoreSymbolDirs``: first batch stored, not completed (oldest first)."""

        def read(conn: sqlite3.Connection) -> list[SymbolDir]:
            rows = conn.execute(
                "SELECT txid, dir FROM rq_symbols_dir "
                "WHERE is_first_batch_stored = TRUE AND is_completed = FALSE "
                "ORDER BY created_at, txid"
            ).fetchall()
            return [SymbolDir(str(t), str(d)) for t, d in rows]

        return await self._readers.run(read)

    async def acked(self, txid: str) -> list[str]:
        """Names journaled as acknowledged whose files may still be on disk."""
        return await self._names("rq_symbols_dir_acked", txid)

    async def refused_names(self, txid: str) -> list[str]:
        """Names of the files refused for ``txid`` (not read again until re-registered)."""
        return await self._names("rq_symbols_dir_refused", txid)

    async def refused_files(self, txid: str) -> dict[str, str]:
        """The refused files of ``txid`` and why each was refused."""

        def read(conn: sqlite3.Connection) -> dict[str, str]:
            rows = conn.execute(
                "SELECT name, reason FROM rq_symbols_dir_refused WHERE txid=? ORDER BY name",
                (txid,),
            )
            return {str(n): str(r) for n, r in rows}

        return await self._readers.run(read)

    async def _names(self, table: str, txid: str) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(f"SELECT name FROM {table} WHERE txid=? ORDER BY name", (txid,))
            return [str(n) for (n,) in rows]

        return await self._readers.run(read)

    async def status(self, txid: str | None = None) -> list[SymbolDirStatus]:
        """Every registered directory (or just ``txid``'s), oldest first."""

        def read(conn: sqlite3.Connection) -> list[SymbolDirStatus]:
            if txid is None:
                rows = conn.execute(f"{_STATUS} ORDER BY d.created_at, d.txid").fetchall()
            else:
                rows = conn.execute(f"{_STATUS} WHERE d.txid=?", (txid,)).fetchall()
            return [_status(r) for r in rows]

        return await self._readers.run(read)

    # --- what the worker writes -----------------------------------------------------------

    async def record_acked(self, txid: str, names: Sequence[str]) -> None:
        """Journal ``names`` as acknowledged by the network and count them as stored."""
        rows = [(txid, n) for n in names]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO rq_symbols_dir_acked(txid, name) VALUES(?, ?) "
                "ON CONFLICT(txid, name) DO NOTHING",
                rows,
            )
            conn.execute(_UPSERT_PROGRESS, (txid,))
            conn.execute(
                f"UPDATE rq_symbols_dir_progress SET stored=stored+?, last_error='', {_TOUCH} "
                "WHERE txid=?",
                (len(names), txid),
            )

        await self._writer.submit(job)

    async def clear_acked(self, txid: str, names: Sequence[str]) -> None:
        """Drop journal entries whose files are gone."""
        unique = list(dict.fromkeys(names))

        def job(conn: sqlite3.Connection) -> None:
            for chunk in schema.chunks(unique):
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    f"DELETE FROM rq_symbols_dir_acked WHERE txid=? AND name IN ({marks})",
                    (txid, *chunk),
                )

        await self._writer.submit(job)

    async def record_refused(self, txid: str, refused: dict[str, str]) -> None:
        """Remember files that are not valid symbol files, and why."""
        rows = [(txid, name, reason[:MAX_ERROR_TEXT]) for name, reason in refused.items()]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO rq_symbols_dir_refused(txid, name, reason) VALUES(?, ?, ?) "
                "ON CONFLICT(txid, name) DO UPDATE SET reason=excluded.reason",
                rows,
            )
            conn.execute(_UPSERT_PROGRESS, (txid,))
            conn.execute(
                "UPDATE rq_symbols_dir_progress SET refused=(SELECT count(*) FROM "
                f"rq_symbols_dir_refused WHERE txid=?), {_TOUCH} WHERE txid=?",
                (txid, txid),
            )

        await self._writer.submit(job)

    async def set_error(self, txid: str, error: str) -> None:
        """Record why the last attempt at ``txid`` stopped short."""

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(_UPSERT_PROGRESS, (txid,))
            conn.execute(
                f"UPDATE rq_symbols_dir_progress SET last_error=?, {_TOUCH} WHERE txid=?",
                (error[:MAX_ERROR_TEXT], txid),
            )

        await self._writer.submit(job)

    async def set_completed(self, txid: str) -> None:
        """Go's ``SetIsCompleted``; the journal of ``txid`` goes with it (nothing is left to
        resume)."""

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE rq_symbols_dir SET is_completed=TRUE WHERE txid=?", (txid,))
            conn.execute("DELETE FROM rq_symbols_dir_acked WHERE txid=?", (txid,))
            conn.execute(
                f"UPDATE rq_symbols_dir_progress SET last_error='', {_TOUCH} WHERE txid=?",
                (txid,),
            )

        await self._writer.submit(job)


def read_status_file(path: Path) -> list[SymbolDirStatus]:
    """Every directory recorded in the ``rqstore.db`` at ``path``, read-only (safe while a node
    has it open); a file a Go node wrote has no progress table, and reads as no progress."""
    if not path.exists():
        return []
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise describe_sqlite_error(exc, str(path)) from exc
    try:
        conn.execute("PRAGMA busy_timeout=15000")
        tables = {
            str(name)
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if "rq_symbols_dir" not in tables:
            return []
        if "rq_symbols_dir_progress" in tables:
            query = f"{_STATUS} ORDER BY d.created_at, d.txid"
        else:
            query = (
                "SELECT txid, dir, is_first_batch_stored, is_completed, created_at, 0, 0, '' "
                "FROM rq_symbols_dir ORDER BY created_at, txid"
            )
        return [_status(r) for r in conn.execute(query).fetchall()]
    except sqlite3.Error as exc:
        raise describe_sqlite_error(exc, str(path)) from exc
    finally:
        conn.close()
