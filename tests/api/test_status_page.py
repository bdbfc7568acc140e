"""The status page in a real headless Chromium (the system's, driven by Playwright): it loads,
shows the node's peers, and a file put through its form comes back through ``lumera-p2p get``
on another node, byte for byte.

CI installs Debian's ``chromium`` (``.ci/run``); elsewhere, without it, the test is skipped,
and on CI its absence is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from lumera_p2p.content import content_key
from tests.api.conftest import RunningNet, cli

pytestmark = pytest.mark.timeout(240)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
KEY = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A fresh Chromium profile; Playwright's own browsers are never downloaded."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI (.ci/run installs Debian's chromium)")
        pytest.skip(
            f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set CHROMIUM)"
        )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
        )
        try:
            yield context
        finally:
            context.close()


def test_the_page_shows_peers_and_a_file_put_through_it_comes_back(
    browser: Any, localnet_proc: RunningNet, tmp_path: Path
) -> None:
    node, other = localnet_proc.nodes[0], localnet_proc.nodes[2]
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None
        ),
    )
    page.goto(node.api + "/", wait_until="load")
    assert page.title() == "lumera-p2p node"

    # Peers: the other two nodes, by address.
    # Locator assertions poll from Playwright's own world: the page's CSP forbids eval.
    expect(page.locator("#peer-count")).to_have_text("2", timeout=60_000)
    rows = page.locator("#peers tr")
    shown = {rows.nth(i).get_attribute("data-address") for i in range(rows.count())}
    assert shown == {n.address for n in localnet_proc.nodes[1:]}
    assert page.text_content("#address") == node.address
    expect(page.locator("#ready")).to_have_text("ready")

    # Put a file through the form; its key appears; `get` through another node returns it.
    data = os.urandom(200_000) + b"\x00 the end"
    upload = tmp_path / "upload.bin"
    upload.write_bytes(data)
    page.set_input_files("#put-file", str(upload))
    page.click("#put-button")
    expect(page.locator("#put-result")).to_have_text(KEY, timeout=60_000)
    key = page.text_content("#put-result")
    assert key is not None and KEY.match(key)
    assert key == content_key(data)
    out = tmp_path / "back.bin"
    subprocess.run(
        cli("get", key, "-o", str(out), "--config", str(other.config)),
        check=True,
        timeout=60,
        capture_output=True,
    )
    assert out.read_bytes() == data

    # And the page's own get: a download link, the hash checked against the key.
    page.fill("#get-key", key)
    page.click("#get-button")
    expect(page.locator("#get-result a")).to_have_text(re.compile("download"), timeout=60_000)
    expect(page.locator("#get-result")).to_contain_text("hash matches the key")
    page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
    assert problems == []
