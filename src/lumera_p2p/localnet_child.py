"""One node of a local network in its own process, driven by its parent over stdin/stdout.

``lumera-p2p localnet --processes`` and ``bench/scale.py`` start one of these per node::

    python -m lumera_p2p.localnet_child node-07/config.plain.json

It imports only what a node uses (no command-line toolkit, no gRPC for a static registry, no
pydantic: the parent validated the YAML and hands over the result in plain form, see
:mod:`lumera_p2p.config_plain`; a ``.yml`` path is still read and validated here), so a
process holds one node and little else. The protocol is one line each way, in order:

    listening <address> <host>:<port>          once the server is up (before joining)
    ready <peers>                              once the routing table holds a peer
    store <hex>        ->  stored <key> <replicas>   |  error <message>
    get <key>          ->  value <hex>               |  missing  |  error <message>
    peers              ->  peers <count>
    modules            ->  modules <name> ...        the top-level packages imported (sorted)
    quit (or EOF)      ->  the node stops cleanly and the process exits 0

Commands are served one at a time, in order (the parent runs many children at once).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lumera_p2p.config_plain import load_plain
from lumera_p2p.errors import LumeraP2PError
from lumera_p2p.eventloop import LoopName, freeze_long_lived, run_event_loop
from lumera_p2p.service import P2P

if TYPE_CHECKING:
    from lumera_p2p.config import Config

#: How often the child looks at its routing table before it says ``ready``.
READY_POLL = 0.05


async def serve(config_path: Path) -> None:
    """Run the node of ``config_path`` and answer its parent until ``quit`` or EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    node = await P2P.create(read_config(config_path))
    try:
        await node.start(bootstrap=False)
        say(f"listening {node.address} {node.me.ip}:{node.port}")
        # The first join here, not in start(): a failure is retried by the peer-sync loop.
        try:
            await node.sync_peers()
        except LumeraP2PError as exc:
            logging.getLogger(__name__).warning("first join failed, will retry: %s", exc)
        while node.node.peer_count == 0:
            await asyncio.sleep(READY_POLL)
        freeze_long_lived()
        say(f"ready {node.node.peer_count}")
        while line := (await reader.readline()).decode().strip():
            if line == "quit":
                break
            say(await answer(node, line))
    finally:
        await node.stop()


def read_config(path: Path) -> Config:
    """The plain configuration at ``path`` (``.json``), else the YAML file validated."""
    if path.suffix == ".json":
        return load_plain(path)
    from lumera_p2p.config import load_config  # noqa: PLC0415 (pydantic only for YAML)

    return load_config(path)


async def answer(node: P2P, line: str) -> str:
    """The reply to one command line."""
    verb, _, arg = line.partition(" ")
    try:
        if verb == "store":
            report = await node.store_with_report(bytes.fromhex(arg))
            return f"stored {report.key} {report.replicas}"
        if verb == "get":
            value = await node.retrieve(arg)
            return "missing" if value is None else f"value {value.hex()}"
        if verb == "peers":
            return f"peers {node.node.peer_count}"
        if verb == "modules":  # what the process holds; tests keep heavy imports out
            loaded = {name.partition(".")[0] for name, mod in sys.modules.items() if mod}
            return "modules " + " ".join(sorted(loaded))  # (None: an import blocked)
    except (LumeraP2PError, ValueError) as exc:
        return f"error {type(exc).__name__}: {exc}".replace("\n", " ")
    return f"error unknown command {verb!r}"


def say(line: str) -> None:
    """One line to the parent, flushed (it waits for each)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


#: What the optional second argument may name: the event loop (``eventloop.LoopName``).
LOOPS: dict[str, LoopName] = {"auto": "auto", "uvloop": "uvloop", "asyncio": "asyncio"}


def main(argv: list[str]) -> int:
    """``python -m lumera_p2p.localnet_child CONFIG [auto|uvloop|asyncio]``."""
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] not in LOOPS):
        sys.stderr.write(
            "usage: python -m lumera_p2p.localnet_child CONFIG [auto|uvloop|asyncio]\n"
        )
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_event_loop(serve(Path(argv[0])), LOOPS[argv[1] if len(argv) == 2 else "auto"])
    except LumeraP2PError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
