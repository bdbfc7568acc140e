"""``LocalStore``: the node's values and replication bookkeeping in SQLite under ``data_dir``.

Two databases, as the Go node keeps them (see :mod:`.schema`): ``data001.sqlite3`` holds the
values (``data``) and the replication metadata (``replication_info``, ``replication_keys``);
``data001-meta.sqlite3`` holds ``disabled_keys`` and ``del_keys``. Each has one writer thread
(:class:`.writer.WriterThread`). A read of one value up to 1 MiB, and a batch read's first
256 KiB, run on the event loop itself: a cached read costs less than a hop to a thread and
back. Larger values and the rest of large batches are read on
a small pool of read-only connections, which WAL lets proceed while the writer commits (see
:mod:`.readers`). The process holds a lock on ``data_dir`` (:mod:`.lock`) for the store's lifetime.

Where the Go store is weak this one differs, deliberately:

* A write is acknowledged only after its transaction commits (with ``synchronous=FULL`` by
  default, or NORMAL, see :func:`.schema.writer_pragmas`); the Go node replies to ``Store``
  and to peers' ``StoreData`` once the write is merely queued.
* Limits Go lacks: ``max_storage_bytes`` refuses new values past it (``StorageFull``), and
  ``replication_keys`` rows are capped per announcing peer and in all; both are counted from
  running totals (:mod:`.tally`), not a ``SUM``/``COUNT`` per write.
* Every value is checked against its key (hex BLAKE3-256) on the way in; Go's ``LocalStore``
  stores whatever it is given.
* A disabled key stays disabled for ``disabled_key_ttl`` after it was disabled. The Go node's
  purge compares the wrong way round and clears *recently* disabled keys within minutes.
* ``get_local_keys(None, to)`` includes the oldest row; Go's strict ``>`` against the minimum
  ``createdAt`` leaves it out.

All keys at this API are the 32 raw digest bytes; they are stored as lowercase hex.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from lumera_p2p.content import digest
from lumera_p2p.errors import NotFound, StorageFull, StoreError, ValueMismatch, ValueTooLarge
from lumera_p2p.store import limits, schema
from lumera_p2p.store.held import HeldKeys
from lumera_p2p.store.limits import StoreLimits
from lumera_p2p.store.lock import DataDirLock
from lumera_p2p.store.readers import INLINE_PROBE_KEYS, VALUE_READS, Readers
from lumera_p2p.store.tally import Tally
from lumera_p2p.store.timefmt import NowText, format_time, parse_time, utcnow
from lumera_p2p.store.writer import WriterThread, describe_sqlite_error
from lumera_p2p.wire.envelope import MAX_VALUE_SIZE as ENVELOPE_MAX_VALUE_SIZE

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The largest single value accepted: one that fits a frame with its envelope.
MAX_VALUE_SIZE = ENVELOPE_MAX_VALUE_SIZE
#: How long ``disable_key`` lasts unless ``enable_key`` ends it sooner (Go intends 30 min).
DEFAULT_DISABLED_KEY_TTL = timedelta(minutes=30)
#: Values hashed on the event loop before handing a batch to a thread for hashing.
_INLINE_HASH_BYTES = 256 * 1024


@dataclass(frozen=True)
class ReplicationInfo:
    """A row of ``replication_info``: a peer this node replicates to."""

    id: str
    ip: str
    port: int
    is_active: bool = False
    is_adjusted: bool = False
    last_replicated_at: datetime | None = None
    last_seen: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ReplicationKey:
    """A row of ``replication_keys``: a key a peer announced, and where to fetch it."""

    key: bytes
    id: str
    ip: str
    port: int
    attempts: int = 0


@dataclass(frozen=True)
class StoreStats:
    """Counts and sizes for ``stats``."""

    records: int
    data_bytes: int
    db_file_bytes: int
    disabled_keys: int
    replication_keys: int
    #: Writes refused since start because they would pass ``max_storage_bytes``.
    storage_full_refusals: int = 0
    #: Announced keys dropped since start because their peer (or the table) was at its cap.
    replication_keys_dropped: int = 0


@dataclass(frozen=True)
class StoredKey:
    """One stored value: its key, ``createdAt`` as stored (the paging cursor), and its size."""

    key: bytes
    created_at: str
    size: int


def check_sizes(items: Sequence[bytes] | Sequence[tuple[bytes, bytes]], max_value_size: int) -> int:
    """Raise ``ValueTooLarge`` for an item whose value is over ``max_value_size``; return
    the values' total size."""
    total = 0
    for item in items:
        size = len(item[1]) if isinstance(item, tuple) else len(item)
        if size > max_value_size:
            raise ValueTooLarge(size, max_value_size)
        total += size
    return total


