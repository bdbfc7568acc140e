"""A legitimate client's success and latency, and the node's peak RSS, during each attack of
issue 13, beside the same client's figures on the same node without the attack.

Each attack gets a fresh node in its own process (``lumera-p2p run --config``, the limits in
the config's ``server`` section), a static registry that lists the node, the legitimate client
and the attackers, and its own data directory, preloaded with values where the attack reads
them. The
legitimate client makes new connections (TCP, handshake, Ping, then FindValue of a stored
value; StoreData of a fresh value during the disk attacks), first without the attack, then
while it runs. The node's peak RSS is its ``VmHWM`` from ``/proc``.

Attacks (sizes as in the issue; ``--scale`` shrinks the large ones for a quick run):

* ``lockout``: 100 silent TCP connections from 127.0.0.2 and 127.0.0.3, re-opened as soon as
  they are dropped; 60 new legitimate connections meanwhile (the issue: 0 of 60 got in);
* ``batch_get``: 4 concurrent BatchGetValues of 20,000 keys, repeated, from one peer;
* ``partial_frames``: 6 frames declared as 250 MB, sent but for their last byte and held, from
  two peers (three each), re-sent when dropped;
* ``big_store``: one BatchStoreData of 380 MB;
* ``write_flood``: StoreData of 1 MiB values at 23 MB/s from one peer;
* ``replicate``: 10 Replicate requests of 20,000 keys from one peer.

``*_ratio`` fields are under attack ÷ without for success, and without ÷ under attack for
latency, so that, as in every benchmark here, higher is better and 1.0 means unaffected
(``latency_slowdown`` is the plain under-attack ÷ without).

    python bench/abuse.py [--attacks lockout,batch_get,...] [--scale 1.0] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.content import digest
from lumera_p2p.errors import ProtocolError
from lumera_p2p.identity.keyring import Keyring
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.localnet import free_ports
from lumera_p2p.secure import SecureStream, StaticPeerVerifier, secure_connect
from lumera_p2p.store import LocalStore
from lumera_p2p.wire.messages import (
    HEADER_SIZE,
    BatchGetValuesRequest,
    BatchStoreDataRequest,
    FindValueRequest,
    FindValueResponse,
    KeyValWithClosest,
    Message,
    MessageType,
    Node,
    ReplicateDataRequest,
    StoreDataRequest,
    StoreDataResponse,
    decode_body,
    encode_message,
    frame_header,
    parse_header,
)

MIB = 1024 * 1024
HOST = "127.0.0.1"
HERE = Path(__file__).resolve()
#: Seconds between two new connections of one lane of the legitimate client.
PACE = 0.2
ATTACKS = ("lockout", "batch_get", "partial_frames", "big_store", "write_flood", "replicate")

#: The node's limits in every run: a 512 MiB budget (the issue's bound is budget + 300 MiB),
#: of which one peer may hold 384 MiB (enough for the 380 MB BatchStoreData).
BUDGET = 512 * MIB
#: Per-peer quotas, small enough that the attacks pass them within seconds.
WRITE_QUOTA = 64 * MIB
QUOTA_WINDOW = 10.0
REPLICATE_QUOTA = 40_000
SERVER: dict[str, Any] = {
    "memory_budget": BUDGET,
    "memory_budget_per_peer": 384 * MIB,
    "memory_wait": 10.0,
}
#: The ``server`` quota keys of the disk attacks' nodes (the others run with the defaults).
QUOTAS: dict[str, Any] = {
    "write_quota_bytes": WRITE_QUOTA,
    "quota_window": QUOTA_WINDOW,
    "replicate_quota_keys": REPLICATE_QUOTA,
}


def key(label: str) -> PrivateKey:
    return PrivateKey(hashlib.sha256(label.encode()).digest())


LEGIT = key("abuse bench: legitimate client")
ATTACKERS = [key(f"abuse bench: attacker {i}") for i in range(2)]


def value(i: int, size: int) -> bytes:
    """The ``i``-th preloaded value (the node and the attackers compute the same ones)."""
    seed = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=64).digest()
    return (seed * (size // 64 + 1))[:size]


# --- the node in its own process -----------------------------------------------------------------


@dataclass
class Network:
    """Files for one node, and who it admits."""

    directory: Path
    config: Path
    address: str
    port: int
    closed_port: int  # where the client and attackers claim to listen (nothing does)


def write_network(directory: Path, server: dict[str, Any]) -> Network:
    ring = Keyring(directory / "keys", "test")
    node_key = PrivateKey.generate()[0]
    address = ring.add("node", node_key).address
    port, closed_port = free_ports(2)
    peers = [LEGIT, *ATTACKERS]
    registry = StaticRegistry(
        [Supernode(address, SupernodeState.ACTIVE, HOST, port, state_height=1)]
        + [Supernode(k.address, SupernodeState.ACTIVE, HOST, closed_port, 1) for k in peers]
    )
    registry.write(directory / "registry.yml")
    config = {
        "key_name": "node",
        "p2p": {
            "listen_address": HOST,
            "port": port,
            "data_dir": "data",
            "allow_private_peers": True,
        },
        "keyring": {"backend": "test", "dir": "keys"},
        "lumera": {"registry_file": "registry.yml"},
        "server": server,
        "log": {"level": "warning", "file": "node.log"},
    }
    path = directory / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return Network(directory, path, address, port, closed_port)


async def preload(net: Network, count: int, size: int) -> None:
    """Store the first ``count`` values of ``size`` bytes in the node's data directory."""
    async with await LocalStore.open(net.directory / "data") as store:
        for start in range(0, count, 200):
            await store.store_batch([value(i, size) for i in range(start, min(count, start + 200))])


