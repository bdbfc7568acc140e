"""SIGKILL a process in the middle of storing: every acknowledged key survives, intact.

Run for both durability modes. A SIGKILL is the failure both must survive: a committed
transaction is in the WAL (in the operating system's cache at least) before it is
acknowledged. What NORMAL gives up, the last commits on a power loss, no process-level test
can show; the README says so.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest

CHILD = Path(__file__).with_name("crash_child.py")
#: Longest wait for the child to acknowledge the keys it is to be killed after.
DEADLINE = 60.0


def kill_after_acks(data_dir: Path, seed: int, synchronous: str, mode: str) -> list[str]:
    """Run the child (storing in ``mode``: batches or single values) until it has
    acknowledged a random number of keys, SIGKILL it, and return every key it acknowledged
    (the kill lands while it keeps on storing)."""
    rng = random.Random(seed)
    target = rng.randint(50, 1500)
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(seed), synchronous, mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    acked: list[str] = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + DEADLINE
        while len(acked) < target and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(line.strip())
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= target, "the child stopped acknowledging before the kill"
    # A line cut by the kill was never fully acknowledged: only whole 64-hex lines count.
    return acked + [line for line in out.split("\n") if len(line) == 64]


@pytest.mark.parametrize("synchronous", ["full", "normal"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_acknowledged_writes_survive_sigkill(tmp_path: Path, seed: int, synchronous: str) -> None:
    check_survivors(tmp_path, kill_after_acks(tmp_path, seed, synchronous, "batch"))


@pytest.mark.parametrize("synchronous", ["full", "normal"])
@pytest.mark.parametrize("seed", [1, 2])
def test_acknowledged_single_writes_survive_sigkill(
    tmp_path: Path, seed: int, synchronous: str
) -> None:
    # A value stored alone commits as its one statement, without BEGIN or COMMIT.
    check_survivors(tmp_path, kill_after_acks(tmp_path, seed, synchronous, "single"))


def check_survivors(tmp_path: Path, acked: list[str]) -> None:
    """Every acknowledged key is in the (intact) database with a value that hashes to it."""
    conn = sqlite3.connect(tmp_path / "data001.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = dict(conn.execute("SELECT key, data FROM data"))
    finally:
        conn.close()
    missing = [k for k in acked if k not in stored]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged keys lost"
    for key in acked:
        assert blake3.blake3(stored[key]).hexdigest() == key


@pytest.mark.slow
@pytest.mark.parametrize("synchronous", ["full", "normal"])
@pytest.mark.parametrize("seed", range(6, 26))
def test_acknowledged_writes_survive_many_sigkills(
    tmp_path: Path, seed: int, synchronous: str
) -> None:
    test_acknowledged_writes_survive_sigkill(tmp_path, seed, synchronous)
