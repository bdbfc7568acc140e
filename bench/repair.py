"""Repair after a third of the nodes is killed at once, and the share of fresh nodes.

A simulated network (the real node and replication code on the in-memory transport and the
virtual clock, :mod:`lumera_p2p.sim.repair`): the values start on their 6 nearest nodes; a
third of the nodes stop answering; the time until every value is back on its 6 nearest live
nodes is measured in virtual seconds and push cycles, with the value bytes fetched against
the least that had to move (each missing replica once). Then fresh nodes join and the same is
measured until each value is on its nearest nodes, newcomers included.

Figures beside their references, as ratios (higher is better):

* ``*_budget_ratio``: the issue's budget of 2 push cycles ÷ the time the phase took;
* ``*_bytes_ratio``: the minimum value bytes ÷ the value bytes fetched (1.0: nothing moved
  twice);
* ``*_wire_ratio``: the minimum ÷ all repair traffic (fetch payloads and the 64-byte hex keys
  of Replicate and BatchFindValues requests).

    python bench/repair.py [--nodes 200] [--values 2000] [--fresh 60] [--seed 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

from lumera_p2p.sim.repair import PhaseResult, RepairSimConfig, run_repair_simulation

#: The issue's budget for each phase, in push cycles.
BUDGET_CYCLES = 2.0


def _phase(name: str, phase: PhaseResult, interval: float) -> dict[str, object]:
    budget = BUDGET_CYCLES * interval
    return {
        f"{name}_targets": phase.targets,
        f"{name}_complete": phase.complete,
        f"{name}_seconds": phase.seconds,
        f"{name}_cycles": phase.cycles,
        f"{name}_missing_replicas": phase.missing_replicas,
        f"{name}_minimum_bytes": phase.minimum_bytes,
        f"{name}_fetched_bytes": phase.fetched_bytes,
        f"{name}_wire_bytes": phase.wire_bytes,
        f"{name}_lost": phase.lost,
        f"{name}_unrecoverable": phase.unrecoverable,
        f"{name}_budget_ratio": round(budget / phase.seconds, 3) if phase.seconds else 0.0,
        f"{name}_bytes_ratio": phase.bytes_ratio,
        f"{name}_wire_ratio": phase.wire_ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--values", type=int, default=2000)
    parser.add_argument("--fresh", type=int, default=60)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = RepairSimConfig(
        nodes=args.nodes, values=args.values, fresh=args.fresh, seed=args.seed, cycles=4.0
    )
    started = time.process_time()
    result = run_repair_simulation(config)
    cpu = time.process_time() - started
    interval = result.interval
    out: dict[str, object] = {
        "nodes": result.nodes,
        "values": result.values,
        "killed": result.killed,
        "fresh": result.fresh,
        "seed": result.seed,
        "interval_seconds": interval,
        "cpu_seconds": round(cpu, 1),
        **_phase("kill", result.kill, interval),
        **_phase("join", result.join, interval),
    }
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"{result.nodes} nodes, {result.values} values, {result.killed} killed, "
        f"{result.fresh} fresh; push cycle {interval:.0f} virtual s; {cpu:.1f} s of CPU"
    )
    print(f"{'phase':>6} {'seconds':>8} {'cycles':>6} {'budget':>7} {'bytes':>6} {'wire':>6} lost")
    for name in ("kill", "join"):
        print(
            f"{name:>6} {out[f'{name}_seconds']!s:>8} {out[f'{name}_cycles']!s:>6} "
            f"{out[f'{name}_budget_ratio']:>7} {out[f'{name}_bytes_ratio']:>6} "
            f"{out[f'{name}_wire_ratio']:>6} {out[f'{name}_lost']}"
        )


if __name__ == "__main__":
    main()
