"""What this node knows about chunks it has stored on the network: the put side of resuming.

After each batch of a file's chunks is stored, the node records, per chunk, how many replica
nodes acknowledged it and how many it was sent to. Our nodes acknowledge a store only after
their transaction commits (Go's only after queueing it), so an acknowledgement is the best
evidence the network holds a copy short of fetching it back. A put run again skips a chunk
whose record is recent (``files.resume_window``) and shows enough replicas: at least
``min_replicas`` (by default ``dht.replicas``), or every node it was sent to when the network
had fewer store-eligible nodes than that. Anything else is sent again; sending a value a node
already holds costs bandwidth but is harmless, so the rule errs that way.

The ledger is a small SQLite file of its own (``files.sqlite3`` in ``data_dir``, beside the
Go node's databases, whose schema stays untouched), written by one writer thread; rows older
than the window are dropped when it opens, so it stays the size of recent puts.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lumera_p2p.store.schema import MAX_SQL_VARS, WRITER_PRAGMAS
from lumera_p2p.store.writer import WriterThread

LEDGER_FILE = "files.sqlite3"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS stored_chunks(
        key BLOB PRIMARY KEY,
        acks INTEGER NOT NULL,
        targets INTEGER NOT NULL,
        at REAL NOT NULL)""",
)
_UPSERT = (
    "INSERT INTO stored_chunks(key, acks, targets, at) VALUES(?, ?, ?, ?) "
    "ON CONFLICT(key) DO UPDATE SET acks=excluded.acks, targets=excluded.targets, at=excluded.at"
)


@dataclass(frozen=True)
class Acks:
    """How one chunk's store went: replicas that acknowledged it, of the nodes it went to."""

    acks: int
    targets: int


class ChunkLedger:
    """The chunk records of one node (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = WriterThread(str(path), WRITER_PRAGMAS, name="files-ledger")
        self._closed = False

    @classmethod
    async def open(cls, data_dir: Path, *, forget_before: float) -> ChunkLedger:
        """Open (creating) ``data_dir/files.sqlite3``; drop records older than
        ``forget_before`` (seconds since the epoch). Raises ``StoreError``."""
        ledger = cls(data_dir / LEDGER_FILE)
        await asyncio.to_thread(ledger._writer.start)

        def setup(conn: sqlite3.Connection) -> None:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("DELETE FROM stored_chunks WHERE at < ?", (forget_before,))

        try:
            await ledger._writer.submit(setup)
        except BaseException:
            await ledger.close()
            raise
        return ledger

    async def stored(self, keys: Sequence[bytes], *, min_replicas: int, since: float) -> set[bytes]:
        """Which of ``keys`` were stored on enough replicas at or after ``since``."""
        wanted = list(dict.fromkeys(keys))

        def read(conn: sqlite3.Connection) -> set[bytes]:
            found: set[bytes] = set()
            for start in range(0, len(wanted), MAX_SQL_VARS - 2):
                part = wanted[start : start + MAX_SQL_VARS - 2]
                marks = ",".join("?" * len(part))
                rows = conn.execute(
                    f"SELECT key FROM stored_chunks WHERE key IN ({marks}) AND at >= ? "
                    "AND acks >= 1 AND acks >= MIN(?, targets)",
                    (*part, since, min_replicas),
                )
                found.update(bytes(row[0]) for row in rows)
            return found

        return await self._writer.submit(read) if wanted else set()

    async def record(self, results: Mapping[bytes, Acks], at: float) -> None:
        """Record how each chunk's store went (committed before this returns)."""
        rows = [(key, a.acks, a.targets, at) for key, a in results.items()]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(_UPSERT, rows)

        if rows:
            await self._writer.submit(write)

    async def close(self) -> None:
        """Finish queued writes and close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._writer.close)
