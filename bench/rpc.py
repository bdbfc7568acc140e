"""Per-RPC cost by message type between two of our nodes, beside a raw TCP ping-pong.

Ours: two ``lumera-p2p localnet`` nodes in this process (127.0.0.2 and 127.0.0.3, real TCP,
the secure channel after a real handshake, the SQLite store), node A sending sequential RPCs
to node B through its ``TcpTransport``: PING, STORE_DATA (1 KiB), BATCH_FIND_NODE (one
target, B answers with the nodes it knows) and FIND_VALUE (a 1 KiB value B holds).

Reference, measured in the same run: a raw ping-pong on the same event loop (uvloop if
installed), one ``asyncio.Protocol`` at each end on 127.0.0.2 -> 127.0.0.3, sending the same
request and answer sizes as ours did (a fixed frame each way, no encryption, no codec): what
the loop and the kernel cost per round trip, the floor under any RPC.

Per type and per side: wall us/RPC, main-thread CPU us/RPC (``thread_time``: both ends are on
this thread; STORE_DATA's commit runs in the store's writer thread, counted in the process
figure) and process CPU us/RPC; ``*_ratio`` fields are reference / ours (higher is better).
The medians of ``--rounds`` rounds (ours and the reference alternate).

    python bench/rpc.py [--rpcs 1000] [--rounds 3] [--nodes 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lumera_p2p.content import content_key, digest
from lumera_p2p.localnet import create_localnet, load_configs, start_nodes
from lumera_p2p.wire.messages import (
    BatchFindNodeRequest,
    FindValueRequest,
    MessageData,
    MessageType,
    StoreDataRequest,
)

#: The whole script stops by itself within this many seconds (a hang is an error) ...
DEADLINE = 55.0
#: ... and starts no further round after this many.
ROUNDS_UNTIL = 25.0
WARMUP = 100
VALUE_BYTES = 1024
CLIENT_HOST = "127.0.0.2"
SERVER_HOST = "127.0.0.3"

Case = Callable[[], tuple[MessageType, MessageData | None]]


def cases(stored: bytes) -> dict[str, Case]:
    """The four request types and how to make each request."""
    target = digest(stored)
    return {
        "ping": lambda: (MessageType.PING, None),
        "store_data": lambda: (
            MessageType.STORE_DATA,
            StoreDataRequest(data=os.urandom(VALUE_BYTES)),
        ),
        "batch_find_node": lambda: (
            MessageType.BATCH_FIND_NODE,
            BatchFindNodeRequest(hashed_target=[os.urandom(32)]),
        ),
        "find_value": lambda: (MessageType.FIND_VALUE, FindValueRequest(target=target)),
    }


class Timing:
    """Wall, main-thread CPU and process CPU of a block, per operation, in microseconds."""

    def __init__(self, ops: int) -> None:
        self.ops = ops
        self.wall = self.main = self.cpu = 0.0

    def __enter__(self) -> Timing:
        self._w, self._m, self._c = time.perf_counter(), time.thread_time(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        scale = 1e6 / self.ops
        self.wall = (time.perf_counter() - self._w) * scale
        self.main = (time.thread_time() - self._m) * scale
        self.cpu = (time.process_time() - self._c) * scale


# --- reference: a raw ping-pong -------------------------------------------------------------


class _Answerer(asyncio.Protocol):
    """Answers every ``request`` bytes received with ``answer`` bytes."""

    def __init__(self, request: int, answer: bytes) -> None:
        self._request = request
        self._answer = answer
        self._got = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got += len(data)
        while self._got >= self._request and self._transport is not None:
            self._got -= self._request
            self._transport.write(self._answer)


class _Asker(asyncio.Protocol):
    """Resolves ``waiter`` once ``expect`` bytes have arrived."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.expect = 0
        self._got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got += len(data)
        if self._got >= self.expect and self.waiter is not None:
            self._got -= self.expect
            waiter, self.waiter = self.waiter, None
            waiter.set_result(None)


