"""put_file / get_file MB/s and peak RSS through a network of node processes, beside plain
store_batch / batch_retrieve of the same bytes measured in the same run.

A local network of ``--nodes`` processes on loopback addresses (``lumera-p2p run`` each, the store
nodes), plus the putting and the getting node, each a process of its own. The getting node is
listed as POSTPONED (routing-eligible, not store-eligible), so it holds no replica and every
byte it gets comes over the network. A file of ``--mib`` random MiB is put through one node and
got through the other; the copy must be byte-identical (BLAKE3 of both compared). Peak RSS of
every process is its ``VmHWM`` from ``/proc``.

The reference: the putting node's process stores the same bytes with plain ``store_batch``,
in batches of the same size, before the put; the getting node's process reads them back with
``batch_retrieve`` in groups of the same size (no manifest, no ledger, no file written).
Ratios are ours ÷ reference.

    python bench/files.py [--mib 256] [--nodes 8] [--json]
    python bench/files.py --mib 2048 --json          # the issue's must-show size
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import blake3
import yaml

from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.config import load_config
from lumera_p2p.content import content_key
from lumera_p2p.files import partial_paths
from lumera_p2p.files.ledger import LEDGER_FILE
from lumera_p2p.localnet import LocalNode, create_localnet
from lumera_p2p.service import P2P
from lumera_p2p.store.schema import DATA_DB
from lumera_p2p.store.timefmt import format_time, utcnow

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024


# --- inside a node process (``--role``) ---------------------------------------------------------


def peak_rss_mib(pid: int | str = "self") -> float:
    """``VmHWM`` of a process in MiB (its peak resident set)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def _chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        while data := f.read(size):
            yield data


def _stall(at: int) -> Any:
    """A progress callback that, past ``at`` bytes (0: never), blocks the process until it is
    killed: a transfer to be SIGKILLed half-way cannot finish first, however fast it runs."""
    if not at:
        return None

    def progress(done: int, total: int | None) -> None:
        if done >= at:
            time.sleep(3600)

    return progress


async def _role(args: argparse.Namespace) -> dict[str, Any]:
    node = await P2P.create(load_config(args.config))
    await node.start()
    try:
        deadline = time.monotonic() + 120
        while node.node.peer_count < args.peers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {node.node.peer_count} of {args.peers} peers")
            await asyncio.sleep(0.2)
            await node.sync_peers()
        options = node.file_options
        batch = options.chunk_size * options.store_batch_chunks
        out: dict[str, Any] = {"rss_at_start_mib": peak_rss_mib()}
        started = time.perf_counter()
        if args.role == "put":
            put = await node.put_file(Path(args.file), progress=_stall(args.stall_at))
            out.update(
                key=put.key,
                sent=put.sent,
                skipped=put.skipped,
                resent=put.resent,
                min_acks=put.min_acks,
            )
        elif args.role == "get":
            got = await node.get_file(args.key, Path(args.file), progress=_stall(args.stall_at))
            out.update(fetched=got.fetched_bytes, resumed=got.resumed_bytes)
        elif args.role == "store-batch":
            keys: list[str] = []
            for data in _chunks(Path(args.file), batch):
                step = options.chunk_size
                pieces = [data[i : i + step] for i in range(0, len(data), step)]
                await node.store_batch(pieces)
                keys.extend(content_key(p) for p in pieces)
            Path(args.key).write_text("\n".join(keys))
        elif args.role == "batch-retrieve":
            keys = Path(args.key).read_text().split()
            group = options.readahead_chunks
            for start in range(0, len(keys), group):
                wanted = keys[start : start + group]
                found = await node.batch_retrieve(wanted)
                if len(found) != len(set(wanted)):
                    raise RuntimeError(f"batch_retrieve found {len(found)} of {len(wanted)}")
        out["seconds"] = time.perf_counter() - started
        out["peak_rss_mib"] = peak_rss_mib()
        return out
    finally:
        await node.stop()


# --- the orchestrator ---------------------------------------------------------------------------


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 0.2).close()
    except OSError:
        return False
    return True


def _network(directory: Path, nodes: int) -> list[LocalNode]:
    """Keys, registry and configs; the last node is POSTPONED (it stores nothing)."""
    local = create_localnet(directory, nodes)
    StaticRegistry(
        [
            Supernode(
                n.address,
                SupernodeState.POSTPONED if i == nodes - 1 else SupernodeState.ACTIVE,
                n.host,
                n.port,
                state_height=1,
            )
            for i, n in enumerate(local)
        ]
    ).write(directory / "registry.yml")
    for n in local:  # quiet nodes: a benchmark measures, it does not log
        doc = yaml.safe_load(n.config_path.read_text())
        doc["log"] = {"level": "warning"}
        n.config_path.write_text(yaml.safe_dump(doc))
    return local


