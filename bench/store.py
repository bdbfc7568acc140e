"""LocalStore beside plain sqlite3 on the same table, with the same settings, in the same run.

Ingest: 2,000 values of 64 KiB in batches of 100, for each durability mode (``synchronous``
FULL and NORMAL), against plain ``sqlite3`` ``executemany`` into an identical ``data`` table with
the writer's own pragmas (:func:`lumera_p2p.store.schema.writer_pragmas`), keys hashed in the
loop as ours are. Puts: 1 KiB values stored one per transaction, sequentially (and 32 in flight
for ours), against plain sqlite3 committing one row per transaction.

Reads run on *our* data file after our ingest, so both see the same file, WAL and page cache;
plain sqlite3 reads through a read-only connection with the readers' pragmas
(``schema.READER_PRAGMAS``). ``read`` is one ``SELECT data … WHERE key=?`` per key against
``retrieve``; ``read_many`` is ``retrieve_many`` of batches of 100 against the faster of two
plain ways to fetch the same 100 values into a dict (100 point ``SELECT``s, or one
``SELECT key, data … WHERE key IN (…)``); ``read_many_vs_read`` sets it against the plain
one-by-one reads, which drop each value at once and so never hold 100 of them.

Ours and the reference take turns batch by batch (puts: value by value), the order rotating,
and each side's time is summed: on a shared, busy machine both then meet the same load.
Ratios are ours ÷ reference (higher is better; 1.0 = no overhead), medians of the rounds.
``full_over_normal_*`` are ours in FULL ÷ ours in NORMAL: what the stronger durability costs.

    python bench/store.py [--values N] [--size BYTES] [--batch N] [--puts N] [--rounds R]
                          [--passes P] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import blake3

from lumera_p2p.store import LocalStore, schema
from lumera_p2p.store.timefmt import format_time, utcnow

MODES = schema.SYNCHRONOUS_MODES
INSERT = (
    "INSERT INTO data(key, data, datatype, is_original, createdAt, updatedAt, "
    "is_on_cloud) VALUES(?, ?, ?, ?, ?, ?, false) ON CONFLICT(key) DO UPDATE SET "
    "data=excluded.data, updatedAt=excluded.updatedAt, is_on_cloud=false"
)


def plain_writer(path: Path, synchronous: schema.Synchronous) -> sqlite3.Connection:
    """A connection set up as our writer's is (same pragmas, same schema)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in schema.writer_pragmas(synchronous):
        conn.execute(pragma).fetchall()
    for ddl in schema.DATA_SCHEMA:
        conn.execute(ddl)
    return conn


def plain_ingest(conn: sqlite3.Connection, values: list[bytes]) -> float:
    """One batch in one transaction; the seconds it took."""
    start = time.perf_counter()
    now = format_time(utcnow())
    rows = [(blake3.blake3(v).hexdigest(), v, 0, False, now, now) for v in values]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(INSERT, rows)
    conn.execute("COMMIT")
    return time.perf_counter() - start


def plain_put(conn: sqlite3.Connection, value: bytes) -> float:
    start = time.perf_counter()
    now = format_time(utcnow())
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(INSERT, (blake3.blake3(value).hexdigest(), value, 0, False, now, now))
    conn.execute("COMMIT")
    return time.perf_counter() - start


async def ours_ingest(store: LocalStore, values: list[bytes]) -> float:
    start = time.perf_counter()
    await store.store_batch(values)
    return time.perf_counter() - start


async def ours_put(store: LocalStore, value: bytes) -> float:
    start = time.perf_counter()
    await store.store_value(value)
    return time.perf_counter() - start


async def ours_puts_in_flight(store: LocalStore, values: list[bytes], in_flight: int) -> float:
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


def plain_many_point(conn: sqlite3.Connection, keys: list[str]) -> float:
    start = time.perf_counter()
    found: dict[bytes, bytes] = {}
    for key in keys:
        row = conn.execute("SELECT data FROM data WHERE key=?", (key,)).fetchone()
        found[bytes.fromhex(key)] = row[0]
    assert len(found) == len(keys)
    return time.perf_counter() - start


def plain_many_in(conn: sqlite3.Connection, keys: list[str]) -> float:
    start = time.perf_counter()
    marks = ",".join("?" * len(keys))
    rows = conn.execute(f"SELECT key, data FROM data WHERE key IN ({marks})", keys)
    found = {bytes.fromhex(k): v for k, v in rows}
    assert len(found) == len(keys)
    return time.perf_counter() - start


async def ours_read(store: LocalStore, keys: list[bytes]) -> float:
    start = time.perf_counter()
    for key in keys:
        assert await store.retrieve(key) is not None
    return time.perf_counter() - start


