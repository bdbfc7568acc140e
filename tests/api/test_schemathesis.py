"""schemathesis against the node's own OpenAPI schema, as served at ``/openapi.json``: every
endpoint, valid and invalid requests (its examples, coverage and fuzzing phases), and every
check it has: no 5xx, status codes, content types, headers and bodies as the schema says,
invalid input refused and valid input accepted. The node is a real one, in a running
``lumera-p2p localnet``.

schemathesis runs as its command line (``schemathesis run``) rather than through its pytest
plugin, whose lazily loaded schemas do not work with pytest 9. A few examples per endpoint
here, deterministic; ``-m slow`` runs many more, and against a node that asks for its token.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.api.conftest import RunningNet, cli

pytestmark = pytest.mark.timeout(600)


def schemathesis(url: str, *options: str, timeout: float = 540) -> subprocess.CompletedProcess[str]:
    """``schemathesis run URL/openapi.json OPTIONS`` with every check, failing on any."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--request-timeout",
        "120",
        "--no-color",
        *options,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def wait_ready(api: str, timeout: float) -> None:
    """Poll ``/readyz`` until it answers 200 (a deadline for a hang, not a speed)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api}/readyz", timeout=10).status_code == 200:
                return
        assert time.monotonic() < deadline, f"{api} not ready within {timeout} s"
        time.sleep(0.2)


def assert_clean(run: subprocess.CompletedProcess[str]) -> None:
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    assert "No issues found" in report, report[-3000:]
    # Every operation of the schema was tested, none skipped.
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    assert selected and selected.group(1) == selected.group(2), report[-3000:]
    assert int(selected.group(1)) >= 15, report[-3000:]  # POST /api/v1/files among them
    assert f"Tested: {selected.group(1)}" in report, report[-3000:]


def test_every_endpoint_answers_within_its_schema(localnet_proc: RunningNet) -> None:
    run = schemathesis(
        localnet_proc.nodes[0].api,
        "--max-examples",
        "5",
        "--generation-deterministic",
    )
    assert_clean(run)
    # The network took the fuzzing and still answers.
    status = subprocess.run(
        cli("status", "--json", "--api", localnet_proc.nodes[0].api),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"ready": true' in status.stdout


@pytest.mark.slow
def test_every_endpoint_answers_within_its_schema_long(localnet_proc: RunningNet) -> None:
    assert_clean(schemathesis(localnet_proc.nodes[1].api, "--max-examples", "200"))


@pytest.mark.slow
def test_a_node_that_asks_for_its_token(localnet_proc: RunningNet, tmp_path: Path) -> None:
    """A member added to the running network, asking for its token: schemathesis sends it
    (and its ``ignored_auth`` check sends none, expecting 401)."""
    added = subprocess.run(
        cli("localnet", "add", "guarded", "--dir", str(localnet_proc.directory)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    config_path = Path(added.stdout.strip().splitlines()[-1])
    config = yaml.safe_load(config_path.read_text())
    config["api"]["require_token"] = True
    config_path.write_text(yaml.safe_dump(config))
    api = added.stdout.split()[2]
    proc = subprocess.Popen(
        cli("run", "--config", str(config_path), "--log-level", "info"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = ""
        while "API listening" not in seen:
            line = proc.stderr.readline()
            assert line, seen
            seen += line
        token = (config_path.parent / "data" / "api-token").read_text().strip()
        # The others admit it once they re-read the registry; it retries its bootstrap.
        wait_ready(api, timeout=150)
        assert_clean(
            schemathesis(api, "--max-examples", "30", "-H", f"Authorization: Bearer {token}")
        )
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
