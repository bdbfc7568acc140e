"""Read-only connections to one database, and where each read of values runs.

A hop to a reader thread and back costs about 150 µs on an idle 2-core machine, and more on a
busy one, where the thread and then the event loop must each be scheduled again; reading a
cached 64 KiB value costs about 25 µs, a 1 KiB one 5 µs. So a single value up to 1 MiB, and a
batch's first 256 KiB, are read on the event loop, on a connection of its own; large values
and the bulk of large batches go to the thread pool. There, SQLite's page reads and the
allocation of the results run beside the loop, on another core: holding a batch of large
values costs page faults on top of the copies (glibc hands the freed memory of the previous
batch back to the kernel; measured here, 64 KiB values allocated 100 at a time cost about
100 µs each against 8 µs when the memory is kept), and that cost is better paid off the loop.

A statement run on the loop is always run to its end before the loop moves on: an open one
would pin its WAL snapshot, and a later read on the same connection would miss newer commits.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from lumera_p2p.store import schema
from lumera_p2p.store.writer import describe_sqlite_error

T = TypeVar("T")

#: A single value up to this size is read on the event loop; a larger one in a thread.
INLINE_READ_BYTES = 1024 * 1024
#: A batch read on the loop goes in slices of at most this many value bytes (each value in a
#: slice capped at its share), yielding to other tasks after about half as many.
INLINE_SLICE_BYTES = 256 * 1024
#: Keys in a batch's first slice, before the values' size is known (64 KiB share each).
FIRST_SLICE_KEYS = 4
#: Value bytes one batch read reads on the loop; the rest is read in one hop to a thread.
INLINE_MANY_BYTES = 256 * 1024
#: A key-only probe (presence, sizes) of at most this many keys runs on the loop: an index
#: lookup each, a few µs, against a thread hop's 150 µs (one per StoreData and FindValue).
INLINE_PROBE_KEYS = 32
#: What probing an absent key costs, counted as value bytes read, between yields.
_PROBE_COST = 1024

_READ_ONE_INLINE = "SELECT CASE WHEN length(data) <= ? THEN data END FROM data WHERE key=?"
_SIZED_INLINE = (
    "SELECT length(data), CASE WHEN length(data) <= ? THEN data END FROM data WHERE key=?"
)

#: The single-value reads on the loop (``open_inline`` compiles them ahead).
VALUE_READS = (_READ_ONE_INLINE, _SIZED_INLINE)


@functools.lru_cache(maxsize=64)
def _slice_sql(keys: int) -> str:
    """Key, value (NULL when over the bound share) and length of up to ``keys`` keys."""
    marks = ",".join("?" * keys)
    return (
        "SELECT key, CASE WHEN length(data) <= ? THEN data END, length(data) FROM data "
        f"WHERE key IN ({marks})"
    )


def next_slice(take: int, rows: int, value_bytes: int) -> int:
    """Keys in the next slice: about half ``INLINE_SLICE_BYTES`` at the sizes seen so far,
    so values up to twice the average still fit their share; grow fast past absent keys."""
    limit = schema.MAX_SQL_VARS - 1
    if not rows or not value_bytes:
        return min(limit, take * 8)
    return max(1, min(limit, INLINE_SLICE_BYTES * rows // (2 * value_bytes)))


def _read_value(hex_key: str, conn: sqlite3.Connection) -> bytes | None:
    """One value, read through SQLite's blob I/O straight into the ``bytes`` returned: a
    ``SELECT`` of a large blob first assembles it in a buffer of SQLite's, then copies it."""
    row = conn.execute("SELECT rowid FROM data WHERE key=?", (hex_key,)).fetchone()
    if row is None:
        return None
    with conn.blobopen("data", "data", row[0], readonly=True) as blob:
        return blob.read()


def _read_slice(hex_key: str, offset: int, length: int, conn: sqlite3.Connection) -> bytes | None:
    """``length`` bytes of a value from ``offset`` (fewer at its end), through blob I/O;
    None if the value is not stored."""
    row = conn.execute("SELECT rowid FROM data WHERE key=?", (hex_key,)).fetchone()
    if row is None:
        return None
    with conn.blobopen("data", "data", row[0], readonly=True) as blob:
        blob.seek(offset)
        return blob.read(length)


def _read_values(hex_keys: Sequence[str], conn: sqlite3.Connection) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for chunk in schema.chunks(hex_keys):
        marks = ",".join("?" * len(chunk))
        for hex_key, data in conn.execute(
            f"SELECT key, data FROM data WHERE key IN ({marks})", chunk
        ):
            found[bytes.fromhex(hex_key)] = bytes(data)
    return found


def _read_sizes(hex_keys: Sequence[str], conn: sqlite3.Connection) -> dict[bytes, int]:
    # length() of a BLOB reads its size from the record header, not the blob's pages.
    sizes: dict[bytes, int] = {}
    for chunk in schema.chunks(hex_keys):
        marks = ",".join("?" * len(chunk))
        for hex_key, length in conn.execute(
            f"SELECT key, length(data) FROM data WHERE key IN ({marks})", chunk
        ):
            sizes[bytes.fromhex(hex_key)] = int(length)
    return sizes


