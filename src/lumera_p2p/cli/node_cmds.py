"""``lumera-p2p run``, ``localnet`` and ``demo``: nodes on real sockets.

The node machinery (gRPC, SQLite, the secure channel) is imported inside each command, so
that ``lumera-p2p keys`` and ``config check`` start quickly and never depend on it; the API's
web stack is imported only when a node's ``api.enabled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lumera_p2p.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    fail,
    load_config_or_exit,
    reported_errors,
)
from lumera_p2p.cli.log_setup import setup_logging
from lumera_p2p.config import LogConfig
from lumera_p2p.content import content_key, digest
from lumera_p2p.identity.keyring import os_backend_advice

if TYPE_CHECKING:
    from lumera_p2p.api.server import NodeApi
    from lumera_p2p.service import P2P

LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]
LogFormat = Annotated[
    str | None,
    typer.Option("--log-format", help="text or json (one object per line; default: log.format)."),
]
_LEVELS = ("debug", "info", "warning", "error", "critical")
_FORMATS = ("text", "json")


def _logging(level: str | None, log: LogConfig | None = None, fmt: str | None = None) -> None:
    if level is not None and level.lower() not in _LEVELS:
        fail(f"--log-level: unknown level {level!r}", EXIT_USAGE)
    if fmt is not None and fmt.lower() not in _FORMATS:
        fail(f"--log-format: unknown format {fmt!r} (text or json)", EXIT_USAGE)
    settings = log or LogConfig()
    if fmt is not None:
        settings = settings.model_copy(update={"format": fmt.lower()})
    try:
        setup_logging(settings, level and level.lower())
    except OSError as exc:
        fail(f"log.file: cannot open {exc.filename}: {exc.strerror or exc}", EXIT_FAILURE)


async def start_apis(nodes: Sequence[P2P]) -> list[NodeApi]:
    """Start the API of each node whose ``api.enabled`` (the web stack loads only then)."""
    apis: list[NodeApi] = []
    if not any(n.config.api.enabled for n in nodes):
        return apis
    from lumera_p2p.api.server import NodeApi

    try:
        for node in nodes:
            if node.config.api.enabled:
                api = NodeApi(node)
                await api.start()
                apis.append(api)
    except BaseException:
        await asyncio.gather(*(a.stop() for a in apis), return_exceptions=True)
        raise
    return apis


def _stop_on_signals() -> asyncio.Event:
    """An event SIGINT and SIGTERM set (where the loop can handle signals): they only ask
    for a stop, so whoever waits on it stops the nodes cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_until_signalled(node: P2P, started: Callable[[], object] | None = None) -> None:
    """Start ``node`` and its API, serve until SIGINT or SIGTERM, then stop both cleanly;
    ``started`` is called once both are up (the signals are handled from before)."""
    stop = _stop_on_signals()
    apis: list[NodeApi] = []
    try:
        await node.start()
        apis = await start_apis([node])
        if started is not None:
            started()
        await stop.wait()
    finally:
        await asyncio.gather(*(a.stop() for a in apis), return_exceptions=True)
        await asyncio.shield(node.stop())


def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The node's YAML config.")],
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning or error (default: log.level)."),
    ] = None,
    log_format: LogFormat = None,
) -> None:
    """Run one node (and its API, unless api.enabled is false) until SIGINT or SIGTERM."""
    from lumera_p2p.eventloop import freeze_long_lived, run_event_loop
    from lumera_p2p.identity.keyring import resolve_passphrase
    from lumera_p2p.service import P2P

    cfg = load_config_or_exit(config)
    _logging(log_level, cfg.log, log_format)
    ring = cfg.keyring
    if ring.backend == "os":
        fail(os_backend_advice(cfg.key_name, str(ring.dir)), EXIT_FAILURE)

    async def main() -> None:
        # Secrets and the environment are read here, by the command line, and nowhere below.
        passphrase = resolve_passphrase(
            ring.passphrase_plain, ring.passphrase_env, ring.passphrase_file, os.environ
        )
        node = await P2P.create(cfg, passphrase=passphrase)
        await serve_until_signalled(node, started=freeze_long_lived)

    with reported_errors():
        run_event_loop(main())


