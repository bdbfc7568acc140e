"""Real networks for the API tests, each started once for the package.

* ``net``: three nodes with their APIs on the test's own event loop (the in-process tests
  check what the nodes hold after each HTTP call);
* ``localnet_proc``: ``lumera-p2p localnet`` in its own process, as an operator runs it, for
  the tests that drive a node from outside (the command line, schemathesis, Chromium).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from lumera_p2p.api.server import NodeApi
from lumera_p2p.config import ApiConfig
from lumera_p2p.localnet import create_localnet, load_configs, start_nodes
from lumera_p2p.service import P2P


@dataclass(frozen=True)
class RunningNode:
    """One node of the running network, as ``localnet`` printed it."""

    address: str
    endpoint: str
    api: str
    config: Path


@dataclass(frozen=True)
class RunningNet:
    """A ``lumera-p2p localnet`` process and its nodes."""

    directory: Path
    nodes: list[RunningNode]
    process: subprocess.Popen[str]


def cli(*args: str) -> list[str]:
    """The command line of ``lumera-p2p ARGS`` in this interpreter."""
    return [sys.executable, "-m", "lumera_p2p", *args]


def start_localnet(directory: Path, nodes: int, timeout: float = 120.0) -> RunningNet:
    """Start ``lumera-p2p localnet`` and wait for its ``ready`` line (a hang guard, not a
    speed: under load a network takes a while to bootstrap)."""
    proc = subprocess.Popen(
        cli("localnet", "--nodes", str(nodes), "--dir", str(directory)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.strip() == "ready":
            break
        lines.append(line.strip())
    else:
        proc.kill()
        raise AssertionError(f"localnet not ready within {timeout} s: {lines}")
    if proc.poll() is not None:
        raise AssertionError(f"localnet exited with {proc.returncode}: {lines}")
    running = [
        RunningNode(address, endpoint, api, directory / f"node-{i:02d}" / "config.yml")
        for i, (address, endpoint, api) in enumerate(line.split() for line in lines)
    ]
    return RunningNet(directory, running, proc)


def stop_localnet(net: RunningNet) -> None:
    """SIGINT, as an operator's Ctrl-C; it must exit 0."""
    proc = net.process
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            raise
        assert code == 0


@pytest.fixture(scope="package")
def localnet_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNet]:
    """Three nodes in one ``lumera-p2p localnet`` process, each serving its API."""
    net = start_localnet(tmp_path_factory.mktemp("net"), 3)
    try:
        yield net
    finally:
        stop_localnet(net)


def one_line_error(response: httpx.Response) -> str:
    """The ``error`` of an error answer, checked to be its only field and one line."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"] and "\n" not in body["error"]
    return str(body["error"])


#: A time after every record's (the upper bound of "every local key").
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


#: ``api.max_value_bytes`` of the in-process nodes (small, so limits are cheap to reach).
LIMIT = 1 << 20


@dataclass
class Net:
    """Nodes on the test's loop, with their APIs."""

    nodes: list[P2P]
    apis: list[NodeApi]
    tmp: Path

    def client(self, i: int) -> httpx.AsyncClient:
        """An HTTP client of node ``i``'s API."""
        return httpx.AsyncClient(base_url=self.apis[i].url, timeout=60.0)


def api_config(tmp: Path, name: str, **extra: object) -> ApiConfig:
    """An API on a free loopback port, with small limits."""
    return ApiConfig(
        listen="127.0.0.1:0",
        token_file=tmp / f"{name}-token",
        max_value_bytes=LIMIT,
        max_batch_bytes=4 * LIMIT,
        max_batch_keys=50,
        **extra,  # type: ignore[arg-type]
    )


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def net(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Net]:
    """Three joined nodes, each serving its API."""
    tmp = tmp_path_factory.mktemp("api")
    nodes = await start_nodes(load_configs(create_localnet(tmp, 3)))
    apis = [NodeApi(n, api_config(tmp, f"n{i}")) for i, n in enumerate(nodes)]
    try:
        for api in apis:
            await api.start()
        yield Net(nodes, apis, tmp)
    finally:
        await asyncio.gather(*(a.stop() for a in apis), return_exceptions=True)
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
