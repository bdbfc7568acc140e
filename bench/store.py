"""LocalStore beside plain sqlite3 on the same table, with the same settings, in the same run.

Ingest: 2,000 values of 64 KiB in batches of 100, for each durability mode (``synchronous``
FULL and NORMAL), against plain ``sqlite3`` ``executemany`` into an identical ``data`` table with
the writer's own pragmas (:func:`lumera_p2p.store.schema.writer_pragmas`), keys hashed in the
loop as ours are. Puts: 1 KiB values stored one per transaction, sequentially (and 32 in flight
for ours), against plain sqlite3 committing one row per transaction.

Reads run on *our* data file after our ingest, alternating passes between plain sqlite3 (a
read-only connection with the readers' pragmas, ``schema.READER_PRAGMAS``) and ours, so both see
the same file, WAL and page cache. ``read`` is one ``SELECT data … WHERE key=?`` per key against
``retrieve``; ``read_many`` is ``retrieve_many`` of batches of 100 against the faster of two
plain ways to fetch the same 100 values into a dict (100 point ``SELECT``s, or one
``SELECT key, data … WHERE key IN (…)``).

Ratios are ours ÷ reference (higher is better; 1.0 = no overhead). ``full_over_normal_*`` are
ours in FULL ÷ ours in NORMAL: what the stronger durability costs.

    python bench/store.py [--values N] [--size BYTES] [--batch N] [--puts N] [--rounds R]
                          [--passes P] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blake3

from lumera_p2p.store import LocalStore, schema
from lumera_p2p.store.timefmt import format_time, utcnow

MODES = ("full", "normal")
INSERT = (
    "INSERT INTO data(key, data, datatype, is_original, createdAt, updatedAt, "
    "is_on_cloud) VALUES(?, ?, ?, ?, ?, ?, false) ON CONFLICT(key) DO UPDATE SET "
    "data=excluded.data, updatedAt=excluded.updatedAt, is_on_cloud=false"
)


def plain_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection set up as our writer's is (same pragmas, same schema)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in schema.writer_pragmas(synchronous):
        conn.execute(pragma).fetchall()
    for ddl in schema.DATA_SCHEMA:
        conn.execute(ddl)
    return conn


def plain_ingest(conn: sqlite3.Connection, values: list[bytes], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(values), batch):
        now = format_time(utcnow())
        rows = [
            (blake3.blake3(v).hexdigest(), v, 0, False, now, now) for v in values[i : i + batch]
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
    return time.perf_counter() - start


def plain_puts(conn: sqlite3.Connection, values: list[bytes]) -> float:
    start = time.perf_counter()
    for v in values:
        now = format_time(utcnow())
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT, (blake3.blake3(v).hexdigest(), v, 0, False, now, now))
        conn.execute("COMMIT")
    return time.perf_counter() - start


async def ours_ingest(store: LocalStore, values: list[bytes], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(values), batch):
        await store.store_batch(values[i : i + batch])
    return time.perf_counter() - start


async def ours_puts(store: LocalStore, values: list[bytes], in_flight: int) -> float:
    queue = list(reversed(values))

    async def worker() -> None:
        while queue:
            await store.store_value(queue.pop())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - start


def plain_reader(path: Path) -> sqlite3.Connection:
    """A connection set up as our readers are (read-only, same pragmas)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    for pragma in schema.READER_PRAGMAS:
        conn.execute(pragma).fetchall()
    return conn


def plain_read(conn: sqlite3.Connection, keys: list[str]) -> float:
    start = time.perf_counter()
    for key in keys:
        row = conn.execute("SELECT data FROM data WHERE key=?", (key,)).fetchone()
        assert row is not None
    return time.perf_counter() - start


def plain_many_point(conn: sqlite3.Connection, keys: list[str], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(keys), batch):
        found: dict[bytes, bytes] = {}
        for key in keys[i : i + batch]:
            row = conn.execute("SELECT data FROM data WHERE key=?", (key,)).fetchone()
            found[bytes.fromhex(key)] = row[0]
        assert len(found) == len(keys[i : i + batch])
    return time.perf_counter() - start


def plain_many_in(conn: sqlite3.Connection, keys: list[str], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(keys), batch):
        chunk = keys[i : i + batch]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(f"SELECT key, data FROM data WHERE key IN ({marks})", chunk)
        found = {bytes.fromhex(k): v for k, v in rows}
        assert len(found) == len(chunk)
    return time.perf_counter() - start


async def ours_read(store: LocalStore, keys: list[bytes]) -> float:
    start = time.perf_counter()
    for key in keys:
        assert await store.retrieve(key) is not None
    return time.perf_counter() - start


async def ours_read_many(store: LocalStore, keys: list[bytes], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(keys), batch):
        found = await store.retrieve_many(keys[i : i + batch])
        assert len(found) == len(keys[i : i + batch])
    return time.perf_counter() - start


async def one_round(
    tmp: Path, args: argparse.Namespace, rnd: int, samples: dict[str, list[float]]
) -> None:
    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    for mode in MODES:
        plain = plain_writer(tmp / f"plain-{mode}.sqlite3", mode)
        store = await LocalStore.open(tmp / f"ours-{mode}", synchronous=mode)
        try:
            values = await writes(plain, store, args, mode, rnd, add)
            if mode == "full":
                await reads(store, values, args, add)
        finally:
            plain.close()
            await store.close()


