"""Ingest and read MB/s of LocalStore beside plain sqlite3 on the same table, same run.

2,000 values of 64 KiB, stored in batches of 100. The reference is plain ``sqlite3``
``executemany`` into an identical ``data`` table with the same durability (WAL,
``synchronous=FULL``), keys hashed in the loop as ours are; reads are one ``SELECT`` per key.
Ratios are ours ÷ reference (higher is better; 1.0 = no overhead).

    python bench/store.py [--values N] [--size BYTES] [--batch N] [--rounds R] [--json]
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
from pathlib import Path

import blake3

from lumera_p2p.store import LocalStore
from lumera_p2p.store.schema import DATA_SCHEMA
from lumera_p2p.store.timefmt import format_time, utcnow


def plain_ingest(path: Path, values: list[bytes], batch: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for ddl in DATA_SCHEMA:
        conn.execute(ddl)
    start = time.perf_counter()
    for i in range(0, len(values), batch):
        now = format_time(utcnow())
        rows = [
            (blake3.blake3(v).hexdigest(), v, 0, False, now, now) for v in values[i : i + batch]
        ]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO data(key, data, datatype, is_original, createdAt, updatedAt, "
            "is_on_cloud) VALUES(?, ?, ?, ?, ?, ?, false) ON CONFLICT(key) DO UPDATE SET "
            "data=excluded.data, updatedAt=excluded.updatedAt, is_on_cloud=false",
            rows,
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def plain_read(path: Path, keys: list[str]) -> float:
    conn = sqlite3.connect(path)
    start = time.perf_counter()
    for key in keys:
        row = conn.execute("SELECT data FROM data WHERE key=?", (key,)).fetchone()
        assert row is not None
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


async def ours(path: Path, values: list[bytes], batch: int) -> tuple[float, float, float]:
    store = await LocalStore.open(path)
    try:
        start = time.perf_counter()
        keys: list[bytes] = []
        for i in range(0, len(values), batch):
            keys += await store.store_batch(values[i : i + batch])
        ingest = time.perf_counter() - start
        start = time.perf_counter()
        for key in keys:
            assert await store.retrieve(key) is not None
        read_one = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(keys), batch):
            found = await store.retrieve_many(keys[i : i + batch])
            assert len(found) == len(keys[i : i + batch])
        read_many = time.perf_counter() - start
    finally:
        await store.close()
    return ingest, read_one, read_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64 * 1024)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    mb = args.values * args.size / 1e6
    samples: dict[str, list[float]] = {
        k: [] for k in ("plain_ingest", "plain_read", "ours_ingest", "ours_read", "ours_read_many")
    }
    for _ in range(args.rounds):
        values = [os.urandom(args.size) for _ in range(args.values)]
        with tempfile.TemporaryDirectory() as tmp:
            plain_path = Path(tmp) / "plain.sqlite3"
            samples["plain_ingest"].append(mb / plain_ingest(plain_path, values, args.batch))
            hex_keys = [blake3.blake3(v).hexdigest() for v in values]
            samples["plain_read"].append(mb / plain_read(plain_path, hex_keys))
            ingest, read_one, read_many = asyncio.run(ours(Path(tmp) / "ours", values, args.batch))
            samples["ours_ingest"].append(mb / ingest)
            samples["ours_read"].append(mb / read_one)
            samples["ours_read_many"].append(mb / read_many)

    med = {k: statistics.median(v) for k, v in samples.items()}
    result = {
        "values": args.values,
        "value_bytes": args.size,
        "batch": args.batch,
        "rounds": args.rounds,
        **{f"{k}_mb_s": round(v, 1) for k, v in med.items()},
        "ingest_ratio": round(med["ours_ingest"] / med["plain_ingest"], 3),
        "read_ratio": round(med["ours_read"] / med["plain_read"], 3),
        "read_many_ratio": round(med["ours_read_many"] / med["plain_read"], 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.values} values of {args.size} bytes, batches of {args.batch}, median of "
        f"{args.rounds} rounds"
    )
    print(
        f"  ingest  ours {med['ours_ingest']:8.1f} MB/s   plain sqlite3 "
        f"{med['plain_ingest']:8.1f} MB/s   ratio {result['ingest_ratio']}"
    )
    print(
        f"  read    ours {med['ours_read']:8.1f} MB/s   plain sqlite3 "
        f"{med['plain_read']:8.1f} MB/s   ratio {result['read_ratio']}"
    )
    print(
        f"  read x{args.batch} ours {med['ours_read_many']:6.1f} MB/s   (vs one-by-one plain) "
        f"ratio {result['read_many_ratio']}"
    )


if __name__ == "__main__":
    main()
