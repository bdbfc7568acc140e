"""Many node processes on one machine: time until all are bootstrapped and serving, RSS each.

Creates a local network of N nodes (each on its own 127.0.x.y address, joining through
``--seeds`` earlier nodes), starts one :mod:`lumera_p2p.localnet_child` process per node
(``lumera-p2p localnet --processes``), and measures

* ``join_s``: from the first spawn until every node's routing table holds a peer;
* ``serving_s``: then ``--ops`` stores, each through a random node, and as many retrieves, each
  through a random other node, every value read back intact (``ops_s`` of them a second);
* the memory of every node process once all have served: RSS (what ``ps`` shows; shared
  libraries count in full in each) and PSS (shared pages divided among their users: what N
  processes cost the machine), in MiB, median and max.

References from the same run: a bare interpreter that imports asyncio (``rss_vs_bare_ratio``
= its RSS ÷ a node's, higher is better) and the issue's 40 MiB per node (``rss_vs_40mib_ratio``
= 40 ÷ a node's median RSS; ≥ 1 meets it).

Node processes run asyncio's loop unless ``--loop uvloop`` (``localnet_processes.CHILD_LOOP``:
uvloop costs each process about 2.4 MiB).

    python bench/scale.py [--nodes 256] [--ops 64] [--seeds 3] [--loop asyncio] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lumera_p2p.eventloop import LoopName
from lumera_p2p.localnet import create_localnet
from lumera_p2p.localnet_processes import CHILD_LOOP, spawn_nodes, stop_nodes

MIB = 1024


def bare_rss_kib() -> int:
    """RSS of an interpreter that imported asyncio and nothing else (the floor)."""
    code = (
        "import asyncio, pathlib\n"
        "print([r for r in pathlib.Path('/proc/self/smaps_rollup').read_text().splitlines()"
        " if r.startswith('Rss:')][0].split()[1])"
    )
    return int(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )


async def measure(
    nodes: int, ops: int, seeds: int, seed: int, loop: LoopName = CHILD_LOOP
) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        local = create_localnet(Path(tmp), nodes, fast_intervals=False, seeds=seeds)
        created = time.perf_counter() - started
        started = time.perf_counter()
        children = await spawn_nodes(local, loop=loop)
        joined = time.perf_counter() - started
        try:
            started = time.perf_counter()
            values = [os.urandom(1024) for _ in range(ops)]
            writers = [rng.randrange(nodes) for _ in values]
            stored = await asyncio.gather(
                *(children[w].store(v) for w, v in zip(writers, values, strict=True))
            )
            readers = [(w + 1 + rng.randrange(nodes - 1)) % nodes for w in writers]
            found = await asyncio.gather(
                *(children[r].retrieve(k) for r, (k, _) in zip(readers, stored, strict=True))
            )
            served = time.perf_counter() - started
            intact = sum(f == v for f, v in zip(found, values, strict=True))
            peers = [int((await c.command("peers")).split()[1]) for c in children]
            memory = [c.memory() for c in children]
        finally:
            await stop_nodes(children)
    rss = [m.get("Rss", 0) / MIB for m in memory]
    pss = [m.get("Pss", 0) / MIB for m in memory]
    private = [m.get("Private_Dirty", 0) / MIB for m in memory]
    bare = bare_rss_kib() / MIB
    return {
        "nodes": nodes,
        "seeds": seeds,
        "loop": loop,
        "create_s": round(created, 2),
        "join_s": round(joined, 2),
        "serving_s": round(served, 2),
        "ops": ops,
        "ops_s": round(2 * ops / served, 1),
        "intact": intact,
        "replicas_min": min(r for _, r in stored),
        "replicas_median": statistics.median(r for _, r in stored),
        "routing_table_min": min(peers),
        "routing_table_median": statistics.median(peers),
        "rss_mib_median": round(statistics.median(rss), 1),
        "rss_mib_max": round(max(rss), 1),
        "pss_mib_median": round(statistics.median(pss), 1),
        "pss_mib_max": round(max(pss), 1),
        "private_mib_median": round(statistics.median(private), 1),
        "private_mib_max": round(max(private), 1),
        "bare_rss_mib": round(bare, 1),
        "rss_vs_bare_ratio": round(bare / statistics.median(rss), 3),
        "rss_vs_40mib_ratio": round(40 / statistics.median(rss), 3),
        "pss_vs_40mib_ratio": round(40 / statistics.median(pss), 3),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=256)
    parser.add_argument("--ops", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "auto"], default=CHILD_LOOP)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.nodes, args.ops, args.seeds, args.seed, args.loop))
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['nodes']} node processes: all joined in {result['join_s']} s, "
        f"{result['intact']}/{args.ops} values stored through random nodes and read back "
        f"through others in {result['serving_s']} s ({result['ops_s']} ops/s; replicas "
        f"min {result['replicas_min']}); routing tables min {result['routing_table_min']}"
    )
    print(
        f"  RSS per node: median {result['rss_mib_median']} MiB, max {result['rss_mib_max']}"
        f" MiB (bare interpreter {result['bare_rss_mib']} MiB); PSS median "
        f"{result['pss_mib_median']} MiB, max {result['pss_mib_max']} MiB; private median "
        f"{result['private_mib_median']} MiB, max {result['private_mib_max']} MiB "
        f"({result['loop']} loop)"
    )
    for name, value in result.items():
        if name.endswith("_ratio"):
            print(f"  {name} {value}")


if __name__ == "__main__":
    main()
