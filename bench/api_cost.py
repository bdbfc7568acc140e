"""What the HTTP API adds to a node process: import time, resident memory, and a scrape.

The same one-node network is run twice with ``lumera-p2p run``, as an operator runs it: once
with ``api.enabled: false`` (the reference) and once with the API. For each, the node's RSS
(``VmRSS`` from ``/proc``) is read once it listens and has settled; with the API, ``/metrics``
is then scraped a number of times over HTTP (median seconds) and the RSS read again. Import
times are measured in fresh interpreters, the fastest of interleaved runs:
``lumera_p2p.service`` (what every node loads), and that plus ``lumera_p2p.api.server`` (the
web stack).

``rss_ratio`` is the RSS without the API ÷ with it, ``import_ratio`` the import time without ÷
with (both at most 1; higher is better: 1 would mean the API costs nothing).

    python bench/api_cost.py [--scrapes N] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from lumera_p2p.localnet import create_localnet

SETTLE_SECONDS = 2.0
START_TIMEOUT = 120.0
IMPORT_ROUNDS = 7


def import_seconds(modules: str) -> float:
    """Seconds to import ``modules`` in a fresh interpreter (one run)."""
    probe = (
        f"import time; t = time.perf_counter()\nimport {modules}\nprint(time.perf_counter() - t)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return float(run.stdout)


def import_pair() -> tuple[float, float]:
    """The fastest of interleaved runs without and with the API (the least disturbed by a
    busy machine)."""
    without, with_api = [], []
    for _ in range(IMPORT_ROUNDS):
        without.append(import_seconds("lumera_p2p.service"))
        with_api.append(import_seconds("lumera_p2p.service, lumera_p2p.api.server"))
    return min(without), min(with_api)


def rss_bytes(pid: int) -> int:
    """The process's resident set (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until the node's P2P port accepts (a hang guard, not a speed)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the node exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the node did not listen on {port} within {START_TIMEOUT} s")


def run_node(config: Path, port: int, api_url: str | None, scrapes: int) -> dict[str, float]:
    """Start ``lumera-p2p run``, measure it, stop it with SIGINT."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lumera_p2p",
            "run",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)
        figures: dict[str, float] = {}
        if api_url is not None:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{api_url}/healthz", timeout=5).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not answer")
                time.sleep(0.1)
        time.sleep(SETTLE_SECONDS)
        figures["rss_bytes"] = rss_bytes(proc.pid)
        if api_url is not None:
            times = []
            with httpx.Client(base_url=api_url, timeout=30) as client:
                for _ in range(scrapes):
                    started = time.perf_counter()
                    response = client.get("/metrics")
                    times.append(time.perf_counter() - started)
                    response.raise_for_status()
            figures["scrape_seconds"] = statistics.median(times)
            figures["scrape_bytes"] = len(response.content)
            figures["rss_after_scrapes_bytes"] = rss_bytes(proc.pid)
        return figures
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    base_import, api_import = import_pair()
    with tempfile.TemporaryDirectory() as tmp:
        (local,) = create_localnet(Path(tmp), 1, one_host=True)  # on 127.0.0.1, as probed
        data = yaml.safe_load(local.config_path.read_text())
        api_url = f"http://127.0.0.1:{local.api_port}"
        data.setdefault("api", {})["enabled"] = False
        without = local.config_path.with_name("config-no-api.yml")
        without.write_text(yaml.safe_dump(data))
        reference = run_node(without, local.port, None, args.scrapes)
        ours = run_node(local.config_path, local.port, api_url, args.scrapes)

    mib = 1024 * 1024
    result = {
        "rss_without_api_mib": round(reference["rss_bytes"] / mib, 1),
        "rss_with_api_mib": round(ours["rss_bytes"] / mib, 1),
        "rss_after_scrapes_mib": round(ours["rss_after_scrapes_bytes"] / mib, 1),
        "api_rss_mib": round((ours["rss_bytes"] - reference["rss_bytes"]) / mib, 1),
        "import_without_api_s": round(base_import, 3),
        "import_with_api_s": round(api_import, 3),
        "scrape_median_ms": round(ours["scrape_seconds"] * 1000, 2),
        "scrape_bytes": int(ours["scrape_bytes"]),
        "rss_ratio": round(reference["rss_bytes"] / ours["rss_bytes"], 3),
        "import_ratio": round(base_import / api_import, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"RSS  {result['rss_with_api_mib']} MiB with the API, "
            f"{result['rss_without_api_mib']} MiB without "
            f"(+{result['api_rss_mib']} MiB; ratio {result['rss_ratio']}); "
            f"{result['rss_after_scrapes_mib']} MiB after {args.scrapes} scrapes"
        )
        print(
            f"import  {result['import_with_api_s']} s with lumera_p2p.api.server, "
            f"{result['import_without_api_s']} s without (ratio {result['import_ratio']})"
        )
        print(f"/metrics  {result['scrape_median_ms']} ms median, {result['scrape_bytes']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
