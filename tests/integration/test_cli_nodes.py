"""The node commands as an operator runs them: real processes, signals and exit codes."""

from __future__ import annotations

import json
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


def _wait_for(proc: subprocess.Popen[str], wanted: str, seen: list[str], timeout: float) -> None:
    """Read stderr lines into ``seen`` until one holds ``wanted`` (a hang guard, not a speed)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while not any(wanted in line for line in seen):
        assert time.monotonic() < deadline, f"no {wanted!r} within {timeout} s: {seen}"
        line = proc.stderr.readline()
        assert line, f"stderr closed before {wanted!r}: {seen}"
        seen.append(line)


def test_run_logs_its_lifecycle_at_info_as_json_lines(tmp_path: Path) -> None:
    first, second = create_localnet(tmp_path, 2)
    procs: list[subprocess.Popen[str]] = []
    try:
        for node in (first, second):
            procs.append(
                subprocess.Popen(
                    _cli(
                        "run",
                        "--config",
                        str(node.config_path),
                        "--log-format",
                        "json",
                        "--log-level",
                        "info",
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            if node is first:
                seen_first: list[str] = []
                _wait_for(procs[0], "listening on", seen_first, 60)
        seen: list[str] = []
        _wait_for(procs[1], "bootstrapped with 1 peers", seen, 90)
        _wait_for(procs[1], "API listening on", seen, 60)
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(timeout=60) == 0
        assert procs[1].stderr is not None
        seen += procs[1].stderr.readlines()
        records = [json.loads(line) for line in seen]  # every line is one JSON object
        assert all(set(r) >= {"time", "level", "logger", "message"} for r in records)
        messages = [r["message"] for r in records if r["level"] == "info"]
        for wanted in (
            "listening on",
            "bootstrapped with 1 peers",
            "API listening on",
            "stopping",
            "stopped",
        ):
            assert any(wanted in m for m in messages), (wanted, messages)
        assert messages[-1].endswith("stopped")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
