"""File names, tables and pragmas of the Go node's SQLite stores (kept identical on purpose).

An operator can point a Python node at a Go node's ``data_dir`` and keep its data: the same
files (``data001.sqlite3``, ``data001-meta.sqlite3``), the same tables and columns, the same
timestamp format (:mod:`lumera_p2p.store.timefmt`).
"""

from __future__ import annotations

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

# The Go node runs synchronous=NORMAL, which in WAL mode can lose the last commits on power
# loss even though it has replied OK. We acknowledge a write only once it is durable, so the
# writer uses FULL (an fsync of the WAL per transaction; group commit keeps that cheap).
WRITER_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA cache_size=-20000",
    "PRAGMA busy_timeout=15000",
    "PRAGMA journal_size_limit=5242880",
    # Bound the WAL (about 16 MiB of pages) between the writer's own timed checkpoints.
    "PRAGMA wal_autocheckpoint=4096",
    "PRAGMA foreign_keys=OFF",
)

READER_PRAGMAS = (
    "PRAGMA busy_timeout=15000",
    "PRAGMA cache_size=-20000",
    "PRAGMA query_only=ON",
)

#: SQLite's default limit on bound variables was 999 before 3.32; Go chunks at 900.
MAX_SQL_VARS = 900
