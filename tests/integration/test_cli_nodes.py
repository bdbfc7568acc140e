"""The node commands as an operator runs them: real processes, signals and exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lumera_p2p.localnet import create_localnet

pytestmark = pytest.mark.timeout(180)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lumera_p2p", *args]


def test_localnet_prints_nodes_then_ready_and_stops_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _cli("localnet", "--nodes", "4", "--dir", str(tmp_path / "net")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.strip() == "ready":
                break
        assert lines[-1] == "ready", lines
        nodes = lines[:-1]
        assert len(nodes) == 4
        for entry in nodes:
            address, endpoint, api = entry.split()
            assert address.startswith("lumera1")
            assert endpoint.startswith("127.0.0.1:")
            assert api.startswith("http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    # The same directory starts again with the same keys.
    assert (tmp_path / "net" / "registry.yml").exists()
    assert (tmp_path / "net" / "node-00" / "data" / "data001.sqlite3").exists()


def test_run_serves_until_sigterm_and_exits_cleanly(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, 2)
    proc = subprocess.Popen(
        _cli("run", "--config", str(local[0].config_path), "--log-level", "info"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        seen = ""
        while time.monotonic() < deadline and "listening on" not in seen:
            seen += proc.stderr.readline()
        assert "listening on" in seen, seen
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_run_with_a_corrupt_store_fails_with_one_line(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, 1)
    data = local[0].config_path.parent / "data"
    data.mkdir()
    (data / "data001.sqlite3").write_bytes(b"garbage, not a database" * 200)
    proc = subprocess.run(
        _cli("run", "--config", str(local[0].config_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert "corrupt" in errors[0]
    assert "Traceback" not in proc.stderr


def test_run_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("key_name: x\np2p:\n  data_dir: d\n  port: 0\n")
    proc = subprocess.run(
        _cli("run", "--config", str(path)), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert "p2p.port" in proc.stderr


def test_demo_exits_zero(tmp_path: Path) -> None:
    proc = subprocess.run(
        _cli("demo", "--nodes", "6", "--mb", "0.5"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "retrieve again" in proc.stdout
    assert "intact" in proc.stdout
