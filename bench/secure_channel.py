"""Throughput of the secure channel beside a plain asyncio loopback socket.

Both cases move the same bytes over 127.0.0.1 with the sender and the receiver in separate
processes (multiprocessing), writing 1 MiB chunks with ``drain`` and reading 1 MiB at a time.
The plain case is asyncio streams with their defaults (``open_connection``/``start_server``);
the secure case is ``secure_connect``/``start_secure_server`` after a real handshake. Each figure
is timed by the receiver from its first to its last byte; runs alternate plain/secure and the
medians are reported.

Reference: the plain figure is ARCHITECTURE.md's "loopback TCP, asyncio streams, one
connection" (1,156 MB/s on the 2-core box); the target is secure/plain >= 0.45, with ~0.5 as
the ceiling on 2 cores (each process does its socket work plus one AEAD pass).

    python bench/secure_channel.py [--mib 2048] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext

from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.secure.channel import (
    IncomingConnection,
    secure_connect,
    start_secure_server,
)
from lumera_p2p.secure.handshake import StaticPeerVerifier

CHUNK = 1024 * 1024
_DEADLINE = 80.0  # seconds; the whole script must stop by itself well under 90 s


def _keys() -> tuple[PrivateKey, PrivateKey]:
    return (
        PrivateKey(hashlib.sha256(b"bench client").digest()),
        PrivateKey(hashlib.sha256(b"bench server").digest()),
    )


async def _receive(kind: str, port_out: Connection, nbytes: int) -> float:
    client_key, server_key = _keys()
    verifier = StaticPeerVerifier([client_key.address, server_key.address])
    loop = asyncio.get_running_loop()
    result: asyncio.Future[float] = loop.create_future()
    tasks: set[asyncio.Task[None]] = set()

    async def consume(read: Callable[[int], Awaitable[bytes]]) -> float:
        got = 0
        start = 0.0
        while got < nbytes:
            data = await read(CHUNK)
            if not data:
                raise ConnectionError(f"sender stopped after {got} bytes")
            if not got:
                start = time.perf_counter()
            got += len(data)
        return time.perf_counter() - start

    async def handle_plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        elapsed = await consume(reader.read)
        writer.close()
        await writer.wait_closed()
        result.set_result(elapsed)

    async def handle_secure(conn: IncomingConnection) -> None:
        stream = await conn.handshake()
        elapsed = await consume(stream.read)
        stream.close()
        await stream.wait_closed()
        result.set_result(elapsed)

    def on_connection(conn: IncomingConnection) -> None:
        task = loop.create_task(handle_secure(conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    if kind == "secure":
        server = await start_secure_server(on_connection, "127.0.0.1", 0, server_key, verifier)
    else:
        server = await asyncio.start_server(handle_plain, "127.0.0.1", 0)
    port_out.send(server.sockets[0].getsockname()[1])
    async with asyncio.timeout(_DEADLINE):
        elapsed = await result
    server.close()
    return elapsed


async def _send(kind: str, port: int, nbytes: int) -> None:
    client_key, server_key = _keys()
    verifier = StaticPeerVerifier([client_key.address, server_key.address])
    chunk = os.urandom(CHUNK)
    async with asyncio.timeout(_DEADLINE):
        if kind == "secure":
            stream = await secure_connect(
                "127.0.0.1", port, client_key, server_key.address, verifier
            )
            sent = 0
            while sent < nbytes:
                stream.write(chunk)
                await stream.drain()
                sent += len(chunk)
            await stream.read(1)  # the receiver closes when it has everything
            stream.close()
            await stream.wait_closed()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            sent = 0
            while sent < nbytes:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            await reader.read(1)
            writer.close()
            await writer.wait_closed()


def _receiver_main(kind: str, port_out: Connection, result_out: Connection, nbytes: int) -> None:
    result_out.send(asyncio.run(_receive(kind, port_out, nbytes)))


def _sender_main(kind: str, port: int, nbytes: int) -> None:
    asyncio.run(_send(kind, port, nbytes))


def run_once(ctx: SpawnContext, kind: str, nbytes: int) -> float:
    """One transfer of ``nbytes``; returns MB/s as timed by the receiver."""
    port_recv, port_send = ctx.Pipe(duplex=False)
    res_recv, res_send = ctx.Pipe(duplex=False)
    receiver = ctx.Process(target=_receiver_main, args=(kind, port_send, res_send, nbytes))
    procs = [receiver]
    receiver.start()
    try:
        if not port_recv.poll(30):
            raise RuntimeError("receiver did not start")
        port = port_recv.recv()
        sender = ctx.Process(target=_sender_main, args=(kind, port, nbytes))
        procs.append(sender)
        sender.start()
        if not res_recv.poll(_DEADLINE):
            raise RuntimeError(f"{kind} transfer did not finish")
        elapsed: float = res_recv.recv()
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return nbytes / elapsed / 1e6


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print it (or one JSON object with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=2048, help="MiB per transfer (default 2048)")
    parser.add_argument("--runs", type=int, default=5, help="transfers per case (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    nbytes = args.mib * CHUNK
    ctx = mp.get_context("spawn")
    plain: list[float] = []
    secure: list[float] = []
    started = time.monotonic()
    for _ in range(args.runs):
        plain.append(run_once(ctx, "plain", nbytes))
        secure.append(run_once(ctx, "secure", nbytes))
    plain = [round(x, 1) for x in plain]
    secure = [round(x, 1) for x in secure]
    plain_mb_s = statistics.median(plain)
    secure_mb_s = statistics.median(secure)
    ratio = secure_mb_s / plain_mb_s
    figures = {
        "mib_per_transfer": args.mib,
        "runs": args.runs,
        "cpu_count": os.cpu_count(),
        "plain_mb_s": round(plain_mb_s, 1),
        "secure_mb_s": round(secure_mb_s, 1),
        "plain_runs_mb_s": plain,
        "secure_runs_mb_s": secure,
        "secure_vs_plain_ratio": round(ratio, 3),
        "target_ratio": 0.45,
        "reference_plain_mb_s": 1156,
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"plain asyncio loopback : {plain_mb_s:8.1f} MB/s  runs {plain}")
        print(f"secure channel         : {secure_mb_s:8.1f} MB/s  runs {secure}")
        print(f"secure / plain         : {ratio:8.3f}       target >= 0.45")
        print("reference (ARCHITECTURE.md): plain asyncio streams 1,156 MB/s on this box")
    return 0


if __name__ == "__main__":
    sys.exit(main())
