"""Small values on 64 nodes: lumera-p2p beside OpenDHT and bmuller's kademlia, in one run.

The peer DHTs' own workload: 64 nodes in one process on 127.0.0.1, 1 KiB random values;
500 sequential puts, each from a random node, then 500 gets, each from a random node other
than the one that put the value; then the same with 32 operations in flight. Every system
runs in its own child process (so CPU time is its own), the three are rotated between rounds
(ours first, then OpenDHT first, then bmuller first) and the medians of 3 rounds are
reported, with ``*_ratio`` fields (ours ÷ peer) against each. A get must return the value put.

What each system is (all defaults but the port):

* lumera-p2p: ``lumera-p2p localnet``'s nodes (each its own key, SQLite store with
  ``store.synchronous`` as given, ``full`` by default, secure channel), 7 copies per value.
* OpenDHT 4.4.2 (C++; PyPI ``opendht``): values in memory, 8 copies (its default).
* bmuller kademlia 2.2.3 (Python over UDP; PyPI ``kademlia``): values in memory, k = 20 copies.

Figures per system: puts/s and gets/s (sequential and at 32 in flight), CPU-ms per put and
per get (the child's process time ÷ operations, all threads), put p50/p99, failed puts (a put
that raises is counted in ``put_failures``, its get skipped, and the first error kept; a get
that returns nothing or the wrong bytes is counted in ``get_failures`` the same way), and for
ours the RPCs per sequential put by message type. ``pip install -e '.[bench]'`` brings both
peers.

    python bench/smallvalues.py [--ops 500] [--rounds 3] [--only ours] [--json]
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
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

NODES = 64
VALUE_BYTES = 1024
IN_FLIGHT = 32
SYSTEMS = ("ours", "opendht", "bmuller")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class Workload:
    """The operations and their timing, for any system given ``put``/``get`` coroutines."""

    def __init__(self, ops: int, seed: int) -> None:
        self.ops = ops
        self.rng = random.Random(seed)
        self.out: dict[str, Any] = {}

    async def run(
        self,
        put: Callable[[int, bytes], Awaitable[object]],
        get: Callable[[int, object], Awaitable[bytes | None]],
        before_puts: Callable[[], None] = lambda: None,
        after_puts: Callable[[], None] = lambda: None,
    ) -> dict[str, Any]:
        before_puts()
        await self._phase("", 1, put, get, after_puts)
        await self._phase("_32", IN_FLIGHT, put, get, lambda: None)
        return self.out

    async def _phase(
        self,
        label: str,
        parallel: int,
        put: Callable[[int, bytes], Awaitable[object]],
        get: Callable[[int, object], Awaitable[bytes | None]],
        after_puts: Callable[[], None],
    ) -> None:
        values = [os.urandom(VALUE_BYTES) for _ in range(self.ops)]
        origins = [self.rng.randrange(NODES) for _ in values]
        readers = [(o + 1 + self.rng.randrange(NODES - 1)) % NODES for o in origins]
        keys: list[object] = [None] * self.ops
        latencies: list[float] = []
        failures: list[str] = []

        async def one_put(i: int) -> None:
            started = time.perf_counter()
            try:
                keys[i] = await put(origins[i], values[i])
            except Exception as exc:  # counted and reported, never hidden: see put_failures
                failures.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - started)

        get_failures: list[str] = []

        async def one_get(i: int) -> None:
            if keys[i] is None:  # its put failed (counted above)
                return
            got = await get(readers[i], keys[i])
            if got != values[i]:  # counted and reported like a failed put: see get_failures
                get_failures.append(f"get {i} returned {'nothing' if got is None else 'junk'}")

        cpu, wall = time.process_time(), time.perf_counter()
        await self._all(one_put, parallel)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        after_puts()
        self.out[f"put_failures{label}"] = len(failures)
        if failures:
            self.out[f"first_put_failure{label}"] = failures[0][:300]
        self.out[f"puts_s{label}"] = round(self.ops / wall, 1)
        self.out[f"cpu_ms_per_put{label}"] = round(cpu * 1000 / self.ops, 2)
        self.out[f"put_p50_ms{label}"] = round(percentile(latencies, 0.50) * 1000, 1)
        self.out[f"put_p99_ms{label}"] = round(percentile(latencies, 0.99) * 1000, 1)
        cpu, wall = time.process_time(), time.perf_counter()
        await self._all(one_get, parallel)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        self.out[f"gets_s{label}"] = round(self.ops / wall, 1)
        self.out[f"get_failures{label}"] = len(get_failures)
        if get_failures:
            self.out[f"first_get_failure{label}"] = get_failures[0]
        self.out[f"cpu_ms_per_get{label}"] = round(cpu * 1000 / self.ops, 2)

    async def _all(self, job: Callable[[int], Awaitable[None]], parallel: int) -> None:
        if parallel == 1:
            for i in range(self.ops):
                await job(i)
            return
        gate = asyncio.Semaphore(parallel)

        async def gated(i: int) -> None:
            async with gate:
                await job(i)

        await asyncio.gather(*(gated(i) for i in range(self.ops)))


# --- lumera-p2p -----------------------------------------------------------------------------


async def run_ours(ops: int, seed: int, synchronous: str) -> dict[str, Any]:
    import yaml

    from lumera_p2p.eventloop import freeze_long_lived
    from lumera_p2p.localnet import create_localnet, load_configs, start_nodes

    with tempfile.TemporaryDirectory() as tmp:
        # Production intervals (health check every 5 min), not the quick ones tests use.
        local = create_localnet(Path(tmp), NODES, fast_intervals=False)
        for node in local:
            config = yaml.safe_load(node.config_path.read_text())
            config["store"] = {"synchronous": synchronous}
            node.config_path.write_text(yaml.safe_dump(config))
        started = time.perf_counter()
        nodes = await start_nodes(load_configs(local))
        joined = time.perf_counter() - started
        freeze_long_lived()  # as `lumera-p2p localnet` does once its nodes have started
        try:
            peers = [n.node.peer_count for n in nodes]
            sent_before: dict[str, int] = {}
            sent_after: dict[str, int] = {}

            def rpcs(into: dict[str, int]) -> None:
                for n in nodes:
                    for name, count in n.node.snapshot_counters().rpc_sent_by_type.items():
                        into[name] = into.get(name, 0) + count

            async def put(i: int, value: bytes) -> object:
                return await nodes[i].store(value)

            async def get(i: int, key: object) -> bytes | None:
                assert isinstance(key, str)
                return await nodes[i].retrieve(key)

            out = await Workload(ops, seed).run(
                put, get, lambda: rpcs(sent_before), lambda: rpcs(sent_after)
            )
            by_type = {
                name: round((count - sent_before.get(name, 0)) / ops, 2)
                for name, count in sorted(sent_after.items())
                if count - sent_before.get(name, 0)
            }
            out["rpcs_per_put"] = round(sum(by_type.values()), 2)
            out["rpcs_per_put_by_type"] = by_type
            out["copies"] = 1 + nodes[0].node.options.replicas
            out["synchronous"] = synchronous
            out["join_s"] = round(joined, 2)
            out["routing_table_min"] = min(peers)
            return out
        finally:
            await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


# --- OpenDHT --------------------------------------------------------------------------------


async def run_opendht(ops: int, seed: int) -> dict[str, Any]:
    import opendht as dht

    runners = []
    for _ in range(NODES):
        runner = dht.DhtRunner()
        runner.run(port=0, ipv4="127.0.0.1", ipv6="::1")
        runners.append(runner)
    first = runners[0].getBound()
    for runner in runners[1:]:
        runner.bootstrap("127.0.0.1", str(first.getPort()))
    await asyncio.sleep(3.0)  # its own bootstrap settles (no readiness signal to wait on)
    loop = asyncio.get_running_loop()

    def completion() -> tuple[asyncio.Future[Any], Callable[..., None]]:
        future: asyncio.Future[Any] = loop.create_future()

        def done(*args: Any) -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(args))

        return future, done

    async def put(i: int, value: bytes) -> object:
        key = dht.InfoHash.getRandom()
        future, done = completion()
        runners[i].put(key, dht.Value(value), done_cb=lambda ok, nodes: done(ok))
        (ok,) = await future
        if not ok:
            raise RuntimeError("OpenDHT put failed")
        return key

    async def get(i: int, key: object) -> bytes | None:
        found: list[bytes] = []
        lock = threading.Lock()
        future, done = completion()

        def on_value(value: Any) -> bool:
            with lock:
                found.append(bytes(value.data))
            return False  # the first value is enough: stop the search

        runners[i].get(key, get_cb=on_value, done_cb=lambda ok, nodes: done(ok))
        await future
        return found[0] if found else None

    try:
        out = await Workload(ops, seed).run(put, get)
        out["copies"] = 8
        return out
    finally:
        for runner in runners:
            runner.join()


# --- bmuller kademlia -----------------------------------------------------------------------


async def run_bmuller(ops: int, seed: int) -> dict[str, Any]:
    import logging

    from kademlia.network import Server

    logging.getLogger("kademlia").setLevel(logging.ERROR)
    logging.getLogger("rpcudp").setLevel(logging.ERROR)
    servers = []
    for _ in range(NODES):
        server = Server()
        await server.listen(0, interface="127.0.0.1")
        servers.append(server)
    ports = [s.transport.get_extra_info("sockname")[1] for s in servers]
    for i, server in enumerate(servers[1:], 1):
        await server.bootstrap([("127.0.0.1", ports[random.Random(i).randrange(i)])])
    for server in servers:  # a second pass: every table sees the whole network
        await server.bootstrap([("127.0.0.1", ports[0])])

    async def put(i: int, value: bytes) -> object:
        key = os.urandom(16).hex()
        if not await servers[i].set(key, value):
            raise RuntimeError("kademlia set failed")
        return key

    async def get(i: int, key: object) -> bytes | None:
        got = await servers[i].get(key)
        return got if isinstance(got, bytes) else None

    try:
        out = await Workload(ops, seed).run(put, get)
        out["copies"] = servers[0].ksize
        return out
    finally:
        for server in servers:
            server.stop()


# --- the run --------------------------------------------------------------------------------


def child(system: str, ops: int, seed: int, synchronous: str, loop: str) -> dict[str, Any]:
    """Run one system in a fresh interpreter; its JSON figures."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        system,
        "--ops",
        str(ops),
        "--seed",
        str(seed),
        "--synchronous",
        synchronous,
        "--loop",
        loop,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{system} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run_child(system: str, ops: int, seed: int, synchronous: str, loop: str) -> None:
    if system == "ours":
        coro = run_ours(ops, seed, synchronous)
    elif system == "opendht":
        coro = run_opendht(ops, seed)
    else:
        coro = run_bmuller(ops, seed)
    if system == "ours" and loop == "uvloop":
        import uvloop

        result = uvloop.run(coro)
        result["loop"] = "uvloop"
    else:
        result = asyncio.run(coro)
        result["loop"] = "asyncio"
    print(json.dumps(result))


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the numeric figures; failed puts summed over the rounds (every one shows)."""
    out: dict[str, Any] = {}
    for name, value in rounds[0].items():
        if name.startswith(("put_failures", "get_failures")):
            out[name] = sum(r[name] for r in rounds)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = round(statistics.median(r[name] for r in rounds), 2)
        else:
            out[name] = value
    for r in rounds:
        for name, value in r.items():
            if name.startswith(("first_put_failure", "first_get_failure")):
                out.setdefault(name, value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=SYSTEMS, action="append")
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="our event loop (auto: uvloop when installed, as `lumera-p2p run` does)",
    )
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    loop = args.loop
    if loop == "auto":
        try:
            import uvloop  # noqa: F401

            loop = "uvloop"
        except ImportError:
            loop = "asyncio"
    if args.child:
        run_child(args.child, args.ops, args.seed, args.synchronous, loop)
        return
    systems = list(args.only or SYSTEMS)
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    for r in range(args.rounds):
        order = systems[r % len(systems) :] + systems[: r % len(systems)]
        for system in order:
            runs[system].append(child(system, args.ops, args.seed + r, args.synchronous, loop))
            if not args.json:
                print(f"round {r + 1}: {system} {runs[system][-1]}", file=sys.stderr)
    result: dict[str, Any] = {
        "nodes": NODES,
        "value_bytes": VALUE_BYTES,
        "ops": args.ops,
        "rounds": args.rounds,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    summary = {s: medians(runs[s]) for s in systems}
    result.update(summary)
    if "ours" in summary:
        ours = summary["ours"]
        for peer in (s for s in systems if s != "ours"):
            theirs = summary[peer]
            for name in ("puts_s", "gets_s", "puts_s_32", "gets_s_32"):
                if theirs.get(name):
                    result[f"{name}_vs_{peer}_ratio"] = round(ours[name] / theirs[name], 3)
            for name in ("cpu_ms_per_put", "cpu_ms_per_get"):
                if ours.get(name):  # higher is better: theirs ÷ ours
                    result[f"{name}_vs_{peer}_ratio"] = round(theirs[name] / ours[name], 3)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{NODES} nodes, {VALUE_BYTES}-byte values, {args.ops} ops, medians of {args.rounds}")
    columns = ("puts_s", "gets_s", "puts_s_32", "gets_s_32", "put_p99_ms", "cpu_ms_per_put")
    print(f"  {'system':10}" + "".join(f"{c:>16}" for c in columns))
    for system in systems:
        row = summary[system]
        print(f"  {system:10}" + "".join(f"{row.get(c, 0):>16}" for c in columns))
    for system in systems:
        failed = {k: v for k, v in summary[system].items() if "failure" in k and v}
        if failed:
            print(f"  {system} failures: {failed}")
    for name, value in result.items():
        if name.endswith("_ratio"):
            print(f"  {name} {value}")
    if "ours" in summary:
        print(f"  ours: RPCs per put {summary['ours']['rpcs_per_put_by_type']}")


if __name__ == "__main__":
    main()
