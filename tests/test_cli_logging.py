"""The ``log`` section as ``lumera-p2p run`` applies it: level, text or JSON lines, a file."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lumera_p2p.cli.log_setup import JsonLineFormatter, setup_logging
from lumera_p2p.config import LogConfig
from lumera_p2p.localnet import create_localnet


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_to_a_file(tmp_path: Path, restore_logging: None) -> None:
    path = tmp_path / "node.log"
    setup_logging(LogConfig(level="warning", format="json", file=path))
    log = logging.getLogger("lumera_p2p.test")
    log.info("not at warning level")
    log.warning("disk %s", "full")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["message"] for e in entries] == ["disk full", "failed"]
    assert entries[0]["level"] == "warning"
    assert entries[0]["logger"] == "lumera_p2p.test"
    assert entries[0]["time"].endswith("+00:00")
    assert "ValueError: boom" in entries[1]["exception"]


def test_level_override_and_text(tmp_path: Path, restore_logging: None) -> None:
    path = tmp_path / "node.log"
    setup_logging(LogConfig(level="error", file=path), "debug")
    logging.getLogger("x").debug("shown")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert " DEBUG x: shown" in path.read_text()


def test_formatter_keeps_one_record_per_line() -> None:
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "two\nlines", None, None)
    line = JsonLineFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["message"] == "two\nlines"


def test_run_logs_json_to_the_configured_file(tmp_path: Path) -> None:
    node = create_localnet(tmp_path, 2)[0]
    data = yaml.safe_load(node.config_path.read_text())
    data["log"] = {"level": "info", "format": "json", "file": "logs/node.log"}
    (node.config_path.parent / "logs").mkdir()
    node.config_path.write_text(yaml.safe_dump(data))
    log_file = node.config_path.parent / "logs" / "node.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lumera_p2p", "run", "--config", str(node.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        messages: list[str] = []
        while time.monotonic() < deadline and not any("listening on" in m for m in messages):
            if proc.poll() is not None:
                break
            if log_file.exists():
                lines = log_file.read_text().splitlines()
                messages = [json.loads(line)["message"] for line in lines if line.endswith("}")]
            time.sleep(0.1)
        assert any("listening on" in m for m in messages), messages
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.stderr is not None
    assert "listening on" not in proc.stderr.read()  # to the file, not stderr
