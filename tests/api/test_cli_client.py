"""``lumera-p2p put/get/status/peers/ls/stats`` against the nodes of a running ``lumera-p2p
localnet`` (its own process), each node found from its ``--config`` or ``--api``, over HTTP.

``put`` and ``get`` run as separate processes, as an operator runs them; the commands that only
print (``status``, ``peers``, ``ls``, ``stats``) and the failures run in this process through
typer's runner (the same command line and HTTP, without an interpreter start per call).

A file put through one node comes back byte for byte through another, with the progress bar
shown (forced with ``--progress``: stderr is a pipe here). The default suite moves 8 MiB
(eight chunks); ``-m slow`` moves the issue's 100 MB (about 1 GiB of peak memory for the three
nodes).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from lumera_p2p import __version__
from lumera_p2p.cli.app import app
from lumera_p2p.content import content_key
from lumera_p2p.localnet import free_ports
from tests.api.conftest import RunningNet, cli

pytestmark = pytest.mark.timeout(300)

KEY = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")
#: rich's DownloadColumn at the end: "33.6/33.6 MB" (done of total).
FINISHED_BAR = re.compile(r"(\d+(?:\.\d+)?)/\1 (?:kB|MB|GB)")


def lumera(
    *args: str, stdin: bytes | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[bytes]:
    """Run ``lumera-p2p ARGS`` (a hang guard as its timeout, not a speed)."""
    return subprocess.run(
        cli(*args), input=stdin, capture_output=True, timeout=timeout, check=False
    )


def ok(run: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    return run


def here(*args: str, stdin: bytes | None = None) -> Result:
    """``lumera-p2p ARGS`` in this process."""
    return CliRunner().invoke(app, list(args), input=stdin)


def done(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(8 * 1024 * 1024, id="8MiB"),
        pytest.param(100_000_000, id="100MB", marks=pytest.mark.slow),
    ],
)
def test_a_file_put_through_one_node_comes_back_through_another(
    localnet_proc: RunningNet, tmp_path: Path, size: int
) -> None:
    first, other = localnet_proc.nodes[0], localnet_proc.nodes[1]
    source = tmp_path / "big.bin"
    with source.open("wb") as out:
        for _ in range(0, size, 1 << 20):
            out.write(os.urandom(min(1 << 20, size - out.tell())))
    assert source.stat().st_size == size

    put = ok(lumera("put", str(source), "--config", str(first.config), "--progress"))
    key = put.stdout.decode().strip()
    # Larger than one chunk: stored as a file, its key naming the file's manifest.
    assert KEY.match(key) and key != content_key(source.read_bytes())
    shown = put.stderr.decode()
    assert "put big.bin" in shown and FINISHED_BAR.search(shown), shown[-2000:]
    assert f"stored big.bin: {size / 2**20:.1f} MiB as a file" in shown

    back = tmp_path / "back.bin"
    got = ok(lumera("get", key, "-o", str(back), "--config", str(other.config), "--progress"))
    shown = got.stderr.decode()
    assert f"get {key[:12]}" in shown and FINISHED_BAR.search(shown), shown[-2000:]
    assert "BLAKE3 matches the key" in shown
    with source.open("rb") as a, back.open("rb") as b:
        while chunk := a.read(1 << 20):
            assert b.read(1 << 20) == chunk
        assert b.read(1) == b""
    assert not list(tmp_path.glob("back.bin.*"))  # the partial file was renamed


def test_stdin_to_stdout_with_json(localnet_proc: RunningNet, tmp_path: Path) -> None:
    first, other = localnet_proc.nodes[0], localnet_proc.nodes[2]
    data = os.urandom(300_000)
    put = ok(lumera("put", "-", "--json", "--config", str(first.config), stdin=data))
    result = json.loads(put.stdout)
    assert result["key"] == content_key(data) and result["size"] == len(data)
    assert result["kind"] == "value"
    got = done(here("get", result["key"], "--config", str(other.config)))
    assert got.stdout_bytes == data
    out = tmp_path / "out.bin"
    described = done(here("get", result["key"], "--json", "-o", str(out), "--api", other.api))
    assert json.loads(described.stdout) == {
        "key": result["key"],
        "size": len(data),
        "kind": "value",
        "verified": True,
        "resumed_bytes": 0,  # nothing kept from an earlier, interrupted get
        "output": str(out),
    }
    assert out.read_bytes() == data


def test_get_into_a_pipe_writes_through_it_and_leaves_it_a_pipe(
    localnet_proc: RunningNet, tmp_path: Path
) -> None:
    """``-o`` naming a FIFO or a device (``/dev/null``) writes into it: a temporary file
    renamed over it would replace the device itself."""
    node = localnet_proc.nodes[1]
    data = os.urandom(100_000)
    key = json.loads(done(here("put", "-", "--json", "--api", node.api, stdin=data)).stdout)["key"]
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    done(here("get", key, "-o", str(fifo), "--api", node.api))
    reader.join(timeout=60)
    assert received == [data]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary file left


def test_status_peers_ls_and_stats(localnet_proc: RunningNet) -> None:
    node = localnet_proc.nodes[1]
    others = {n.address for n in localnet_proc.nodes} - {node.address}
    stored = done(here("put", "-", "--json", "--api", node.api, stdin=b"listed " + os.urandom(64)))
    key = json.loads(stored.stdout)["key"]

    status = json.loads(done(here("status", "--json", "--config", str(node.config))).stdout)
    assert status["address"] == node.address and status["ready"] is True
    assert status["p2p_listen"] == node.endpoint and status["peers"] >= 1
    text = done(here("status", "--config", str(node.config))).stdout
    assert node.address in text and "peers" in text and "storage" in text

    peers = json.loads(done(here("peers", "--json", "--api", node.api)).stdout)
    assert {p["address"] for p in peers["peers"]} <= others and peers["count"] >= 1
    table = done(here("peers", "--api", node.api)).stdout
    assert any(address in table for address in others)  # whole, not cut to a width

    listed = json.loads(
        done(here("ls", "--all", "--limit", "1", "--json", "--api", node.api)).stdout
    )
    assert key in {entry["key"] for entry in listed["keys"]} and listed["next"] is None
    assert key in done(here("ls", "--all", "--api", node.api)).stdout

    stats = json.loads(done(here("stats", "--json", "--api", node.api)).stdout)
    assert stats["address"] == node.address and stats["store"]["records"] >= 1
    assert stats["memory"]["granted"] >= 1 and "quota_refused" in stats["serving"]
    assert "serving" in done(here("stats", "--api", node.api)).stdout


def test_failures_are_one_line_with_an_exit_status(localnet_proc: RunningNet) -> None:
    node = localnet_proc.nodes[0]
    cases = [
        # (command, exit status, what the line says)
        (("get", "not-a-key", "--api", node.api), 1, "key"),
        (("get", content_key(os.urandom(40)), "--api", node.api), 1, "404"),
        (("put", "/nonexistent/file", "--api", node.api), 1, "/nonexistent/file"),
        (("status", "--api", f"http://127.0.0.1:{free_ports(1)[0]}"), 1, "cannot reach"),
        (("status", "--config", "/nonexistent/config.yml"), 2, "config.yml"),
    ]
    for args, code, says in cases:
        result = here(*args)
        assert result.exit_code == code, (args, result.stderr, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], (
            args,
            result.stderr,
        )
        assert result.stdout == ""


def test_version() -> None:
    run = ok(lumera("--version"))
    assert run.stdout.decode().strip() == f"lumera-p2p {__version__}"