def localnet(
    ctx: typer.Context,
    nodes: Annotated[
        int, typer.Option("--nodes", "-n", help="How many nodes.", min=1, max=1000)
    ] = 6,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where keys, registry and configs go.")
    ] = Path("localnet"),
    processes: Annotated[
        bool, typer.Option("--processes", help="One process per node (else all in this one).")
    ] = False,
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds",
            help="Each node joins through this many earlier nodes (0: every node in the "
            "registry; default 3 with --processes, else 0).",
            min=0,
        ),
    ]
    | None = None,
    log_level: LogLevel = "warning",
    log_format: LogFormat = None,
) -> None:
    """Create (or reuse, with its ports) a local network under DIR and run it until
    interrupted. Node N listens on its own loopback address (127.0.0.2, 127.0.0.3, ...);
    in one process each node also serves its API (its config's api.listen).

    One line per node (address, P2P endpoint, API URL or ``-``, and ``pid N`` with
    ``--processes``), then ``ready``.
    """
    if ctx.invoked_subcommand is not None:
        return  # ``localnet add``: the group's own run is not wanted
    from lumera_p2p.eventloop import freeze_long_lived, run_event_loop
    from lumera_p2p.localnet import create_localnet, load_configs, start_nodes
    from lumera_p2p.localnet_processes import spawn_nodes, stop_nodes

    _logging(log_level, fmt=log_format)
    join_through = (3 if processes else 0) if seeds is None else seeds

    async def main() -> None:
        # Signals only set an event, from the start: nodes are always stopped cleanly.
        stop = _stop_on_signals()
        local = create_localnet(directory, nodes, seeds=join_through)
        if processes:
            children = await spawn_nodes(local)
            try:
                for child in children:
                    typer.echo(f"{child.address} {child.endpoint} - pid {child.pid}")
                typer.echo("ready")
                await stop.wait()
            finally:
                await stop_nodes(children)
            return
        running = await start_nodes(load_configs(local))
        apis: list[NodeApi] = []
        try:
            apis = await start_apis(running)
            freeze_long_lived()
            urls = {id(a.node): a.url for a in apis}
            for node in running:
                api = urls.get(id(node), "-")
                typer.echo(f"{node.address} {node.me.ip}:{node.port} {api}")
            typer.echo("ready")
            await stop.wait()
        finally:
            await asyncio.gather(*(a.stop() for a in apis), return_exceptions=True)
            await asyncio.gather(*(n.stop() for n in running), return_exceptions=True)

    with reported_errors():
        run_event_loop(main())


def demo(
    nodes: Annotated[
        int, typer.Option("--nodes", "-n", help="Nodes in the demo network.", min=6)
    ] = 12,
    megabytes: Annotated[float, typer.Option("--mb", help="Megabytes to store.", min=0.1)] = 4.0,
    keep: Annotated[bool, typer.Option(help="Keep the demo directory afterwards.")] = False,
) -> None:
    """Start a local network, store a batch through one node, read it through another,
    stop two nodes, read again, and print what happened."""
    from lumera_p2p.eventloop import run_event_loop
    from lumera_p2p.localnet import create_localnet, load_configs, start_nodes

    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="lumera-p2p-demo-"))
    rows: list[tuple[str, str, str]] = []

    def step(name: str, started: float, detail: str) -> None:
        rows.append((name, f"{(time.perf_counter() - started) * 1000:,.0f} ms", detail))
        console.print(f"[green]✓[/green] {name}: {detail}")

    async def main() -> None:
        started = time.perf_counter()
        local = create_localnet(workdir, nodes)
        running = await start_nodes(load_configs(local))
        try:
            peers = [n.node.peer_count for n in running]
            step(
                "start",
                started,
                f"{nodes} nodes on 127.0.0.x, routing tables {min(peers)}-{max(peers)}",
            )

            size = 64 * 1024
            count = max(1, int(megabytes * 1024 * 1024) // size)
            values = [os.urandom(size) for _ in range(count)]
            keys = [content_key(v) for v in values]
            writer, reader = running[0], running[-1]
            started = time.perf_counter()
            report = await writer.store_batch(values)
            mb = count * size / 1e6
            elapsed = time.perf_counter() - started
            step(
                "store_batch",
                started,
                f"{count} values ({mb:.1f} MB) via {writer.address[:14]}…, "
                f"{report.succeeded}/{report.requests} replica requests ok, "
                f"{mb / elapsed:.1f} MB/s",
            )

            started = time.perf_counter()
            held = count - len(await reader.db.missing([digest(v) for v in values]))
            found = await reader.batch_retrieve(keys)
            intact = sum(found.get(k) == v for k, v in zip(keys, values, strict=True))
            step(
                "batch_retrieve",
                started,
                f"{intact}/{count} intact via {reader.address[:14]}… "
                f"({held} from its own replicas, {count - held} over the network)",
            )
            if intact != count:
                raise RuntimeError(f"only {intact}/{count} values came back")

            started = time.perf_counter()
            victims = running[1:3]
            for node in victims:
                await node.stop()
            step("stop two nodes", started, ", ".join(n.address[:14] + "…" for n in victims))

            started = time.perf_counter()
            third = running[-2]
            held = count - len(await third.db.missing([digest(v) for v in values]))
            found = await third.batch_retrieve(keys)
            intact = sum(found.get(k) == v for k, v in zip(keys, values, strict=True))
            step(
                "retrieve again",
                started,
                f"{intact}/{count} intact via {third.address[:14]}… "
                f"({held} local, {count - held} over the network)",
            )
            if intact != count:
                raise RuntimeError(f"after stopping two nodes only {intact}/{count} came back")

            started = time.perf_counter()
            single = await running[-1].store(b"Hello, world!")
            back = await running[3].retrieve(single)
            step("store/retrieve", started, f"{single} -> {back!r}")
        finally:
            await asyncio.gather(*(n.stop() for n in running), return_exceptions=True)

    try:
        with reported_errors():
            run_event_loop(main())
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    table = Table(title="lumera-p2p demo")
    table.add_column("step")
    table.add_column("time", justify="right")
    table.add_column("what happened")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if keep:
        console.print(f"kept {workdir}")