async def reference(request: int, answer: int, rpcs: int) -> Timing:
    """``rpcs`` sequential round trips of ``request`` bytes out and ``answer`` bytes back."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Answerer(request, bytes(answer)), SERVER_HOST, 0)
    port = server.sockets[0].getsockname()[1]
    _, asker = await loop.create_connection(_Asker, SERVER_HOST, port, local_addr=(CLIENT_HOST, 0))
    payload = os.urandom(request)
    assert asker.transport is not None

    async def one() -> None:
        waiter = asker.waiter = loop.create_future()
        asker.expect = answer
        asker.transport.write(payload)  # type: ignore[union-attr]
        await waiter

    try:
        for _ in range(WARMUP):
            await one()
        with Timing(rpcs) as timing:
            for _ in range(rpcs):
                await one()
        return timing
    finally:
        asker.transport.close()
        server.close()
        await server.wait_closed()


# --- ours ------------------------------------------------------------------------------------


async def measure(rpcs: int, rounds: int, nodes_wanted: int) -> dict[str, Any]:
    """Both sides for every type, ``rounds`` times (fewer if time runs short); the medians."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        local = create_localnet(Path(tmp), nodes_wanted, fast_intervals=False)
        nodes = await start_nodes(load_configs(local))
        try:
            a, b = nodes[0], nodes[1]
            transport, peer = a.transport, b.node.me
            stored = os.urandom(VALUE_BYTES)
            await b.local_store(content_key(stored), stored)
            results: dict[str, dict[str, list[float]]] = {}
            sizes: dict[str, tuple[int, int]] = {}
            done = 0
            for _ in range(rounds):
                if done and time.monotonic() - started > ROUNDS_UNTIL:
                    break  # a slow (busy) machine: report the rounds measured
                done += 1
                for name, make in cases(stored).items():

                    async def call(make: Case = make) -> None:
                        mtype, data = make()
                        await transport.call(peer, a.node.request(mtype, peer, data), 5.0)

                    for _ in range(WARMUP):
                        await call()
                    sent, got = transport.stats.bytes_sent, transport.stats.bytes_received
                    with Timing(rpcs) as ours:
                        for _ in range(rpcs):
                            await call()
                    request = round((transport.stats.bytes_sent - sent) / rpcs)
                    answer = round((transport.stats.bytes_received - got) / rpcs)
                    sizes[name] = (request, answer)
                    raw = await reference(request, answer, rpcs)
                    figures = results.setdefault(name, {})
                    for key, value in (
                        ("us", ours.wall),
                        ("main_cpu_us", ours.main),
                        ("cpu_us", ours.cpu),
                        ("reference_us", raw.wall),
                        ("reference_cpu_us", raw.main),
                    ):
                        figures.setdefault(key, []).append(value)
        finally:
            await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
    out: dict[str, Any] = {
        "rpcs": rpcs,
        "rounds": done,
        "nodes": nodes_wanted,
        "loop": _loop_name(),
    }
    for name, figures in results.items():
        med = {key: statistics.median(values) for key, values in figures.items()}
        out[f"{name}_request_bytes"], out[f"{name}_answer_bytes"] = sizes[name]
        for key, value in med.items():
            out[f"{name}_{key}"] = round(value, 1)
        out[f"{name}_ratio"] = round(med["reference_us"] / med["us"], 3)
        out[f"{name}_cpu_ratio"] = round(med["reference_cpu_us"] / med["main_cpu_us"], 3)
    return out


def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def _run(rpcs: int, rounds: int, nodes: int) -> dict[str, Any]:
    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(DEADLINE):
            return await measure(rpcs, rounds, nodes)

    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(bounded())
    return uvloop.run(bounded())


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print it (or one JSON object with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpcs", type=int, default=1000, help="timed RPCs per type and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--nodes", type=int, default=2, help="localnet size (BATCH_FIND_NODE answers grow)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.rpcs < 1 or args.rounds < 1 or not 2 <= args.nodes <= 24:
        parser.error("--rpcs and --rounds must be at least 1, --nodes 2 to 24")
    out = _run(args.rpcs, args.rounds, args.nodes)
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"{args.rpcs} sequential RPCs per type, median of {out['rounds']} rounds, "
        f"{args.nodes} nodes ({out['loop']})"
    )
    print(
        f"{'type':16s} {'bytes out/in':>13s} {'us/rpc':>8s} {'cpu us':>8s} {'proc us':>8s}"
        f" {'raw us':>8s} {'raw cpu':>8s} {'ratio':>6s} {'cpu ratio':>9s}"
    )
    for name in cases(b""):
        sizes = f"{out[f'{name}_request_bytes']}/{out[f'{name}_answer_bytes']}"
        print(
            f"{name:16s} {sizes:>13s} {out[f'{name}_us']:8.1f} {out[f'{name}_main_cpu_us']:8.1f}"
            f" {out[f'{name}_cpu_us']:8.1f} {out[f'{name}_reference_us']:8.1f}"
            f" {out[f'{name}_reference_cpu_us']:8.1f} {out[f'{name}_ratio']:6.3f}"
            f" {out[f'{name}_cpu_ratio']:9.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