class Readers:
    """Read-only connections: one per executor thread, and one for reads on the event loop."""

    def __init__(self, path: str, workers: int, name: str) -> None:
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._inline: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{self._path}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        for pragma in schema.READER_PRAGMAS:
            conn.execute(pragma)
        with self._lock:
            self._all.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def open_inline(self, *statements: str) -> None:
        """Open the event loop's connection now (from any thread: at open, in the opening
        thread) and compile ``statements`` into its cache, each run once with NULL arguments.

        Opening it costs about 300 µs (the connection, its pragmas, the schema read by the
        first statement), which the first read on the loop would otherwise pay there.
        """
        try:
            if self._inline is None:
                self._inline = self._connect()
            for sql in statements:
                self._inline.execute(sql, (None,) * sql.count("?")).fetchall()
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, self._path) from exc

    def one_inline(self, sql: str, args: Sequence[object]) -> Any:
        """One row of a short query, on the event loop thread's own connection."""
        conn = self._inline
        try:
            if conn is None:
                conn = self._inline = self._connect()
            return conn.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, self._path) from exc

    def all_inline(self, sql: str, args: Sequence[object]) -> list[Any]:
        """Every row of a short query, on the event loop thread's own connection."""
        conn = self._inline
        try:
            if conn is None:
                conn = self._inline = self._connect()
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, self._path) from exc

    def run_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a short ``fn`` (its statements run to their end) on the loop's connection."""
        conn = self._inline
        try:
            if conn is None:
                conn = self._inline = self._connect()
            return fn(conn)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, self._path) from exc

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with a reader thread's connection."""

        def call() -> T:
            try:
                return fn(self._conn())
            except sqlite3.Error as exc:
                raise describe_sqlite_error(exc, self._path) from exc

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def value(self, hex_key: str) -> bytes | None:
        """The ``data`` of ``hex_key``, or ``None``: on the loop unless it is large."""
        row = self.one_inline(_READ_ONE_INLINE, (INLINE_READ_BYTES, hex_key))
        if row is None:
            return None
        value: bytes | None = row[0]
        if value is None:  # too large to read on the loop
            value = await self.run(functools.partial(_read_value, hex_key))
        return value

    def sized_value(self, hex_key: str, limit: int) -> tuple[int, bytes | None]:
        """``length(data)`` of ``hex_key`` (0 if it is not stored) and, up to ``limit`` bytes
        (at most ``INLINE_READ_BYTES``), the ``data`` itself: one query on the loop."""
        row = self.one_inline(_SIZED_INLINE, (min(limit, INLINE_READ_BYTES), hex_key))
        if row is None:
            return 0, None
        return int(row[0]), row[1]

    async def values(self, hex_keys: Sequence[str]) -> dict[bytes, bytes]:
        """The ``data`` of each of ``hex_keys`` that is stored, by raw key.

        The keys go in slices sized from the values seen so far, each bounded to
        ``INLINE_SLICE_BYTES``, yielding to other tasks as they add up, up to
        ``INLINE_MANY_BYTES`` in all; values over a slice's per-value share, and what is left
        past that total, are read in one hop to a reader thread.
        """
        found: dict[bytes, bytes] = {}
        rest: list[str] = []
        inline_bytes = since_yield = pos = 0
        take = FIRST_SLICE_KEYS
        while pos < len(hex_keys):
            if inline_bytes >= INLINE_MANY_BYTES:
                rest += hex_keys[pos:]
                break
            if since_yield >= INLINE_SLICE_BYTES // 2:
                await asyncio.sleep(0)  # let other tasks run between slices
                since_yield = 0
            chunk = hex_keys[pos : pos + take]
            pos += len(chunk)
            share = INLINE_SLICE_BYTES // len(chunk)
            rows = self.all_inline(_slice_sql(len(chunk)), (share, *chunk))
            seen = read = 0
            for hex_key, data, length in rows:
                seen += length
                if data is None:  # over its share: read in the reader thread
                    rest.append(hex_key)
                else:
                    found[bytes.fromhex(hex_key)] = data
                    read += length
            inline_bytes += read
            since_yield += read + (len(chunk) - len(rows)) * _PROBE_COST
            take = next_slice(take, len(rows), seen)
        if rest:
            found.update(await self.run(functools.partial(_read_values, rest)))
        return found

    async def slice(self, hex_key: str, offset: int, length: int) -> bytes | None:
        """``length`` bytes of the ``data`` of ``hex_key`` from ``offset``, in a reader
        thread; None if it is not stored."""
        return await self.run(functools.partial(_read_slice, hex_key, offset, length))

    async def sizes(self, hex_keys: Sequence[str]) -> dict[bytes, int]:
        """The ``length(data)`` of each of ``hex_keys`` that is stored, by raw key, without
        reading the values (a few on the loop, more in a reader thread: a batch can name 20,000
        keys)."""
        if not hex_keys:
            return {}
        read = functools.partial(_read_sizes, hex_keys)
        if len(hex_keys) <= INLINE_PROBE_KEYS:
            return self.run_inline(read)
        return await self.run(read)

    def close(self) -> None:
        """Wait for running reads, then close every connection."""
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
