"""The web stack (FastAPI, Starlette, uvicorn, prometheus_client) loads only with the API: a
node run with ``api.enabled: false`` never imports it, and neither does the command line
until a command starts an API. Each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

WEB_STACK = ("fastapi", "starlette", "uvicorn", "prometheus_client", "lumera_p2p.api.server")

PROBE = """
import asyncio, json, sys
from pathlib import Path
from lumera_p2p.cli.app import app  # everything `lumera-p2p` loads before a command runs
from lumera_p2p.cli.node_cmds import start_apis
from lumera_p2p.localnet import create_localnet, load_configs
from lumera_p2p.service import P2P

WEB = {web!r}

def loaded():
    return sorted(m for m in WEB if m in sys.modules)

async def main(directory, enabled):
    seen = {{"cli": loaded()}}
    (config,) = load_configs(create_localnet(Path(directory), 1))
    api = config.api.model_copy(update={{"enabled": enabled, "listen": "127.0.0.1:0"}})
    node = await P2P.create(config.model_copy(update={{"api": api}}))
    await node.start(bootstrap=False)
    apis = await start_apis([node])
    seen["running"] = loaded()
    seen["apis"] = len(apis)
    for a in apis:
        await a.stop()
    await node.stop()
    print(json.dumps(seen))

asyncio.run(main(sys.argv[1], sys.argv[2] == "on"))
"""


def probe(directory: Path, api: str) -> dict[str, object]:
    run = subprocess.run(
        [sys.executable, "-c", PROBE.format(web=WEB_STACK), str(directory), api],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_a_node_without_its_api_never_imports_the_web_stack(tmp_path: Path) -> None:
    seen = probe(tmp_path / "off", "off")
    assert seen == {"cli": [], "running": [], "apis": 0}


def test_a_node_with_its_api_imports_it_then(tmp_path: Path) -> None:
    # The probe can tell: the same run with the API on has the stack loaded.
    seen = probe(tmp_path / "on", "on")
    assert seen["cli"] == [] and seen["apis"] == 1
    assert seen["running"] == sorted(WEB_STACK)