@contextmanager
def _store_nodes(local: list[LocalNode], log: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    sink = log.open("ab")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lumera_p2p", "run", "--config", str(n.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
        for n in local
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(_listening(n.host, n.port) for n in local):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the store nodes did not start")
            time.sleep(0.1)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sink.close()


def _role_command(
    role: str, config: Path, file: Path, key: str, peers: int, stall_at: int = 0
) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--role",
        role,
        "--config",
        str(config),
        "--file",
        str(file),
        "--key",
        key,
        "--peers",
        str(peers),
        "--stall-at",
        str(stall_at),
    ]


def _run_role(role: str, config: Path, file: Path, key: str, peers: int) -> dict[str, Any]:
    done = subprocess.run(
        _role_command(role, config, file, key, peers),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{role} failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _write_random(path: Path, mib: int) -> str:
    whole = blake3.blake3()
    with path.open("wb") as f:
        for _ in range(mib):
            block = os.urandom(MIB)
            whole.update(block)
            f.write(block)
    return whole.hexdigest()


def _hash(path: Path) -> str:
    whole = blake3.blake3()
    for block in _chunks(path, 4 * MIB):
        whole.update(block)
    return whole.hexdigest()


def measure(mib: int, nodes: int, directory: Path) -> dict[str, Any]:
    local = _network(directory / "net", nodes)
    putter, store, getter = local[0], local[1:-1], local[-1]
    source, copy = directory / "source.bin", directory / "copy.bin"
    digest = _write_random(source, mib)
    peers = nodes - 2
    with _store_nodes(store, directory / "nodes.log") as procs:
        keys = directory / "keys.txt"
        ref_store = _run_role("store-batch", putter.config_path, source, str(keys), peers)
        ref_get = _run_role("batch-retrieve", getter.config_path, source, str(keys), peers)
        put = _run_role("put", putter.config_path, source, "", peers)
        got = _run_role("get", getter.config_path, copy, put["key"], peers)
        store_rss = [peak_rss_mib(p.pid) for p in procs]
    identical = _hash(copy) == digest
    mb = mib * MIB / 1e6
    result = {
        "mib": mib,
        "nodes": nodes,
        "identical": identical,
        "put_mb_s": round(mb / put["seconds"], 1),
        "get_mb_s": round(mb / got["seconds"], 1),
        "store_batch_mb_s": round(mb / ref_store["seconds"], 1),
        "batch_retrieve_mb_s": round(mb / ref_get["seconds"], 1),
        "peak_rss_mib": {
            "putting_node": round(put["peak_rss_mib"], 1),
            "getting_node": round(got["peak_rss_mib"], 1),
            "store_nodes_max": round(max(store_rss), 1),
            "reference_store_batch": round(ref_store["peak_rss_mib"], 1),
            "reference_batch_retrieve": round(ref_get["peak_rss_mib"], 1),
        },
        "replicas_min": put["min_acks"],
        # Values sent again in a later store round (a receiver refused at first, its write
        # quota for instance); 0 when the pacer kept every batch under the receivers' quotas.
        "put_resent": put["resent"],
    }
    result["put_ratio"] = round(result["put_mb_s"] / result["store_batch_mb_s"], 3)
    result["get_ratio"] = round(result["get_mb_s"] / result["batch_retrieve_mb_s"], 3)
    ours = [result["peak_rss_mib"][k] for k in ("putting_node", "getting_node", "store_nodes_max")]
    result["peak_rss_max_mib"] = max(ours)
    return result


def _count(db: Path, sql: str, *args: object) -> int:
    """One number from a node's SQLite file, read beside the running node (WAL)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute(sql, args).fetchone()[0] or 0)
    except sqlite3.OperationalError:
        return 0  # the table is not created yet
    finally:
        conn.close()


def _kill_when(proc: subprocess.Popen[bytes], ready: Any, what: str) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (polled), as a crash would."""
    deadline = time.monotonic() + 1800
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"the process ended before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _settled(dbs: list[Path]) -> None:
    """Wait until no replica's newest write changes for a second (batches that reached them
    before the kill are committed)."""
    last: list[int] = []
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < 1.0:
        now = [_count(db, "SELECT count(*) FROM data") for db in dbs]
        if now != last:
            last, stable_since = now, time.monotonic()
        time.sleep(0.1)


def measure_resume(mib: int, nodes: int, directory: Path) -> dict[str, Any]:
    """A put and a get each SIGKILLed half-way, then run again: what the second runs sent."""
    local = _network(directory / "net-resume", nodes)
    putter, store, getter = local[0], local[1:-1], local[-1]
    source, copy = directory / "resume-source.bin", directory / "resume-copy.bin"
    digest = _write_random(source, mib)
    peers = nodes - 2
    ledger = putter.config_path.parent / "data" / LEDGER_FILE
    replicas = [n.config_path.parent / "data" / DATA_DB for n in store]
    chunk_size = load_config(putter.config_path).files.chunk_size
    chunks = -(-mib * MIB // chunk_size)
    # The killed runs block at three quarters (the kill comes at half, once it is reached).
    stall_at = mib * MIB * 3 // 4
    with _store_nodes(store, directory / "nodes-resume.log"):
        first = subprocess.Popen(
            _role_command("put", putter.config_path, source, "", peers, stall_at),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        rows = "SELECT count(*) FROM stored_chunks"
        _kill_when(first, lambda: _count(ledger, rows) >= chunks // 2, "half the chunks stored")
        recorded = _count(ledger, rows)
        _settled(replicas)
        restart = format_time(utcnow())
        put = _run_role("put", putter.config_path, source, "", peers)
        rewritten = [
            _count(db, "SELECT count(*) FROM data WHERE updatedAt >= ?", restart) for db in replicas
        ]
        held = [_count(db, "SELECT count(*) FROM data") for db in replicas]
        part, _ = partial_paths(copy)
        getting = subprocess.Popen(
            _role_command("get", getter.config_path, copy, put["key"], peers, stall_at),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        half = mib * MIB // 2
        _kill_when(
            getting, lambda: part.exists() and part.stat().st_size >= half, "half the file got"
        )
        partial = part.stat().st_size
        got = _run_role("get", getter.config_path, copy, put["key"], peers)
    return {
        "mib": mib,
        "chunks": chunks,
        "put_recorded_before_kill": recorded,
        "put_resumed_skipped": put["skipped"],
        "put_resumed_sent": put["sent"],
        "put_values": put["skipped"] + put["sent"],
        "replica_rows_rewritten_max": max(rewritten),
        "replica_rows_min": min(held),
        "get_partial_at_kill": partial,
        "get_resumed_bytes": got["resumed"],
        "get_resumed_fetched": got["fetched"],
        "resume_identical": _hash(copy) == digest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="size of the file")
    parser.add_argument("--nodes", type=int, default=8, help="node processes in all (min 4)")
    parser.add_argument("--dir", type=Path, help="work here (kept) instead of a temp dir")
    parser.add_argument(
        "--resume-mib",
        type=int,
        default=0,
        help="also kill a put and a get of this size half-way and run them again",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--peers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stall-at", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        print(json.dumps(asyncio.run(_role(args))))
        return
    if args.nodes < 4:
        parser.error("--nodes must be at least 4")

    def run(directory: Path) -> dict[str, Any]:
        found = measure(args.mib, args.nodes, directory) if args.mib else {}
        if args.resume_mib:
            found["resume"] = measure_resume(args.resume_mib, args.nodes, directory)
        return found

    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        result = run(args.dir)
    else:
        with tempfile.TemporaryDirectory(prefix="lumera-bench-files-") as tmp:
            result = run(Path(tmp))
    if args.json:
        print(json.dumps(result))
        return
    if "resume" in result:
        r = result["resume"]
        print(
            f"resume ({r['mib']} MiB): put killed with {r['put_recorded_before_kill']} chunks "
            f"recorded; run again it sent {r['put_resumed_sent']} and skipped "
            f"{r['put_resumed_skipped']} (a replica rewrote at most "
            f"{r['replica_rows_rewritten_max']} values); get killed at "
            f"{r['get_partial_at_kill']} bytes resumed at {r['get_resumed_bytes']}"
        )
    if not args.mib:
        return
    rss = result["peak_rss_mib"]
    print(
        f"{result['mib']} MiB through {result['nodes']} processes: identical {result['identical']}"
    )
    for ours, ref, ratio, name in (
        ("put_mb_s", "store_batch_mb_s", "put_ratio", "put_file / store_batch"),
        ("get_mb_s", "batch_retrieve_mb_s", "get_ratio", "get_file / batch_retrieve"),
    ):
        print(f"  {name:26} {result[ours]:7.1f} / {result[ref]:7.1f} MB/s = {result[ratio]}")
    print(
        f"  peak RSS (MiB): putting {rss['putting_node']}, getting {rss['getting_node']}, "
        f"store nodes up to {rss['store_nodes_max']}"
    )


if __name__ == "__main__":
    main()
