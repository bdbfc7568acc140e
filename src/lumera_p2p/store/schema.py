"""File names, tables and pragmas of the Go node's SQLite stores (kept identical on purpose).

An operator can point a Python node at a Go node's ``data_dir`` and keep its data: the same
files (``data001.sqlite3``, ``data001-meta.sqlite3``), the same tables and columns, the same
timestamp format (:mod:`lumera_p2p.store.timefmt`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, TypeVar

DATA_DB = "data001.sqlite3"
META_DB = "data001-meta.sqlite3"

DATA_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS data(
        key TEXT PRIMARY KEY,
        data BLOB NOT NULL,
        is_original BOOL DEFAULT FALSE,
        createdAt DATETIME DEFAULT CURRENT_TIMESTAMP,
        updatedAt DATETIME DEFAULT CURRENT_TIMESTAMP,
        replicatedAt DATETIME,
        republishedAt DATETIME,
        datatype INT DEFAULT 0,
        is_on_cloud BOOL DEFAULT false)""",
    "CREATE INDEX IF NOT EXISTS idx_createdat ON data(createdAt)",
    """CREATE TABLE IF NOT EXISTS replication_info(
        id TEXT PRIMARY KEY,
        ip TEXT NOT NULL,
        port INTEGER NOT NULL,
        is_active BOOL DEFAULT FALSE,
        is_adjusted BOOL DEFAULT FALSE,
        lastReplicatedAt DATETIME,
        createdAt DATETIME DEFAULT CURRENT_TIMESTAMP,
        updatedAt DATETIME DEFAULT CURRENT_TIMESTAMP,
        last_seen DATETIME DEFAULT NULL)""",
    """CREATE TABLE IF NOT EXISTS replication_keys(
        key TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        ip TEXT NOT NULL,
        port INTEGER NOT NULL,
        attempts INTEGER DEFAULT 0,
        updatedAt DATETIME DEFAULT CURRENT_TIMESTAMP)""",
)

#: Columns the Go node adds to older databases with ALTER TABLE (ensure…Column).
DATA_ADDED_COLUMNS = (
    ("data", "datatype", "INT DEFAULT 0"),
    ("data", "is_on_cloud", "BOOL DEFAULT false"),
    ("replication_info", "last_seen", "DATETIME DEFAULT NULL"),
)

META_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS disabled_keys(
        key TEXT PRIMARY KEY,
        createdAt DATETIME DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS del_keys(
        key TEXT PRIMARY KEY,
        count INTEGER NOT NULL DEFAULT 0,
        nodes TEXT NOT NULL DEFAULT "",
        createdAt DATETIME DEFAULT CURRENT_TIMESTAMP)""",
)

META_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = ()

#: The durability modes of the data database (``store.synchronous``).
Synchronous = Literal["full", "normal"]
SYNCHRONOUS_MODES: tuple[Synchronous, ...] = ("full", "normal")


def writer_pragmas(synchronous: Synchronous = "full") -> tuple[str, ...]:
    """The writer connection's pragmas, with ``synchronous`` FULL or NORMAL.

    Either way a write is acknowledged only after its transaction commits. FULL fsyncs the WAL
    at every commit, so an acknowledged write survives power loss. NORMAL (the Go node's
    setting) fsyncs only at checkpoints: a committed transaction is in the operating system's
    cache and survives the process being killed, but the last ones can be lost if the machine
    loses power. Group commit keeps FULL's extra fsync shared among concurrent writes.
    """
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
    return (
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={synchronous.upper()}",
        "PRAGMA cache_size=-20000",
        "PRAGMA busy_timeout=15000",
        "PRAGMA journal_size_limit=5242880",
        # Bound the WAL (about 16 MiB of pages) between the writer's own timed checkpoints.
        "PRAGMA wal_autocheckpoint=4096",
        "PRAGMA foreign_keys=OFF",
    )


#: The writer's pragmas in the default mode (FULL); the meta database always uses these.
WRITER_PRAGMAS = writer_pragmas("full")

READER_PRAGMAS = (
    "PRAGMA busy_timeout=15000",
    "PRAGMA cache_size=-20000",
    "PRAGMA query_only=ON",
)

#: SQLite's default limit on bound variables was 999 before 3.32; Go chunks at 900.
MAX_SQL_VARS = 900

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = MAX_SQL_VARS) -> Iterator[Sequence[T]]:
    """``items`` in runs of at most ``size``, one statement's bound variables each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