class NodeProcess:
    """The node under test: ``lumera-p2p run`` in its own process."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lumera_p2p", "run", "--config", str(net.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the node accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                log = self.net.directory / "node.log"
                raise RuntimeError(f"the node exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.net.port), 1):
                return
            time.sleep(0.1)
        raise RuntimeError("the node did not start listening")

    def status(self, field_name: str) -> int:
        """A ``/proc/<pid>/status`` figure in bytes (``VmRSS``, ``VmHWM``)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field_name} for {self.proc.pid}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- talking to the node -------------------------------------------------------------------------


def sender(peer: PrivateKey, net: Network) -> Node:
    return Node(id=peer.address.encode(), ip=HOST, port=net.closed_port, version="v2.6.2")


def message(peer: PrivateKey, net: Network, mtype: MessageType, data: Any = None) -> Message:
    return Message(sender=sender(peer, net), message_type=int(mtype), data=data)


#: Where the attackers of the memory and disk attacks connect from (the lockout attack uses
#: 127.0.0.2 and 127.0.0.3); the legitimate client's lanes use 127.0.0.10 and up, so that
#: neither spends the other's per-address connection rate.
ATTACKER_ADDRESS = "127.0.0.5"


async def connect(
    net: Network, peer: PrivateKey, source: str = ATTACKER_ADDRESS, timeout: float = 5.0
) -> SecureStream:
    verifier = StaticPeerVerifier([net.address, LEGIT.address, *(a.address for a in ATTACKERS)])
    return await secure_connect(
        HOST, net.port, peer, net.address, verifier, timeout=timeout, local_addr=(source, 0)
    )


async def read_answer(stream: SecureStream, decode_limit: int = 64 * MIB) -> tuple[int, Any]:
    """The next answer's size and its decoded ``Data`` (None if larger than ``decode_limit``:
    the attackers only want the node to build and send it)."""
    header = b""
    while len(header) < HEADER_SIZE:
        chunk = await stream.read(HEADER_SIZE - len(header))
        if not chunk:
            raise ConnectionResetError("closed before an answer")
        header += chunk
    length = parse_header(header)
    parts: list[bytes] = []
    got = 0
    while got < length:
        chunk = await stream.read(min(length - got, MIB))
        if not chunk:
            raise ConnectionResetError("closed inside an answer")
        got += len(chunk)
        if length <= decode_limit:
            parts.append(chunk)
    if length > decode_limit:
        return length, None
    return length, decode_body(b"".join(parts)).data