def pair_with_keys(
    items: Sequence[bytes] | Sequence[tuple[bytes, bytes]], max_value_size: int
) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` for each item: a bare value gets its BLAKE3 key, a given pair is
    checked against it. Raises ``ValueTooLarge`` for a value over ``max_value_size`` (before
    hashing anything) and ``ValueMismatch`` for a value that does not hash to its key."""
    check_sizes(items, max_value_size)
    out: list[tuple[bytes, bytes]] = []
    for item in items:
        key, value = item if isinstance(item, tuple) else (None, item)
        actual = digest(value)
        if key is not None and actual != key:
            raise ValueMismatch(f"value does not hash to key {key.hex()}")
        out.append((actual, value))
    return out


def _hex(key: bytes) -> str:
    if len(key) != 32:
        raise ValueError(f"a key has 32 bytes, got {len(key)}")
    return key.hex()


def _delete_keys(conn: sqlite3.Connection, table: str, hex_keys: Sequence[str]) -> int:
    """Delete the rows of ``table`` (one of ours, never input) under these keys, in chunks
    SQLite accepts; return how many went."""
    removed = 0
    for chunk in schema.chunks(hex_keys):
        marks = ",".join("?" * len(chunk))
        removed += conn.execute(f"DELETE FROM {table} WHERE key IN ({marks})", chunk).rowcount
    return removed


def _opt_time(value: object) -> datetime | None:
    return parse_time(value) if isinstance(value, str) and value else None


_UPSERT_VALUE = (
    "INSERT INTO data(key, data, datatype, is_original, createdAt, updatedAt, is_on_cloud) "
    "VALUES(?, ?, ?, ?, ?, ?, false) ON CONFLICT(key) DO UPDATE SET data=excluded.data, "
    "updatedAt=excluded.updatedAt, is_on_cloud=false"
)
#: A batch with a value this large is written with the writer's page cache cut to
#: :data:`_LARGE_WRITE_CACHE_KIB` (see ``_large_write``).
LARGE_WRITE = 16 * 1024 * 1024
_LARGE_WRITE_CACHE_KIB = 1024
#: ``_UPSERT_VALUE`` for large values, with a last parameter that says whether to insert.
_UPSERT_LARGE = (
    "INSERT INTO data(key, data, datatype, is_original, createdAt, updatedAt, is_on_cloud) "
    "SELECT ?, ?, ?, ?, ?, ?, false WHERE ? ON CONFLICT(key) DO UPDATE SET data=excluded.data, "
    "updatedAt=excluded.updatedAt, is_on_cloud=false"
)
#: ``_UPSERT_VALUE`` that leaves a held key alone (its rowcount says whether it inserted).
_INSERT_IF_ABSENT = (
    "INSERT INTO data(key, data, datatype, is_original, createdAt, updatedAt, is_on_cloud) "
    "VALUES(?, ?, ?, ?, ?, ?, false) ON CONFLICT(key) DO NOTHING"
)
_IS_DISABLED = "SELECT 1 FROM disabled_keys WHERE key=? AND createdAt > ?"
_IS_HELD = "SELECT 1 FROM data WHERE key=?"
_UPSERT_REPLICATION_KEY = (
    "INSERT INTO replication_keys(key, id, ip, port, attempts, updatedAt) "
    "VALUES(?, ?, ?, ?, 0, ?) ON CONFLICT(key) DO UPDATE SET id=excluded.id, "
    "ip=excluded.ip, port=excluded.port, attempts=0, updatedAt=excluded.updatedAt"
)


@contextlib.contextmanager
def _large_write(conn: sqlite3.Connection) -> Iterator[None]:
    """Insert large values with a small page cache, then restore it.

    SQLite holds a value twice while inserting it: the bound parameter (Python's ``sqlite3``
    binds with ``SQLITE_TRANSIENT``) and the record it builds. Incremental blob I/O does not
    help: a ``zeroblob`` is only left unexpanded as a record's last column, and ``data`` is
    the second of nine in Go's schema (kept identical). What can go is the page cache: the
    value's pages would fill its 20 MB, though they are written out anyway.
    """
    (size,) = conn.execute("PRAGMA cache_size").fetchone()
    conn.execute(f"PRAGMA cache_size=-{_LARGE_WRITE_CACHE_KIB}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size={int(size)}")


def _open_db(path: Path, ddl: tuple[str, ...], added: tuple[tuple[str, str, str], ...]) -> None:
    """Create or upgrade the schema, and fail clearly on a file that is not a database."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
    except sqlite3.Error as exc:
        raise describe_sqlite_error(exc, str(path)) from exc
    try:
        conn.execute("PRAGMA busy_timeout=15000")
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        for statement in ddl:
            conn.execute(statement)
        for table, column, decl in added:
            cols = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in cols:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    except sqlite3.Error as exc:
        raise describe_sqlite_error(exc, str(path)) from exc
    finally:
        conn.close()


def _read_db(path: Path, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` on a short-lived connection (at open, before the writer starts)."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            return fn(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise describe_sqlite_error(exc, str(path)) from exc