async def ours_read_many(store: LocalStore, keys: list[bytes]) -> float:
    start = time.perf_counter()
    found = await store.retrieve_many(keys)
    assert len(found) == len(keys)
    return time.perf_counter() - start


Timed = Callable[[], Awaitable[float]]


async def take_turns(steps: dict[str, Timed], turn: int, seconds: dict[str, float]) -> None:
    """Run each step once, in an order drawn for this turn; add up their seconds.

    A fresh order each turn, so no step always follows the same one (what ran just before
    leaves the allocator, the page cache and the disk in its own state)."""
    names = list(steps)
    random.Random(turn).shuffle(names)
    for name in names:
        seconds[name] = seconds.get(name, 0.0) + await steps[name]()


def synced(fn: Callable[..., float], *args: object) -> Timed:
    async def run() -> float:
        return fn(*args)

    return run


async def one_round(tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    """Figures of one round: MB/s or operations/s by name."""
    mb = args.values * args.size / 1e6
    rates: dict[str, float] = {}
    for mode in MODES:
        suffix = "" if mode == "full" else "_normal"
        plain = plain_writer(tmp / f"plain-{mode}.sqlite3", mode)
        store = await LocalStore.open(tmp / f"ours-{mode}", synchronous=mode)
        try:
            values = [os.urandom(args.size) for _ in range(args.values)]
            seconds: dict[str, float] = {}
            for turn, i in enumerate(range(0, len(values), args.batch)):
                chunk = values[i : i + args.batch]
                await take_turns(
                    {
                        f"plain_ingest{suffix}": synced(plain_ingest, plain, chunk),
                        f"ours_ingest{suffix}": functools.partial(ours_ingest, store, chunk),
                    },
                    turn,
                    seconds,
                )
            for turn in range(args.puts):
                await take_turns(
                    {
                        f"plain_puts{suffix}": synced(plain_put, plain, os.urandom(1024)),
                        f"ours_puts{suffix}": functools.partial(ours_put, store, os.urandom(1024)),
                    },
                    turn,
                    seconds,
                )
            small = [os.urandom(1024) for _ in range(args.puts)]
            seconds[f"ours_puts32{suffix}"] = await ours_puts_in_flight(store, small, 32)
            for name, spent in seconds.items():
                rates[name] = (mb if "ingest" in name else args.puts) / spent
            if mode == "full":
                rates.update(await reads(store, values, args))
        finally:
            plain.close()
            await store.close()
    rates["plain_read_many"] = max(rates["plain_read_many_point"], rates["plain_read_many_in"])
    return rates


async def reads(
    store: LocalStore, values: list[bytes], args: argparse.Namespace
) -> dict[str, float]:
    """Read MB/s of each way to read, every key once per pass.

    In a turn, each way reads a different batch, and each plain way has a connection of its
    own: a batch one way has just read must not be found in another's SQLite page cache.
    (Ours has one connection for reads on the loop, shared by ``retrieve`` and the first
    values of each ``retrieve_many``.)
    """
    keys = [blake3.blake3(v).digest() for v in values]
    hex_keys = [k.hex() for k in keys]
    batches = [(i, i + args.batch) for i in range(0, len(keys), args.batch)]
    plain = {
        name: plain_reader(store.data_path)
        for name in ("plain_read", "plain_read_many_point", "plain_read_many_in")
    }

    def way(name: str, start: int, end: int) -> Timed:
        raw, text = keys[start:end], hex_keys[start:end]
        if name == "ours_read":
            return functools.partial(ours_read, store, raw)
        if name == "ours_read_many":
            return functools.partial(ours_read_many, store, raw)
        fn = {
            "plain_read": plain_read,
            "plain_read_many_point": plain_many_point,
            "plain_read_many_in": plain_many_in,
        }[name]
        return synced(fn, plain[name], text)

    names = ["plain_read", "ours_read", "plain_read_many_point", "plain_read_many_in"]
    names.append("ours_read_many")
    stride = max(1, len(batches) // len(names))
    seconds: dict[str, float] = {}
    try:
        for turn in range(args.passes * len(batches)):
            steps = {
                name: way(name, *batches[(turn + j * stride) % len(batches)])
                for j, name in enumerate(names)
            }
            await take_turns(steps, turn, seconds)
    finally:
        for conn in plain.values():
            conn.close()
    mb = args.passes * args.values * args.size / 1e6
    return {name: mb / spent for name, spent in seconds.items()}


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
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            for name, rate in asyncio.run(one_round(Path(tmp), args)).items():
                samples.setdefault(name, []).append(rate)
    med = {k: statistics.median(v) for k, v in samples.items()}

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
        # Against reads that drop each value at once: what holding 100 values costs on top.
        "read_many_vs_read_ratio": ratio("ours_read_many", "plain_read"),
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