async def rpc(stream: SecureStream, request: Message, decode_limit: int = 64 * MIB) -> Any:
    stream.write(encode_message(request))
    await stream.drain()
    return (await read_answer(stream, decode_limit))[1]


def ok(data: Any) -> bool:
    status = getattr(data, "status", None)
    return status is not None and status.result == 0


# --- the legitimate client -----------------------------------------------------------------------


@dataclass
class Probes:
    """Outcomes of the legitimate client's new connections."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.latencies) + self.failures

    @property
    def success(self) -> float:
        return len(self.latencies) / self.total if self.total else 0.0

    @property
    def p50_ms(self) -> float:
        return 1000 * statistics.median(self.latencies) if self.latencies else float("nan")


async def probe(
    net: Network, target: bytes, store: bool, n: int, timeout: float, source: str
) -> float:
    """One new connection: handshake, Ping, FindValue (and StoreData); its seconds."""
    started = time.perf_counter()
    async with asyncio.timeout(timeout):
        stream = await connect(net, LEGIT, source, timeout=timeout)
        try:
            await rpc(stream, message(LEGIT, net, MessageType.PING))
            found = await rpc(
                stream, message(LEGIT, net, MessageType.FIND_VALUE, FindValueRequest(target))
            )
            if not (isinstance(found, FindValueResponse) and found.value):
                raise RuntimeError("FindValue did not return the value")
            if store:
                data = f"legitimate value {n} {time.time_ns()}".encode() * 100
                stored = await rpc(
                    stream,
                    message(LEGIT, net, MessageType.STORE_DATA, StoreDataRequest(data, 0)),
                )
                if not (isinstance(stored, StoreDataResponse) and ok(stored)):
                    raise RuntimeError(f"StoreData refused: {stored}")
        finally:
            stream.abort()
    return time.perf_counter() - started


async def run_probes(
    net: Network,
    target: bytes,
    *,
    count: int | None = None,
    duration: float | None = None,
    store: bool = False,
    concurrency: int = 3,
) -> Probes:
    """``count`` new connections, or as many as ``duration`` seconds allow, ``concurrency`` at
    a time, each lane from its own address and ``PACE`` seconds after its last one ended (a
    few a second: a peer's pace, well inside the per-address connection rate)."""
    result = Probes()
    end = time.monotonic() + duration if duration is not None else None
    numbers = iter(range(count if count is not None else 1 << 30))

    async def lane(source: str) -> None:
        for n in numbers:
            if end is not None and time.monotonic() >= end:
                return
            try:
                result.latencies.append(await probe(net, target, store, n, 10.0, source))
            except Exception as exc:  # a failed probe is the figure being measured
                result.failures += 1
                name = type(exc).__name__
                result.errors[name] = result.errors.get(name, 0) + 1
            await asyncio.sleep(PACE)

    await asyncio.gather(*(lane(f"127.0.0.{10 + i}") for i in range(concurrency)))
    return result


# --- the attacks ---------------------------------------------------------------------------------

Attack = Callable[[Network, asyncio.Event, dict[str, Any]], Awaitable[None]]


async def until(stop: asyncio.Event, work: Awaitable[Any]) -> bool:
    """Run ``work`` until it ends (True) or ``stop`` is set (False, ``work`` cancelled)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return False
    with contextlib.suppress(BaseException):
        task.result()
    return True


async def lockout(net: Network, stop: asyncio.Event, out: dict[str, Any]) -> None:
    out.update(opened=0, dropped=0)

    async def hold(source: str) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    HOST, net.port, local_addr=(source, 0)
                )
            except OSError:
                await asyncio.sleep(0.05)
                continue
            out["opened"] += 1
            if await until(stop, reader.read()):
                out["dropped"] += 1
            writer.transport.abort()
            # Re-opened at once; the short pause only keeps this machine's two cores usable.
            await asyncio.sleep(0.02)

    await asyncio.gather(*(hold(src) for src in ("127.0.0.2", "127.0.0.3") for _ in range(50)))


def preload_keys(count: int, size: int) -> list[str]:
    return [digest(value(i, size)).hex() for i in range(count)]


async def batch_get(net: Network, stop: asyncio.Event, out: dict[str, Any]) -> None:
    keys = out.pop("_keys")
    request = message(
        ATTACKERS[0],
        net,
        MessageType.BATCH_GET_VALUES,
        BatchGetValuesRequest({k: KeyValWithClosest() for k in keys}),
    )
    frame = encode_message(request)
    out.update(answers=0, failed=0, answer_mib=0.0, closed=0)

    async def loop() -> None:
        while not stop.is_set():
            try:
                stream = await connect(net, ATTACKERS[0])
            except (OSError, ProtocolError):
                out["closed"] += 1
                await asyncio.sleep(0.2)
                continue
            try:
                while not stop.is_set():
                    stream.write(frame)
                    await stream.drain()
                    size, _ = await read_answer(stream, decode_limit=0)
                    out["answers"] += 1
                    out["answer_mib"] = max(out["answer_mib"], round(size / MIB, 1))
            except (OSError, ProtocolError):
                out["closed"] += 1
            finally:
                stream.abort()

    await asyncio.gather(*(until(stop, loop()) for _ in range(4)))


async def partial_frames(net: Network, stop: asyncio.Event, out: dict[str, Any]) -> None:
    size = out.pop("_frame")
    out.update(held=0, closed=0)
    chunk = bytes(MIB)

    async def one(peer: PrivateKey) -> None:
        while not stop.is_set():
            try:
                stream = await connect(net, peer)
                stream.write(frame_header(size))
                sent = 0
                while sent < size - 1:
                    n = min(MIB, size - 1 - sent)
                    stream.write(chunk[:n])
                    await stream.drain()
                    sent += n
                out["held"] += 1
                while await stream.read(65536):  # hold it until the node drops it
                    pass
            except (OSError, ProtocolError):
                pass
            out["closed"] += 1
            with contextlib.suppress(Exception):
                stream.abort()
            await asyncio.sleep(0.2)

    await asyncio.gather(*(until(stop, one(p)) for p in ATTACKERS for _ in range(3)))


async def big_store(net: Network, stop: asyncio.Event, out: dict[str, Any]) -> None:
    size = out.pop("_size")
    values = [os.urandom(MIB) for _ in range(size // MIB)]
    request = message(
        ATTACKERS[0], net, MessageType.BATCH_STORE_DATA, BatchStoreDataRequest(values, 1)
    )
    frame = encode_message(request)
    del values, request
    started = time.perf_counter()
    try:
        stream = await connect(net, ATTACKERS[0])
        stream.write(frame)
        await stream.drain()
        del frame
        _, data = await read_answer(stream)
        out["accepted"] = ok(data)
        out["answer"] = getattr(getattr(data, "status", None), "err_msg", "") or "OK"
        stream.abort()
    except (OSError, ProtocolError) as exc:
        out["accepted"] = False
        out["answer"] = f"connection closed: {exc}"
    out["seconds"] = round(time.perf_counter() - started, 2)
    await stop.wait()


async def write_flood(net: Network, stop: asyncio.Event, out: dict[str, Any]) -> None:
    rate = out.pop("_rate")
    out.update(stored=0, refused=0, closed=0, offered_mib=0.0)
    started = time.perf_counter()
    n = 0
    stream = await connect(net, ATTACKERS[0])
    try:
        while not stop.is_set():
            data = n.to_bytes(8, "big") + os.urandom(MIB - 8)
            n += 1
            try:
                answer = await rpc(
                    stream,
                    message(ATTACKERS[0], net, MessageType.STORE_DATA, StoreDataRequest(data, 0)),
                )
            except (OSError, ProtocolError):
                out["closed"] += 1
                stream = await connect(net, ATTACKERS[0])
                continue
            out["offered_mib"] += 1
            out["stored" if ok(answer) else "refused"] += 1
            # Keep to the rate: 1 MiB every 1/rate seconds.
            ahead = n / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        stream.abort()
    out["offered_mb_s"] = round(out["offered_mib"] * MIB / 1e6 / (time.perf_counter() - started), 1)


async def replicate(net: Network, stop: asyncio.Event, out: dict[str, Any]) -> None:
    requests, count = out.pop("_requests"), out.pop("_keys_per_request")
    out.update(accepted=0, refused=0)
    stream = await connect(net, ATTACKERS[0])
    try:
        for _ in range(requests):
            keys = [os.urandom(32).hex() for _ in range(count)]
            answer = await rpc(
                stream,
                message(ATTACKERS[0], net, MessageType.REPLICATE, ReplicateDataRequest(keys)),
            )
            out["accepted" if ok(answer) else "refused"] += 1
    finally:
        stream.abort()
    db = net.directory / "data" / "data001.sqlite3"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT COUNT(*) FROM replication_keys WHERE id = ?", (ATTACKERS[0].address,)
        ).fetchone()[0]
    out["replication_keys_rows"] = rows
    await stop.wait()


# --- one run -------------------------------------------------------------------------------------


@dataclass
class Plan:
    attack: Attack
    preload: tuple[int, int]
    params: dict[str, Any]
    #: New legitimate connections while the attack runs (a fixed number), or for how long.
    probes: int | None = None
    duration: float = 15.0
    store: bool = False
    ramp: float = 2.0
    #: Seconds the attack runs after the probes end (an attack that must finish first).
    settle: float = 0.0
    #: The node's per-peer quota keys of the ``server`` section; the defaults when empty.
    quotas: dict[str, Any] = field(default_factory=dict)


def plans(scale: float) -> dict[str, Plan]:
    keys = max(100, int(20_000 * scale))
    return {
        "lockout": Plan(lockout, (10, 1024), {}, probes=60),
        "batch_get": Plan(batch_get, (keys, 16 * 1024), {"_keys": preload_keys(keys, 16 * 1024)}),
        "partial_frames": Plan(
            partial_frames, (10, 1024), {"_frame": int(250e6 * scale)}, ramp=4.0
        ),
        "big_store": Plan(big_store, (10, 1024), {"_size": int(380e6 * scale) // MIB * MIB}),
        "write_flood": Plan(
            write_flood, (10, 1024), {"_rate": 23e6 / MIB}, store=True, quotas=QUOTAS
        ),
        "replicate": Plan(
            replicate,
            (10, 1024),
            {"_requests": 10, "_keys_per_request": keys},
            store=True,
            quotas=QUOTAS,
        ),
    }


async def sample_rss(node: NodeProcess, stop: asyncio.Event, peak: list[int]) -> None:
    """Peaks of VmRSS, and of its anonymous and file-backed parts, every 50 ms."""
    while not stop.is_set() and node.alive():
        with contextlib.suppress(OSError, RuntimeError):
            peak[0] = max(peak[0], node.status("VmRSS"))
            peak[1] = max(peak[1], node.status("RssAnon"))
            peak[2] = max(peak[2], node.status("RssFile"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def run_one(name: str, plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"abuse-{name}-") as tmp:
        net = write_network(Path(tmp), {**SERVER, **plan.quotas})
        await preload(net, *plan.preload)
        node = NodeProcess(net)
        try:
            await asyncio.to_thread(node.wait_ready)
            target = digest(value(0, plan.preload[1]))
            baseline = await run_probes(net, target, count=30, store=plan.store)
            rss_before = node.status("VmRSS")
            stop, done = asyncio.Event(), asyncio.Event()
            out: dict[str, Any] = dict(plan.params)
            peak = [0, 0, 0]
            sampler = asyncio.create_task(sample_rss(node, done, peak))
            attack = asyncio.create_task(plan.attack(net, stop, out))
            await asyncio.sleep(plan.ramp)
            during = await run_probes(
                net,
                target,
                count=plan.probes,
                duration=None if plan.probes else plan.duration,
                store=plan.store,
            )
            await asyncio.sleep(plan.settle)
            stop.set()
            try:
                await asyncio.wait_for(attack, 120)
            except Exception as exc:  # the attack's own failure is reported, not fatal
                out["attack_error"] = f"{type(exc).__name__}: {exc}"
            alive = node.alive()
            # Still serving after the attack?
            after = await run_probes(net, target, count=5) if alive else Probes(failures=5)
            done.set()
            await sampler
            hwm = node.status("VmHWM") if node.alive() else peak[0]
        finally:
            node.stop()
    figures: dict[str, Any] = {
        "success_without": round(baseline.success, 3),
        "success_under_attack": round(during.success, 3),
        "success_ratio": round(during.success / baseline.success, 3) if baseline.success else 0.0,
        "latency_p50_without_ms": round(baseline.p50_ms, 1),
        "latency_p50_under_attack_ms": round(during.p50_ms, 1),
        "latency_ratio": round(baseline.p50_ms / during.p50_ms, 3) if during.latencies else 0.0,
        "latency_slowdown": round(during.p50_ms / baseline.p50_ms, 2) if during.latencies else None,
        "probes": during.total,
        "probe_errors": during.errors,
        "probe_errors_without": baseline.errors,
        "node_alive": alive,
        "served_after": after.success,
        "rss_before_mib": round(rss_before / MIB, 1),
        "peak_rss_mib": round(max(hwm, peak[0]) / MIB, 1),
        "peak_rss_anon_mib": round(peak[1] / MIB, 1),
        "peak_rss_file_mib": round(peak[2] / MIB, 1),
        "budget_mib": BUDGET // MIB,
        "rss_within_budget_plus_300": max(hwm, peak[0]) <= BUDGET + 300 * MIB,
    }
    figures.update({k: v for k, v in out.items() if not k.startswith("_")})
    return figures


def checks(results: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """The issue's "must show", for the attacks that ran."""
    out: dict[str, bool] = {}
    if "lockout" in results:
        out["lockout_95_percent"] = results["lockout"]["success_under_attack"] >= 0.95
    for name in ("batch_get", "partial_frames", "big_store"):
        if name in results:
            r = results[name]
            out[f"{name}_rss_bounded_and_serving"] = bool(
                r["rss_within_budget_plus_300"] and r["node_alive"] and r["served_after"] == 1.0
            )
    if "write_flood" in results:
        r = results["write_flood"]
        out["write_flood_refused_others_served"] = bool(
            r["refused"] > 0 and r["success_under_attack"] == 1.0
        )
    if "replicate" in results:
        r = results["replicate"]
        out["replicate_refused_rows_bounded"] = bool(
            r["refused"] > 0
            and r["replication_keys_rows"] <= REPLICATE_QUOTA
            and r["success_under_attack"] == 1.0
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the large attacks")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    chosen = [a for a in args.attacks.split(",") if a]
    unknown = set(chosen) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attacks: {', '.join(sorted(unknown))}")
    all_plans = plans(args.scale)
    results: dict[str, dict[str, Any]] = {}
    for name in chosen:
        results[name] = asyncio.run(run_one(name, all_plans[name]))
        if not args.json:
            print(name, json.dumps(results[name]), flush=True)
    summary = {
        "server": SERVER,
        "quotas_of_the_disk_attacks": QUOTAS,
        "scale": args.scale,
        "attacks": results,
        "checks": checks(results),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for check, passed in summary["checks"].items():
            print(f"{check}: {'yes' if passed else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
