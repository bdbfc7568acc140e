"""SIGKILL a process in the middle of storing: every acknowledged key survives, intact."""

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


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_acknowledged_writes_survive_sigkill(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path), str(seed)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # A line cut by the kill was never fully acknowledged: only whole 64-hex lines count.
    acked = [line for line in out.split("\n") if len(line) == 64]
    assert len(acked) > 0, "the child acknowledged nothing before the kill"

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
