"""store_batch and batch_retrieve MB/s on an 8-node loopback network, beside the secure
channel's raw MB/s measured in the same run.

The network is ``lumera-p2p localnet``'s: real nodes on 127.0.0.1 in one process, each with
its SQLite store, talking over the secure channel. A batch of 2,000 values of 64 KiB is stored
through one node (committed locally, then sent to each value's 6 nearest nodes) and read back
in full through another node (its own replicas, if it holds any, are read locally).
The reference is ``bench/secure_channel.py`` run in the same invocation (one stream between two
processes). Ratios are ours ÷ reference; note that a batch store moves every byte to 6 replicas
and commits it 7 times, so its ratio is bounded far below 1 by design.

    python bench/network.py [--nodes 8] [--values 2000] [--size 65536] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lumera_p2p.content import content_key
from lumera_p2p.localnet import create_localnet, load_configs, start_nodes

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


async def measure(nodes: int, values: int, size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        local = create_localnet(Path(tmp), nodes)
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
    ours = asyncio.run(measure(args.nodes, args.values, args.size))
    reference = secure_channel_reference(args.reference_mib)
    result = {
        "nodes": args.nodes,
        "values": args.values,
        "value_bytes": args.size,
        **ours,
        "secure_channel_mb_s": reference,
        "store_batch_ratio": round(ours["store_batch_mb_s"] / reference, 4),
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
    print(f"  secure channel  {reference:8.1f} MB/s (bench/secure_channel.py, same run)")


if __name__ == "__main__":
    main()
