"""One node in a process of its own, driven by JSON lines on stdin (the large-value tests).

``python -m tests.integration.value_node <config.yml>`` starts the node (listening, not yet
bootstrapped) and prints ``{"ready": …}``; then each line read is a command answered by one
line of JSON:

* ``{"op": "sync"}``: join through the registry; answers the routing table's size;
* ``{"op": "store", "size": n}``: store ``n`` random bytes; answers the key and who holds it;
* ``{"op": "retrieve", "key": k}``: fetch ``k`` (from the network if not held here) and check
  it against its key; answers its size;
* ``{"op": "memory"}``: the resident set now and at its peak (``VmRSS``, ``VmHWM``), bytes;
* ``{"op": "quit"}``: stop the node and exit.

A failing command answers ``{"error": …}``. Memory is read from ``/proc/self/status``, so the
peak counts every copy the process held at once, whoever allocated it (SQLite included).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from lumera_p2p import P2P, content_key, load_config


def memory() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process, in bytes."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


async def command(node: P2P, request: dict[str, Any]) -> dict[str, Any]:
    """Run one command (see the module docstring)."""
    op = request["op"]
    if op == "sync":
        return {"peers": await node.sync_peers()}
    if op == "store":
        value = os.urandom(int(request["size"]))
        report = await node.store_with_report(value)
        del value
        return {"key": report.key, "stored_on": list(report.stored_on), "cause": report.cause}
    if op == "retrieve":
        found = await node.retrieve(str(request["key"]))
        if found is None:
            return {"error": "not found"}
        if content_key(found) != request["key"]:
            return {"error": "the value does not match its key"}
        return {"size": len(found)}
    if op == "memory":
        return memory()
    raise ValueError(f"unknown op {op!r}")


async def main(config_path: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(config_path)
    node = await P2P.create(config)
    await node.start(bootstrap=False)
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": config.key_name, **memory()}), flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            request = json.loads(line)
            if request["op"] == "quit":
                break
            try:
                answer = await command(node, request)
            except Exception as exc:  # reported to the test, which fails on it
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
    finally:
        await node.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
