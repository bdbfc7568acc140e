"""store_batch and batch_retrieve MB/s on an 8-node loopback network, beside the secure
channel's raw MB/s measured in the same run.

The network is ``lumera-p2p localnet``'s (with Go's replication intervals): real nodes on
127.0.0.1 in one process, each with its SQLite store, talking over the secure channel. A batch
of 2,000 values of 64 KiB is stored through one node (committed locally, then sent to each
value's 6 nearest nodes) and read back in full through another node (its own replicas, if it
holds any, are read locally).
The first reference is ``bench/secure_channel.py`` run in the same invocation (one stream
between two processes); a batch store moves every byte to 6 replicas and commits it 7 times, so
that ratio is bounded far below 1 by design. The second is the disk: plain ``sqlite3`` ingest
of the same values (batches of 100, one transaction each, the writer's pragmas and schema),
measured in the same run and divided by 7 (the origin and its 6 replicas each commit every
value on this one disk). ``store_batch_vs_disk_ratio`` is store_batch ÷ (ingest ÷ 7): 1.0
would be the disk's limit. Ratios are ours ÷ reference.

    python bench/network.py [--nodes 8] [--values 2000] [--size 65536] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lumera_p2p.content import content_key, digest
from lumera_p2p.localnet import create_localnet, load_configs, start_nodes
from lumera_p2p.store import schema
from lumera_p2p.store.timefmt import format_time, utcnow

#: Copies of each value committed on the disk by a batch store: the origin and 6 replicas.
COMMITS_PER_VALUE = 7
_INSERT = (
    "INSERT INTO data(key, data, datatype, is_original, createdAt, updatedAt, "
    "is_on_cloud) VALUES(?, ?, ?, ?, ?, ?, false) ON CONFLICT(key) DO UPDATE SET "
    "data=excluded.data, updatedAt=excluded.updatedAt, is_on_cloud=false"
)

HERE = Path(__file__).resolve().parent


def secure_channel_reference(mib: int) -> float:
    """The secure channel's MB/s from bench/secure_channel.py, run now."""
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "secure_channel.py"),
            "--mib",
            str(mib),
            "--runs",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(json.loads(out.stdout)["secure_mb_s"])


def sqlite_ingest_reference(values: int, size: int, batch: int = 100) -> float:
    """MB/s of plain sqlite3 ingesting ``values`` values of ``size`` bytes (keys hashed, one
    transaction per ``batch``), set up as our writer is; measured now, on this disk."""
    data = [os.urandom(size) for _ in range(values)]
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / schema.DATA_DB, isolation_level=None)
        try:
            for pragma in schema.writer_pragmas("full"):
                conn.execute(pragma).fetchall()
            for ddl in schema.DATA_SCHEMA:
                conn.execute(ddl)
            started = time.perf_counter()
            for start in range(0, values, batch):
                now = format_time(utcnow())
                rows = [
                    (digest(v).hex(), v, 0, False, now, now) for v in data[start : start + batch]
                ]
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            seconds = time.perf_counter() - started
        finally:
            conn.close()
    return values * size / 1e6 / seconds


async def measure(nodes: int, values: int, size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        # Go's replication timings, not localnet's 10-second demo cycle: a push cycle that
        # lands inside the timed store re-announces the batch being stored (REPLICATE,
        # key checks, fetches) and is no part of store_batch.
        local = create_localnet(Path(tmp), nodes, fast_intervals=False)
        running = await start_nodes(load_configs(local))
        try:
            data = [os.urandom(size) for _ in range(values)]
            keys = [content_key(v) for v in data]
            mb = values * size / 1e6
            started = time.perf_counter()
            report = await running[0].store_batch(data)
            store_s = time.perf_counter() - started
            reader = running[-1]
            started = time.perf_counter()
            found = await reader.batch_retrieve(keys)
            retrieve_s = time.perf_counter() - started
            if len(found) != values:
                raise RuntimeError(f"retrieved {len(found)} of {values}")
            return {
                "store_batch_mb_s": round(mb / store_s, 1),
                "batch_retrieve_mb_s": round(mb / retrieve_s, 1),
                "replica_requests": report.requests,
                "replica_success_rate": report.success_rate,
            }
        finally:
            await asyncio.gather(*(n.stop() for n in running), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--values", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64 * 1024)
    parser.add_argument("--reference-mib", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    disk_before = sqlite_ingest_reference(args.values, args.size)
    ours = asyncio.run(measure(args.nodes, args.values, args.size))
    disk_after = sqlite_ingest_reference(args.values, args.size)
    reference = secure_channel_reference(args.reference_mib)
    # Before and after the network run: the disk's speed drifts with the machine's load.
    disk = (disk_before + disk_after) / 2
    disk_share = disk / COMMITS_PER_VALUE
    result = {
        "nodes": args.nodes,
        "values": args.values,
        "value_bytes": args.size,
        **ours,
        "secure_channel_mb_s": reference,
        "sqlite_ingest_mb_s": round(disk, 1),
        "sqlite_ingest_per_copy_mb_s": round(disk_share, 1),
        "store_batch_ratio": round(ours["store_batch_mb_s"] / reference, 4),
        "store_batch_vs_disk_ratio": round(ours["store_batch_mb_s"] / disk_share, 4),
        "batch_retrieve_ratio": round(ours["batch_retrieve_mb_s"] / reference, 4),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.nodes} nodes, {args.values} values of {args.size} bytes")
    print(
        f"  store_batch     {ours['store_batch_mb_s']:8.1f} MB/s  "
        f"(ratio to secure channel {result['store_batch_ratio']})"
    )
    print(
        f"  batch_retrieve  {ours['batch_retrieve_mb_s']:8.1f} MB/s  "
        f"(ratio to secure channel {result['batch_retrieve_ratio']})"
    )
    print(
        f"  store_batch vs disk            ratio {result['store_batch_vs_disk_ratio']} "
        f"(sqlite3 ingest {disk:.1f} MB/s ÷ {COMMITS_PER_VALUE} = {disk_share:.1f} MB/s)"
    )
    print(f"  secure channel  {reference:8.1f} MB/s (bench/secure_channel.py, same run)")


if __name__ == "__main__":
    main()