class LocalStore:
    """Durable local storage of values and replication metadata (see the module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        checkpoint_interval: float,
        readers: int,
        disabled_key_ttl: timedelta,
        max_value_size: int,
        synchronous: schema.Synchronous,
        limits: StoreLimits,
    ) -> None:
        self.data_dir = data_dir
        self.data_path = data_dir / schema.DATA_DB
        self.meta_path = data_dir / schema.META_DB
        self.max_value_size = max_value_size
        self.disabled_key_ttl = disabled_key_ttl
        self.synchronous = synchronous
        self.limits = limits
        #: Writes refused by ``max_storage_bytes`` and announced keys dropped at a cap.
        self.storage_full_refusals = 0
        self.replication_keys_dropped = 0
        self._tally = Tally()
        self._stamps = NowText()
        # Whether ``disabled_keys`` may hold a row (see ``_change_disabled``), and how many
        # changes to it the meta writer has run.
        self._any_disabled = True
        self._disabled_changes = 0
        self._data_writer = WriterThread(
            str(self.data_path),
            schema.writer_pragmas(synchronous),
            checkpoint_interval=checkpoint_interval,
            name="data-writer",
            listener=self._tally,
        )
        # The meta database (disabled and deleted keys) is small and rarely written: FULL.
        self._meta_writer = WriterThread(
            str(self.meta_path),
            schema.WRITER_PRAGMAS,
            checkpoint_interval=max(5.0, checkpoint_interval / 12),
            name="meta-writer",
        )
        # The keys the data table may hold (built at open; None: ask SQLite every time).
        self._held: HeldKeys | None = None
        self._data_readers = Readers(str(self.data_path), readers, "data-reader")
        self._meta_readers = Readers(str(self.meta_path), 1, "meta-reader")
        self._lock: DataDirLock | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        checkpoint_interval: float = 60.0,
        readers: int = 4,
        disabled_key_ttl: timedelta = DEFAULT_DISABLED_KEY_TTL,
        max_value_size: int = MAX_VALUE_SIZE,
        synchronous: schema.Synchronous = "full",
        max_storage_bytes: int = 0,
        max_replication_keys_per_peer: int = limits.DEFAULT_MAX_REPLICATION_KEYS_PER_PEER,
        max_replication_keys: int = limits.DEFAULT_MAX_REPLICATION_KEYS,
    ) -> LocalStore:
        """Open (creating if needed) the stores in ``data_dir``; raise ``StoreError``.

        ``synchronous`` is the data database's durability mode (:func:`.schema.writer_pragmas`);
        the three caps are described by :class:`.limits.StoreLimits` (``0``: no limit). Raises
        ``DataDirLocked`` when another process (or store) has ``data_dir`` open.
        """
        schema.writer_pragmas(synchronous)  # a bad mode is a ValueError before anything opens
        caps = StoreLimits(max_storage_bytes, max_replication_keys_per_peer, max_replication_keys)
        directory = Path(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"{directory}: cannot create the data directory ({exc})") from exc
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StoreError(f"{directory}: the data directory is not writable")
        lock = DataDirLock.acquire(directory)
        try:
            store = cls(
                directory,
                checkpoint_interval=checkpoint_interval,
                readers=readers,
                disabled_key_ttl=disabled_key_ttl,
                max_value_size=max_value_size,
                synchronous=synchronous,
                limits=caps,
            )
            store._lock = lock
            await asyncio.to_thread(store._open_files)
        except BaseException:
            lock.release()
            raise
        return store

    def _open_files(self) -> None:
        _open_db(self.data_path, schema.DATA_SCHEMA, schema.DATA_ADDED_COLUMNS)
        _open_db(self.meta_path, schema.META_SCHEMA, schema.META_ADDED_COLUMNS)
        self._tally.reset(_read_db(self.data_path, lambda c: limits.load_totals(c, self.limits)))
        self._held = _read_db(self.data_path, HeldKeys.of_table)
        self._any_disabled = _read_db(
            self.meta_path,
            lambda c: c.execute("SELECT 1 FROM disabled_keys LIMIT 1").fetchone() is not None,
        )
        self._data_writer.start()
        try:
            self._meta_writer.start()
        except StoreError:
            self._data_writer.close()
            raise
        try:
            # The loop's own read connections, opened here (a thread) rather than by the
            # first read on the loop, with the single-value reads already compiled.
            self._data_readers.open_inline(*VALUE_READS)
            self._meta_readers.open_inline(_IS_DISABLED)
        except StoreError:
            self._data_writer.close()
            self._meta_writer.close()
            self._data_readers.close()
            self._meta_readers.close()
            raise

    async def close(self) -> None:
        """Finish queued writes, checkpoint, close every connection, release ``data_dir``.

        Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        try:
            self._data_writer.close()
            self._meta_writer.close()
            self._data_readers.close()
            self._meta_readers.close()
        finally:
            # Only once nothing of ours touches the files may another process open them.
            if self._lock is not None:
                self._lock.release()

    async def __aenter__(self) -> LocalStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- values --------------------------------------------------------------------------

    async def store(
        self, key: bytes, value: bytes, *, datatype: int = 0, is_original: bool = False
    ) -> None:
        """Store one value under its key; return once committed. Raise ``ValueMismatch``."""
        await self.store_batch([(key, value)], datatype=datatype, is_original=is_original)

    async def store_value(
        self, value: bytes, *, datatype: int = 0, is_original: bool = False
    ) -> bytes:
        """Store one value, computing its key; return the key once committed."""
        keys = await self.store_batch([value], datatype=datatype, is_original=is_original)
        return keys[0]

    async def store_batch(
        self,
        items: Sequence[bytes] | Sequence[tuple[bytes, bytes]],
        *,
        datatype: int = 0,
        is_original: bool = False,
    ) -> list[bytes]:
        """Store values (or ``(key, value)`` pairs, checked) in one transaction; return keys.

        As in the Go node, storing an existing key replaces its data and ``updatedAt`` but keeps
        its ``createdAt``, ``datatype`` and ``is_original``.
        """
        if not items:
            return []
        keyed = self._keying(items)
        now = self._stamps.now()

        def job(conn: sqlite3.Connection) -> list[bytes]:
            return self._write(conn, keyed(), datatype, is_original, now)

        # One value is one row of one statement (below LARGE_WRITE, see ``_write``).
        first = items[0]
        size = len(first[1]) if isinstance(first, tuple) else len(first)
        one = len(items) == 1 and size < LARGE_WRITE
        try:
            return await self._data_writer.submit(job, one_statement=one)
        except StorageFull:
            self.storage_full_refusals += 1
            raise

    async def store_if_absent(self, value: bytes, *, datatype: int = 0) -> bool:
        """Store one value under its key unless it is held already; return whether it was
        stored (False: it was held, and nothing was written, its ``updatedAt`` included).
        Raises ``ValueTooLarge``, and ``StorageFull`` for a new value that does not fit.

        The writer looks for the key in the transaction that would store it, so nothing is
        read on the event loop, and the answer is as of that commit. Usually that is one
        ``INSERT … ON CONFLICT DO NOTHING``, whose row count says whether it stored: when
        the value fits under ``max_storage_bytes`` whether or not it is held (or nothing is
        counted), and it is below ``LARGE_WRITE``. Otherwise the key is looked up first and
        ``_write`` stores it (or refuses it), as for a batch.
        """
        keyed = self._keying([value])
        now = self._stamps.now()
        caps = self.limits
        tally = self._tally

        def job(conn: sqlite3.Connection) -> bool:
            pairs = keyed()
            ((key, data),) = pairs
            size = len(data)
            if size < LARGE_WRITE and (
                not caps.counts_bytes
                or tally.current(limits.DATA_BYTES) + size <= caps.max_storage_bytes
            ):
                row = (key.hex(), data, datatype, False, now, now)
                # executemany: the same statement, one GIL release fewer than execute (which
                # reads lastrowid with the GIL let go).
                if conn.executemany(_INSERT_IF_ABSENT, (row,)).rowcount == 0:
                    return False  # held: nothing written
                if caps.counts_bytes:
                    tally.add(limits.DATA_BYTES, size)
                return True
            if conn.execute(_IS_HELD, (key.hex(),)).fetchone() is not None:
                return False
            self._write(conn, pairs, datatype, False, now)
            return True

        try:
            return await self._data_writer.submit(job, one_statement=len(value) < LARGE_WRITE)
        except StorageFull:
            self.storage_full_refusals += 1
            raise

    def _keying(
        self, items: Sequence[bytes] | Sequence[tuple[bytes, bytes]]
    ) -> Callable[[], list[tuple[bytes, bytes]]]:
        """What gives ``items`` paired with their checked or computed keys; ``ValueTooLarge``
        here, before anything is queued.

        A small batch is keyed here: cheaper than a hop. A large one is keyed (BLAKE3
        releases the GIL) in the writer thread just before its insert: one handoff, not two
        (to a hashing thread and back to the loop, then to the writer), and the writer starts
        on it without waiting for the loop to come round.

        Whatever the writer does with the pairs, it gets them from here first: their keys are
        noted in the filter of held keys then, before anything is inserted (store/held.py).
        """
        make: Callable[[], list[tuple[bytes, bytes]]]
        if check_sizes(items, self.max_value_size) <= _INLINE_HASH_BYTES:
            pairs = pair_with_keys(items, self.max_value_size)
            make = lambda: pairs  # noqa: E731
        else:
            make = functools.partial(pair_with_keys, items, self.max_value_size)
        held = self._held
        if held is None:
            return make

        def keyed() -> list[tuple[bytes, bytes]]:
            pairs = make()
            held.add([key for key, _ in pairs])
            return pairs

        return keyed

    def _write(
        self,
        conn: sqlite3.Connection,
        pairs: list[tuple[bytes, bytes]],
        datatype: int,
        is_original: bool,
        now: str,
    ) -> list[bytes]:
        """In the writer: store ``pairs`` (checked keys, from :meth:`_keying`, which noted
        them as held) in the open transaction, admitted against ``max_storage_bytes`` and
        counted; return the keys."""
        # A value is bound as it is (bytes, or a view into the frame it came in): no copy
        # of ours; SQLite makes two while it inserts it (see ``_large_write``).
        rows = [(key.hex(), value, datatype, is_original, now, now) for key, value in pairs]
        sizes = {row[0]: len(row[1]) for row in rows} if self.limits.counts_bytes else {}
        growth = limits.admit_values(conn, self._tally, self.limits, sizes)
        if max(len(value) for _, value in pairs) >= LARGE_WRITE:
            with _large_write(conn):
                conn.executemany(_UPSERT_LARGE, [(*row, True) for row in rows])
                # The statement stays cached with its last parameters bound, SQLite's copy
                # of a large value included: bind a row that inserts nothing.
                conn.execute(_UPSERT_LARGE, ("", b"", 0, False, "", "", False))
        else:
            conn.executemany(_UPSERT_VALUE, rows)
        self._tally.add(limits.DATA_BYTES, growth)
        return [key for key, _ in pairs]

    async def retrieve(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or ``None``."""
        hex_key = _hex(key)
        if self._held is not None and not self._held.may_hold(key):
            return None  # never stored here: nothing to read
        return await self._data_readers.value(hex_key)

    async def retrieve_many(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The values found among ``keys`` (absent keys are simply missing from the result)."""
        return await self._data_readers.values([_hex(k) for k in keys])

    async def read_slice(self, key: bytes, offset: int, length: int) -> bytes:
        """``length`` bytes of the value of ``key`` from ``offset`` (fewer at its end), without
        reading the rest: a server streams a large answer from here. Raises ``NotFound``
        if the value is gone."""
        data = await self._data_readers.slice(_hex(key), offset, length)
        if data is None:
            raise NotFound(f"no value stored under {key.hex()}")
        return data

    async def sized_value(self, key: bytes, limit: int) -> tuple[int, bytes | None]:
        """The size of the value of ``key`` (0 if none) and, when it is at most ``limit``
        bytes, the value itself: one read where a server would check the size, then read."""
        hex_key = _hex(key)
        if self._held is not None and not self._held.may_hold(key):
            return 0, None  # never stored here: nothing to read
        return self._data_readers.sized_value(hex_key, limit)

    async def value_sizes(self, keys: Sequence[bytes]) -> dict[bytes, int]:
        """The size of each stored value among ``keys``, without reading the values (a
        server checks what an answer would cost before it builds it)."""
        return await self._data_readers.sizes([_hex(k) for k in keys])

    async def missing(self, keys: Sequence[bytes]) -> list[bytes]:
        """The keys among ``keys`` that are not stored here, in their given order."""
        hex_keys = [_hex(k) for k in keys]

        def read(conn: sqlite3.Connection) -> list[bytes]:
            present: set[str] = set()
            for chunk in schema.chunks(hex_keys):
                marks = ",".join("?" * len(chunk))
                present.update(
                    row[0]
                    for row in conn.execute(f"SELECT key FROM data WHERE key IN ({marks})", chunk)
                )
            return [bytes.fromhex(h) for h in hex_keys if h not in present]

        if len(hex_keys) <= INLINE_PROBE_KEYS:
            return self._data_readers.run_inline(read)
        return await self._data_readers.run(read)

    async def delete(self, key: bytes) -> bool:
        """Delete the value under ``key``; return whether it was there."""
        return await self.delete_many([key]) == 1

    async def delete_many(self, keys: Sequence[bytes]) -> int:
        """Delete values; return how many rows were removed."""
        hex_keys = list(dict.fromkeys(_hex(k) for k in keys))

        def job(conn: sqlite3.Connection) -> int:
            freed = limits.stored_bytes(conn, hex_keys) if self.limits.counts_bytes else 0
            removed = _delete_keys(conn, "data", hex_keys)
            self._tally.add(limits.DATA_BYTES, -freed)
            return removed

        return await self._data_writer.submit(job)

    async def get_local_keys(self, start: datetime | None, end: datetime) -> list[bytes]:
        """Keys whose ``createdAt`` is after ``start`` (or any, if None) and before ``end``."""
        end_text = format_time(end)

        def read(conn: sqlite3.Connection) -> list[bytes]:
            if start is None:
                rows = conn.execute(
                    "SELECT key FROM data WHERE createdAt < ? ORDER BY createdAt, key", (end_text,)
                )
            else:
                rows = conn.execute(
                    "SELECT key FROM data WHERE createdAt > ? AND createdAt < ? "
                    "ORDER BY createdAt, key",
                    (format_time(start), end_text),
                )
            return [bytes.fromhex(r[0]) for r in rows]

        return await self._data_readers.run(read)

    async def local_keys_page(
        self, limit: int, after: tuple[str, str] | None = None
    ) -> list[StoredKey]:
        """Up to ``limit`` stored keys in (createdAt, key) order, after ``after``.

        ``after`` is ``(created_at, hex key)`` of the last key of the previous page, or any
        such pair as a position (text compared as stored), so a page costs one index range
        scan however deep it is.
        """

        def read(conn: sqlite3.Connection) -> list[StoredKey]:
            # LENGTH of a BLOB reads the record header, not the value.
            if after is None:
                rows = conn.execute(
                    "SELECT key, createdAt, LENGTH(data) FROM data ORDER BY createdAt, key LIMIT ?",
                    (limit,),
                )
            else:
                rows = conn.execute(
                    "SELECT key, createdAt, LENGTH(data) FROM data "
                    "WHERE (createdAt, key) > (?, ?) ORDER BY createdAt, key LIMIT ?",
                    (after[0], after[1].lower(), limit),
                )
            return [StoredKey(bytes.fromhex(k), str(c), int(n)) for k, c, n in rows]

        return await self._data_readers.run(read)

    async def keys_for_replication(
        self, start: datetime | None, end: datetime, max_keys: int = 200_000
    ) -> list[tuple[bytes, datetime]]:
        """Keys created in ``(start, end)`` in (createdAt, key) order, at most about ``max_keys``.

        ``start=None`` includes the oldest row (Go starts at ``MIN(createdAt)`` with a strict
        ``>``, which leaves it out). When the limit cuts a run of rows sharing one
        ``createdAt``, the rest of that run is included, so a cursor advanced to the last
        timestamp never skips a row.
        """
        low = "" if start is None else format_time(start)
        args = (low, format_time(end))

        def read(conn: sqlite3.Connection) -> list[tuple[bytes, datetime]]:
            rows = conn.execute(
                "SELECT key, createdAt FROM data WHERE createdAt > ? AND createdAt < ? "
                "ORDER BY createdAt, key LIMIT ?",
                (*args, max_keys),
            ).fetchall()
            if len(rows) == max_keys and rows:
                last_key, last_at = rows[-1]
                rows += conn.execute(
                    "SELECT key, createdAt FROM data WHERE createdAt = ? AND key > ? ORDER BY key",
                    (last_at, last_key),
                ).fetchall()
            return [(bytes.fromhex(k), parse_time(t)) for k, t in rows]

        return await self._data_readers.run(read)

    async def oldest_created_at(self) -> datetime | None:
        """The earliest ``createdAt`` of any value, or ``None`` when the store is empty."""

        def read(conn: sqlite3.Connection) -> datetime | None:
            row = conn.execute("SELECT MIN(createdAt) FROM data").fetchone()
            return _opt_time(row[0])

        return await self._data_readers.run(read)

    async def count(self) -> int:
        """How many values are stored."""
        return await self._data_readers.run(
            lambda conn: int(conn.execute("SELECT COUNT(*) FROM data").fetchone()[0])
        )

    async def stats(self) -> StoreStats:
        """Record count, value bytes, database file bytes, disabled and pending keys."""

        def read(conn: sqlite3.Connection) -> tuple[int, int, int]:
            records, data_bytes = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM data"
            ).fetchone()
            pending = conn.execute("SELECT COUNT(*) FROM replication_keys").fetchone()[0]
            return int(records), int(data_bytes), int(pending)

        records, data_bytes, pending = await self._data_readers.run(read)
        disabled = await self._meta_readers.run(
            lambda conn: int(conn.execute("SELECT COUNT(*) FROM disabled_keys").fetchone()[0])
        )
        return StoreStats(
            records,
            data_bytes,
            self.db_file_bytes(),
            disabled,
            pending,
            storage_full_refusals=self.storage_full_refusals,
            replication_keys_dropped=self.replication_keys_dropped,
        )

    def stored_bytes(self) -> int | None:
        """Value bytes stored, as counted for ``max_storage_bytes`` (``None`` when unlimited:
        then nothing is counted, and ``stats`` sums the table)."""
        return self._tally.value(limits.DATA_BYTES) if self.limits.counts_bytes else None

    def db_file_bytes(self) -> int:
        """Size of the data database with its ``-wal``, ``-shm`` and ``-journal`` files."""
        total = 0
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(f"{self.data_path}{suffix}")
        return total

    # --- disabled keys -------------------------------------------------------------------

    async def disable_key(self, key: bytes) -> None:
        """Disable ``key`` for single-key retrieval, for ``disabled_key_ttl`` from now."""
        row = (_hex(key), format_time(utcnow()))
        await self._change_disabled(
            lambda conn: (
                conn.execute(
                    "INSERT INTO disabled_keys(key, createdAt) VALUES(?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET createdAt=excluded.createdAt",
                    row,
                ).rowcount
            )
        )

    async def enable_key(self, key: bytes) -> None:
        """Enable ``key`` again (a no-op if it was not disabled)."""
        hex_key = _hex(key)
        await self._change_disabled(
            lambda conn: conn.execute("DELETE FROM disabled_keys WHERE key=?", (hex_key,)).rowcount
        )

    async def is_disabled(self, key: bytes) -> bool:
        """Whether ``key`` was disabled less than ``disabled_key_ttl`` ago."""
        hex_key = _hex(key)
        if not self._any_disabled:
            return False  # the table is empty (the usual case): nothing to read
        cutoff = format_time(utcnow() - self.disabled_key_ttl)
        # A primary-key probe of a small table: cheaper on the loop than a thread hop, and it
        # sits in front of every single-key retrieve.
        return self._meta_readers.one_inline(_IS_DISABLED, (hex_key, cutoff)) is not None

    async def purge_expired_disabled_keys(self) -> int:
        """Remove disabled keys older than the TTL (the rows Go meant to remove); return count."""
        cutoff = format_time(utcnow() - self.disabled_key_ttl)
        return await self._change_disabled(
            lambda conn: (
                conn.execute("DELETE FROM disabled_keys WHERE createdAt <= ?", (cutoff,)).rowcount
            )
        )

    async def _change_disabled(self, change: Callable[[sqlite3.Connection], int]) -> int:
        """Run ``change`` on ``disabled_keys`` in the meta writer; return its result.

        Keeps ``_any_disabled`` right, which spares every retrieve its read while the table is
        empty. The writer sets it before anything can be in the table; it is cleared only when
        the last change to run found the table empty after it, once that change committed (a
        change undone, or whose caller went away, leaves it set: one read too many, never one
        too few). The process holds the data directory's lock, so nobody else writes here.
        """

        def job(conn: sqlite3.Connection) -> tuple[int, int, bool]:
            self._any_disabled = True  # (until the commit says otherwise)
            self._disabled_changes += 1
            result = change(conn)
            held = conn.execute("SELECT 1 FROM disabled_keys LIMIT 1").fetchone() is not None
            return result, self._disabled_changes, held

        result, number, held = await self._meta_writer.submit(job)
        if not held and number == self._disabled_changes:
            self._any_disabled = False
        return result

    # --- replication_info ----------------------------------------------------------------

    async def upsert_replication_info(self, info: ReplicationInfo) -> None:
        """Insert a peer, or update its endpoint and flags (keeping its cursors if unset)."""
        now = format_time(utcnow())
        row = (
            info.id,
            info.ip,
            info.port,
            info.is_active,
            info.is_adjusted,
            format_time(info.last_replicated_at) if info.last_replicated_at else None,
            format_time(info.last_seen) if info.last_seen else None,
            now,
            now,
        )
        # Unlike Go's UpdateReplicationInfo, NULL cursors never overwrite known ones: that
        # overwrite made every bootstrap refresh re-announce the oldest 200k keys.
        await self._data_writer.submit(
            lambda conn: conn.execute(
                "INSERT INTO replication_info(id, ip, port, is_active, is_adjusted, "
                "lastReplicatedAt, last_seen, createdAt, updatedAt) VALUES(?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET ip=excluded.ip, port=excluded.port, "
                "is_active=excluded.is_active, is_adjusted=excluded.is_adjusted, "
                "lastReplicatedAt=COALESCE(excluded.lastReplicatedAt, lastReplicatedAt), "
                "last_seen=COALESCE(excluded.last_seen, last_seen), "
                "updatedAt=excluded.updatedAt",
                row,
            )
        )

    async def replication_infos(self) -> list[ReplicationInfo]:
        """All peers, those never replicated to first (as the Go loop orders them)."""

        def read(conn: sqlite3.Connection) -> list[ReplicationInfo]:
            rows = conn.execute(
                "SELECT id, ip, port, is_active, is_adjusted, lastReplicatedAt, last_seen, "
                "createdAt, updatedAt FROM replication_info "
                "ORDER BY lastReplicatedAt IS NOT NULL, lastReplicatedAt, id"
            )
            return [
                ReplicationInfo(
                    id=r[0],
                    ip=r[1],
                    port=int(r[2]),
                    is_active=bool(r[3]),
                    is_adjusted=bool(r[4]),
                    last_replicated_at=_opt_time(r[5]),
                    last_seen=_opt_time(r[6]),
                    created_at=_opt_time(r[7]),
                    updated_at=_opt_time(r[8]),
                )
                for r in rows
            ]

        return await self._data_readers.run(read)

    async def _update_info(self, peer_id: str, column: str, value: object) -> bool:
        sql = f"UPDATE replication_info SET {column}=?, updatedAt=? WHERE id=?"
        args = (value, format_time(utcnow()), peer_id)
        changed = await self._data_writer.submit(lambda conn: conn.execute(sql, args).rowcount)
        return bool(changed)

    async def register_replication_peers(self, peers: Sequence[tuple[str, str, int]]) -> None:
        """Add peers ``(id, ip, port)`` not yet known (inactive, never seen, no cursor), and
        move known ones to their current endpoint.

        A known peer keeps its flags, ``last_seen`` and cursor: Go's bootstrap upsert resets
        them every 10 minutes, which makes every cycle re-announce the oldest keys and keeps
        offline peers from ever being adjusted (p2p-behaviour.md §11.2 item 1).
        """
        now = format_time(utcnow())
        rows = [(peer_id, ip, port, now, now) for peer_id, ip, port in peers]
        if not rows:
            return
        await self._data_writer.submit(
            lambda conn: conn.executemany(
                "INSERT INTO replication_info(id, ip, port, is_active, is_adjusted, createdAt, "
                "updatedAt) VALUES(?, ?, ?, false, false, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "ip=excluded.ip, port=excluded.port, updatedAt=excluded.updatedAt "
                "WHERE ip IS NOT excluded.ip OR port IS NOT excluded.port",
                rows,
            )
        )

    async def set_active(self, peer_id: str, active: bool, adjusted: bool = False) -> bool:
        """Mark a peer (in)active and set ``is_adjusted`` with it, as Go's ``UpdateIsActive``
        does (a change of state starts the offline adjustment afresh); return whether the
        peer exists."""
        sql = "UPDATE replication_info SET is_active=?, is_adjusted=?, updatedAt=? WHERE id=?"
        args = (active, adjusted, format_time(utcnow()), peer_id)
        changed = await self._data_writer.submit(lambda conn: conn.execute(sql, args).rowcount)
        return bool(changed)

    async def set_adjusted(self, peer_id: str, adjusted: bool) -> bool:
        """Record that the offline-node adjustment ran for a peer."""
        return await self._update_info(peer_id, "is_adjusted", adjusted)

    async def update_last_seen(self, peer_id: str, when: datetime | None = None) -> bool:
        """Record that a peer answered at ``when`` (default now)."""
        return await self._update_info(peer_id, "last_seen", format_time(when or utcnow()))

    async def update_last_replicated(self, peer_id: str, when: datetime) -> bool:
        """Advance a peer's replication cursor."""
        return await self._update_info(peer_id, "lastReplicatedAt", format_time(when))

    # --- replication_keys ----------------------------------------------------------------

    async def add_replication_keys(self, keys: Sequence[ReplicationKey]) -> None:
        """Record announced keys; a re-announcement updates the source and resets attempts.

        Keys past ``max_replication_keys_per_peer`` for their announcer, or past
        ``max_replication_keys`` in all, are dropped, counted in ``replication_keys_dropped``
        and logged (see :func:`.limits.admit_replication_keys`).
        """
        now = format_time(utcnow())
        rows = [(_hex(k.key), k.id, k.ip, k.port, now) for k in keys]
        if not rows:
            return

        def job(conn: sqlite3.Connection) -> int:
            accepted, changes = limits.admit_replication_keys(conn, self._tally, self.limits, rows)
            conn.executemany(_UPSERT_REPLICATION_KEY, accepted)
            limits.apply(self._tally, changes)
            return len(rows) - len(accepted)

        dropped = await self._data_writer.submit(job)
        if dropped:
            self.replication_keys_dropped += dropped
            peers = sorted({k.id for k in keys})
            log.warning(
                "dropped %d of %d announced keys from %s: at max_replication_keys_per_peer "
                "(%d) or max_replication_keys (%d)",
                dropped,
                len(rows),
                ", ".join(peers[:3]) + (", …" if len(peers) > 3 else ""),
                self.limits.max_replication_keys_per_peer,
                self.limits.max_replication_keys,
            )

    async def replication_keys(
        self, min_attempts: int = 0, max_attempts: int = 1, limit: int = 10_000
    ) -> list[ReplicationKey]:
        """Announced keys with ``min_attempts ≤ attempts ≤ max_attempts``, oldest first."""

        def read(conn: sqlite3.Connection) -> list[ReplicationKey]:
            rows = conn.execute(
                "SELECT key, id, ip, port, attempts FROM replication_keys "
                "WHERE attempts BETWEEN ? AND ? ORDER BY updatedAt, key LIMIT ?",
                (min_attempts, max_attempts, limit),
            )
            return [
                ReplicationKey(bytes.fromhex(k), i, ip, int(p), int(a)) for k, i, ip, p, a in rows
            ]

        return await self._data_readers.run(read)

    async def delete_replication_keys(self, keys: Sequence[bytes]) -> int:
        """Forget announced keys (fetched, or no longer wanted)."""
        hex_keys = list(dict.fromkeys(_hex(k) for k in keys))

        def job(conn: sqlite3.Connection) -> int:
            changes = limits.forget_replication_keys(conn, hex_keys)
            removed = _delete_keys(conn, "replication_keys", hex_keys)
            limits.apply(self._tally, changes)
            return removed

        return await self._data_writer.submit(job)

    async def increment_attempts(self, keys: Sequence[bytes]) -> None:
        """Count one more failed fetch for each key."""
        hex_keys = [_hex(k) for k in keys]
        now = format_time(utcnow())

        def job(conn: sqlite3.Connection) -> None:
            for chunk in schema.chunks(hex_keys, schema.MAX_SQL_VARS - 1):
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    "UPDATE replication_keys SET attempts=attempts+1, updatedAt=? "
                    f"WHERE key IN ({marks})",
                    (now, *chunk),
                )

        await self._data_writer.submit(job)

    async def expire_replication_keys(self, updated_before: datetime, max_attempts: int) -> int:
        """Forget announced keys untouched since ``updated_before`` or that failed more than
        ``max_attempts`` fetches (Go keeps them forever); return how many went."""
        args = (format_time(updated_before), max_attempts)

        def job(conn: sqlite3.Connection) -> int:
            hex_keys = [
                str(row[0])
                for row in conn.execute(
                    "SELECT key FROM replication_keys WHERE updatedAt < ? OR attempts > ?", args
                )
            ]
            changes = limits.forget_replication_keys(conn, hex_keys)
            _delete_keys(conn, "replication_keys", hex_keys)
            limits.apply(self._tally, changes)
            return len(hex_keys)

        return await self._data_writer.submit(job)

    async def replication_key_count(self) -> int:
        """Announced keys still to fetch (the backlog)."""
        return self._tally.value(limits.REPLICATION_KEYS)

    # --- del_keys ------------------------------------------------------------------------

    async def track_redundant_keys(self, keys: Sequence[bytes]) -> None:
        """Count one more scan that found us outside these keys' closest nodes (Go's
        ``BatchInsertDelKeys``: ``count = count + 1``)."""
        now = format_time(utcnow())
        rows = [(_hex(k), now, 1) for k in dict.fromkeys(keys)]
        if not rows:
            return
        await self._meta_writer.submit(
            lambda conn: conn.executemany(
                "INSERT INTO del_keys(key, createdAt, count) VALUES(?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET count = count + excluded.count",
                rows,
            )
        )

    async def forget_redundant_keys(self, keys: Sequence[bytes]) -> int:
        """We are among these keys' closest nodes again (or no longer hold them): drop their
        ``del_keys`` rows; return how many went."""
        hex_keys = list(dict.fromkeys(_hex(k) for k in keys))

        def job(conn: sqlite3.Connection) -> int:
            return _delete_keys(conn, "del_keys", hex_keys)

        return await self._meta_writer.submit(job)

    async def redundant_keys(self, min_count: int, limit: int = 100_000) -> list[bytes]:
        """Keys found redundant in at least ``min_count`` scans, most often first."""

        def read(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT key FROM del_keys WHERE count >= ? ORDER BY count DESC, key LIMIT ?",
                (min_count, limit),
            )
            return [bytes.fromhex(r[0]) for r in rows]

        return await self._meta_readers.run(read)