async def writes(
    plain: sqlite3.Connection,
    store: LocalStore,
    args: argparse.Namespace,
    mode: str,
    rnd: int,
    add: Callable[[str, float], None],
) -> list[bytes]:
    """Ingest and puts, plain and ours; which goes first alternates between rounds, so
    neither always meets the warmer disk. Returns the ingested values."""
    mb = args.values * args.size / 1e6
    suffix = "" if mode == "full" else "_normal"
    values = [os.urandom(args.size) for _ in range(args.values)]
    small = [os.urandom(1024) for _ in range(args.puts)]
    for step in ("plain", "ours") if rnd % 2 == 0 else ("ours", "plain"):
        if step == "plain":
            add(f"plain_ingest{suffix}", mb / plain_ingest(plain, values, args.batch))
            add(f"plain_puts{suffix}", len(small) / plain_puts(plain, small))
        else:
            add(f"ours_ingest{suffix}", mb / await ours_ingest(store, values, args.batch))
            add(f"ours_puts{suffix}", len(small) / await ours_puts(store, small, 1))
            again = [os.urandom(1024) for _ in range(args.puts)]
            add(f"ours_puts32{suffix}", len(again) / await ours_puts(store, again, 32))
    return values


async def reads(
    store: LocalStore,
    values: list[bytes],
    args: argparse.Namespace,
    add: Callable[[str, float], None],
) -> None:
    mb = args.values * args.size / 1e6
    keys = [blake3.blake3(v).digest() for v in values]
    hex_keys = [k.hex() for k in keys]
    conn = plain_reader(store.data_path)
    try:
        for _ in range(args.passes):
            add("plain_read", mb / plain_read(conn, hex_keys))
            add("ours_read", mb / await ours_read(store, keys))
            add("plain_read_many_point", mb / plain_many_point(conn, hex_keys, args.batch))
            add("plain_read_many_in", mb / plain_many_in(conn, hex_keys, args.batch))
            add("ours_read_many", mb / await ours_read_many(store, keys, args.batch))
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64 * 1024)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--puts", type=int, default=200, help="1 KiB single-value stores")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=5, help="read passes per round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    samples: dict[str, list[float]] = {}
    for rnd in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(one_round(Path(tmp), args, rnd, samples))

    med = {k: statistics.median(v) for k, v in samples.items()}
    med["plain_read_many"] = max(med["plain_read_many_point"], med["plain_read_many_in"])

    def ratio(ours: str, ref: str) -> float:
        return round(med[ours] / med[ref], 3)

    result: dict[str, object] = {
        "values": args.values,
        "value_bytes": args.size,
        "batch": args.batch,
        "puts": args.puts,
        "rounds": args.rounds,
        "passes": args.passes,
        **{
            f"{k}_{'per_s' if 'puts' in k else 'mb_s'}": round(v, 1) for k, v in sorted(med.items())
        },
        "ingest_ratio": ratio("ours_ingest", "plain_ingest"),
        "ingest_normal_ratio": ratio("ours_ingest_normal", "plain_ingest_normal"),
        "puts_ratio": ratio("ours_puts", "plain_puts"),
        "puts_normal_ratio": ratio("ours_puts_normal", "plain_puts_normal"),
        "puts32_ratio": ratio("ours_puts32", "plain_puts"),
        "puts32_normal_ratio": ratio("ours_puts32_normal", "plain_puts_normal"),
        "read_ratio": ratio("ours_read", "plain_read"),
        "read_many_ratio": ratio("ours_read_many", "plain_read_many"),
        "full_over_normal_ingest": ratio("ours_ingest", "ours_ingest_normal"),
        "full_over_normal_puts": ratio("ours_puts", "ours_puts_normal"),
        "full_over_normal_puts32": ratio("ours_puts32", "ours_puts32_normal"),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.values} values of {args.size} bytes in batches of {args.batch}, {args.puts} "
        f"puts of 1 KiB; medians of {args.rounds} rounds ({args.passes} read passes each)"
    )
    rows = [
        ("ingest FULL", "ours_ingest", "plain_ingest", "MB/s"),
        ("ingest NORMAL", "ours_ingest_normal", "plain_ingest_normal", "MB/s"),
        ("puts FULL", "ours_puts", "plain_puts", "/s"),
        ("puts NORMAL", "ours_puts_normal", "plain_puts_normal", "/s"),
        ("puts@32 FULL", "ours_puts32", "plain_puts", "/s"),
        ("puts@32 NORMAL", "ours_puts32_normal", "plain_puts_normal", "/s"),
        ("read", "ours_read", "plain_read", "MB/s"),
        (f"read x{args.batch}", "ours_read_many", "plain_read_many", "MB/s"),
    ]
    for label, ours, ref, unit in rows:
        print(
            f"  {label:15s} ours {med[ours]:9.1f} {unit:5s} plain sqlite3 {med[ref]:9.1f} "
            f"{unit:5s} ratio {med[ours] / med[ref]:.3f}"
        )
    print(
        f"  FULL ÷ NORMAL (ours): ingest {result['full_over_normal_ingest']}, puts "
        f"{result['full_over_normal_puts']}, puts@32 {result['full_over_normal_puts32']}"
    )


if __name__ == "__main__":
    main()
