"""Large values across node processes: stored on every replica, retrieved through a node that
does not hold them, and never held more than three times over by any node.

Each node runs in a process of its own (``value_node.py``), so its peak resident set
(``VmHWM``) counts exactly what it held at once: the value, its frames, its encrypted records,
SQLite's buffers. The slow test stores the largest value the protocol allows
(:data:`~lumera_p2p.wire.envelope.MAX_VALUE_SIZE`, 400 MiB minus the envelope) on six replicas;
the default one a 24 MiB value on one (three processes: the origin, the replica, the node that
retrieves it).

Three copies is the floor while a value is stored: the value itself (the caller's, or a view
into the frame it came in), and SQLite's two while it inserts it (the bound parameter and the
record it builds; ``store/local.py`` says why no SQLite API avoids them from Python). Both tests
allow :data:`FIXED` bytes on top, which do not grow with the value: the secure channel's
receive buffer (3 MiB at most), SQLite's page cache (cut to 1 MiB for large writes) and the
allocator's rounding.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumera_p2p.localnet import LocalNode, create_localnet
from lumera_p2p.wire.envelope import MAX_VALUE_SIZE

MIB = 1024 * 1024
#: Bytes a node may hold beyond three copies, whatever the value's size (see above).
FIXED = 16 * MIB
#: The same at 24 MiB in the default suite, which must pass on a busy machine: there a
#: StoreData may time out and be sent again, and the heap is fragmented by the load; measured
#: up to 16.2 MiB past three copies under load 10 (3.03 copies when idle). Four copies or
#: more still fail.
FIXED_BUSY = 23 * MIB
#: The warm-up value: over the record layer's 16 KiB in-place threshold, small beside a copy.
WARM_UP = 256 * 1024
ROOT = Path(__file__).resolve().parents[2]


class NodeProcess:
    """A node process and its command channel (see ``value_node.py``)."""

    def __init__(self, local: LocalNode) -> None:
        self.local = local
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.value_node", str(local.config_path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(local.config_path.parent / "stderr.log").open("w"),
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def answer(self, timeout: float) -> dict[str, Any]:
        """The next line the node prints, as JSON (fails the test past ``timeout`` s)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"{self.local.name} said nothing within {timeout} s")
        if not line:
            pytest.fail(f"{self.local.name} exited with {self.proc.wait(timeout=10)}")
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, (self.local.name, answer)
        return answer

    def ask(self, timeout: float, **request: object) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.answer(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=30)


@contextmanager
def node_processes(
    directory: Path, count: int, dht: dict[str, object]
) -> Iterator[list[NodeProcess]]:
    """``count`` joined node processes of a local network with ``dht`` settings."""
    local = create_localnet(directory, count)
    for node in local:
        config = yaml.safe_load(node.config_path.read_text())
        config["dht"] = dht
        node.config_path.write_text(yaml.safe_dump(config))
    procs = [NodeProcess(n) for n in local]
    try:
        for proc in procs:
            proc.answer(timeout=120)  # ready
        for proc in procs:
            assert proc.ask(60, op="sync")["peers"] >= 1
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def store_and_retrieve(
    procs: list[NodeProcess], size: int, replicas: int, timeout: float
) -> dict[str, float]:
    """Store ``size`` random bytes from the first node, check that ``replicas`` peers
    acknowledged, retrieve them through a node that holds none, and return each node's peak
    resident set above its resident set before, in copies of the value.

    A small large value goes round first: what a node loads once, on its first large frame
    (the record layer's OpenSSL AEAD, secure/record.py), is then in the baseline, since
    it is not a copy of any value."""
    warm = procs[0].ask(timeout, op="store", size=WARM_UP)
    for proc in procs[1:]:
        assert proc.ask(timeout, op="retrieve", key=warm["key"])["size"] == WARM_UP
    before = {p.local.address: p.ask(30, op="memory")["VmRSS"] for p in procs}
    origin = procs[0]
    stored = origin.ask(timeout, op="store", size=size)
    assert len(stored["stored_on"]) == replicas, stored
    holders = {origin.local.address, *stored["stored_on"]}
    outsider = next(p for p in procs if p.local.address not in holders)
    assert outsider.ask(timeout, op="retrieve", key=stored["key"])["size"] == size
    copies = {}
    for proc in procs:
        peak = proc.ask(30, op="memory")["VmHWM"]
        role = (
            "origin"
            if proc is origin
            else "retriever"
            if proc is outsider
            else "replica"
            if proc.local.address in holders
            else "other"
        )
        copies[f"{proc.local.name} ({role})"] = (peak - before[proc.local.address]) / size
    return copies


@pytest.mark.timeout(240)
def test_a_large_value_is_held_at_most_three_times_per_node(tmp_path: Path) -> None:
    size = 24 * MIB
    with node_processes(tmp_path, 3, {"replicas": 1}) as procs:
        copies = store_and_retrieve(procs, size, replicas=1, timeout=120)
    print(f"\npeak RSS above start, in copies of a {size}-byte value: {copies}")
    for name, held in copies.items():
        assert held * size <= 3 * size + FIXED_BUSY, (name, copies)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_largest_value_on_six_replicas_at_most_three_copies_per_node(
    tmp_path: Path,
) -> None:
    with node_processes(tmp_path, 8, {"replicas": 6}) as procs:
        copies = store_and_retrieve(procs, MAX_VALUE_SIZE, replicas=6, timeout=1200)
    print(f"\nvalue: {MAX_VALUE_SIZE} bytes; peak RSS above start, in copies of it:")
    for name, held in copies.items():
        extra = (held - 3) * MAX_VALUE_SIZE / MIB
        print(f"  {name}: {held:.4f} ({extra:+.1f} MiB beside three copies)")
    for name, held in copies.items():
        assert held * MAX_VALUE_SIZE <= 3 * MAX_VALUE_SIZE + FIXED, (name, copies)
