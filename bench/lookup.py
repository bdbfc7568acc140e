"""Rounds and messages per FIND_NODE lookup at several network sizes, beside log2(N).

Each size is a simulated network (the real DHT code on the in-memory transport, virtual
clock) that joins node by node; then lookups from random nodes for random targets are timed
by process CPU time. Kademlia's promise is O(log N) rounds: the ratio printed is
log2(N) ÷ median rounds (higher is better; above 1 means fewer rounds than log2 N), and
``accuracy`` is the share of lookups that found exactly the true 20 closest nodes.

    python bench/lookup.py [--sizes 100,1000,5000] [--lookups 300] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time

from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.sim.network import SimConfig, SimulatedNetwork


async def measure(nodes: int, lookups: int, seed: int) -> dict[str, float]:
    sim = SimulatedNetwork(SimConfig(nodes=nodes, seed=seed))
    join_started = time.process_time()
    await sim.join_all()
    join_cpu = time.process_time() - join_started
    started = time.process_time()
    accuracy, rounds, messages = await sim.measure_lookups(lookups)
    cpu = time.process_time() - started
    await asyncio.gather(*(n.close() for n in sim.nodes))
    median_rounds = statistics.median(rounds)
    return {
        "nodes": nodes,
        "log2_n": round(math.log2(nodes), 2),
        "rounds_median": median_rounds,
        "rounds_p95": sorted(rounds)[int(0.95 * (len(rounds) - 1))],
        "messages_median": statistics.median(messages),
        "messages_p95": sorted(messages)[int(0.95 * (len(messages) - 1))],
        "accuracy": round(accuracy, 4),
        "lookups_per_cpu_second": round(lookups / cpu, 1) if cpu else 0.0,
        "join_cpu_seconds": round(join_cpu, 1),
        "log2n_over_rounds_ratio": round(math.log2(nodes) / median_rounds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = [run_virtual(measure(n, args.lookups, args.seed)) for n in sizes]
    if args.json:
        out: dict[str, object] = {"lookups": args.lookups, "seed": args.seed, "sizes": rows}
        for row in rows:
            out[f"n{int(row['nodes'])}_log2n_over_rounds_ratio"] = row["log2n_over_rounds_ratio"]
        print(json.dumps(out))
        return
    print(
        f"{'nodes':>6} {'log2N':>6} {'rounds':>7} {'p95':>4} {'msgs':>6} {'p95':>5} "
        f"{'accuracy':>8} {'lookups/cpu-s':>13} {'log2N/rounds':>12}"
    )
    for r in rows:
        print(
            f"{int(r['nodes']):>6} {r['log2_n']:>6} {r['rounds_median']:>7} "
            f"{r['rounds_p95']:>4} {r['messages_median']:>6} {r['messages_p95']:>5} "
            f"{r['accuracy']:>8} {r['lookups_per_cpu_second']:>13} "
            f"{r['log2n_over_rounds_ratio']:>12}"
        )


if __name__ == "__main__":
    main()
