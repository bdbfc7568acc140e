"""Fuzz the config loader with N hostile files and time every load (issue 13: none over 0.5 s).

Inputs come from ``tests/config_inputs.py``, seven kinds in turn: YAML trees over our and Go's
keys, raw text, mutated real configs, deep nesting, huge numbers, aliases and explicit tags.
Each is written to a file and loaded with ``load_config``; only the load is timed. Anything
but a ``ConfigError`` is a finding and is listed with the seed that makes it.

The reference, timed in the same run, is loading the Go supernode's sample config (a real
file of 1.3 KB); ``budget_ratio`` is the 0.5 s budget ÷ the slowest input (higher is better,
above 1 means every input was inside the budget).

    python bench/config_fuzz.py [--count N] [--seed S] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.config_inputs

from tests.config_inputs import FIXTURES, run_fuzz

from lumera_p2p.config import load_config

BUDGET_SECONDS = 0.5


def reference_seconds(rounds: int = 200) -> float:
    """Median time to load the Go sample config."""
    path = FIXTURES / "supernode-sample.yml"
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        load_config(path)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    reference = reference_seconds()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        report = run_fuzz(args.count, args.seed, Path(tmp))
    wall = time.perf_counter() - started
    times = sorted(report.times)
    p99 = times[int(len(times) * 0.99)] if times else 0.0
    over = sum(t > BUDGET_SECONDS for t in times)
    result = {
        "inputs": report.count,
        "config_errors": report.config_errors,
        "loaded": report.loaded,
        "escaped": len(report.escaped),
        "over_budget": over,
        "max_seconds": round(report.slowest, 4),
        "p99_seconds": round(p99, 5),
        "median_seconds": round(statistics.median(times), 6) if times else 0.0,
        "max_seconds_by_kind": {k: round(v, 4) for k, v in sorted(report.max_seconds.items())},
        "reference_go_sample_seconds": round(reference, 6),
        "budget_ratio": round(BUDGET_SECONDS / report.slowest, 2) if report.slowest else None,
        "wall_seconds": round(wall, 1),
        "seed": args.seed,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{report.count:,} inputs in {wall:.0f} s: {report.config_errors:,} ConfigError, "
            f"{report.loaded:,} loaded, {len(report.escaped)} escaped, "
            f"{over} over {BUDGET_SECONDS} s"
        )
        print(
            f"slowest {report.slowest * 1000:.1f} ms, p99 {p99 * 1000:.2f} ms, "
            f"median {statistics.median(times) * 1000:.2f} ms; "
            f"reference (Go sample config) {reference * 1000:.2f} ms"
        )
        for kind, seconds in sorted(report.max_seconds.items()):
            print(
                f"  {kind:12} {report.by_kind[kind]:>7,} inputs, slowest {seconds * 1000:7.1f} ms"
            )
        print(f"budget_ratio (0.5 s / slowest): {result['budget_ratio']}")
    for kind, seed, error in report.escaped[:20]:
        print(f"ESCAPED {kind} seed={seed}: {error}", file=sys.stderr)
    return 1 if report.escaped else 0


if __name__ == "__main__":
    raise SystemExit(main())
