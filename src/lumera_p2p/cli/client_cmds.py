"""``lumera-p2p put/get/status/peers/ls/stats``: commands against a running node's API.

``put`` sends a file (or stdin) as a stream and prints its key; ``get`` streams a value into a
file (or stdout), checking its BLAKE3 hash against the key as it arrives. Both show a progress
bar on stderr when it is a terminal (``--progress`` to force it). Every command takes
``--json`` for one JSON object on stdout, and ``--api URL`` or ``--config FILE`` to choose the
node (see :mod:`lumera_p2p.cli.api_client`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from lumera_p2p.cli.common import EXIT_FAILURE, fail, reported_errors

#: Bytes read from a file per chunk sent.
CHUNK = 1 << 20

ApiOpt = Annotated[
    str | None,
    typer.Option("--api", help="The node's API URL (default: from --config, else 127.0.0.1:4446)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="The node's config: its api.listen and token file."),
]
TokenOpt = Annotated[
    Path | None, typer.Option("--token-file", help="A file holding the API's bearer token.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ProgressOpt = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Progress bar on stderr (default: if a tty)."),
]


def _client(api: str | None, config: Path | None, token_file: Path | None) -> Any:
    from lumera_p2p.cli.api_client import ApiClient, resolve_node

    return ApiClient(resolve_node(api, config, token_file))


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False))


def _progress(show: bool | None) -> Progress:
    console = Console(stderr=True)
    enabled = console.is_terminal if show is None else show
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def put(
    file: Annotated[str, typer.Argument(help="The file to store, or - for stdin.")],
    datatype: Annotated[int, typer.Option("--datatype", min=0, help="The value's datatype.")] = 0,
    api: ApiOpt = None,
    config: ConfigOpt = None,
    token_file: TokenOpt = None,
    as_json: JsonOpt = False,
    progress: ProgressOpt = None,
) -> None:
    """Store FILE (or stdin) through a running node; print its key."""
    with reported_errors():
        source: IO[bytes]
        if file == "-":
            source, length, name = sys.stdin.buffer, None, "stdin"
        else:
            path = Path(file)
            source = open(path, "rb")  # noqa: SIM115  (closed below, also on errors)
            length, name = os.fstat(source.fileno()).st_size, path.name
        try:
            with _client(api, config, token_file) as client, _progress(progress) as bar:
                task = bar.add_task(f"put {name}", total=length)

                def chunks() -> Iterator[bytes]:
                    while chunk := source.read(CHUNK):
                        bar.advance(task, len(chunk))
                        yield chunk

                result = client.put_stream(chunks(), length, datatype)
        finally:
            if source is not sys.stdin.buffer:
                source.close()
        if as_json:
            _print_json(result)
            return
        replicas = result.get("replicas")
        on = f", on {replicas} other nodes" if replicas is not None else ""
        typer.echo(f"stored {name}: {_size(result['size'])} as a {result['kind']}{on}", err=True)
        typer.echo(result["key"])


def get(
    key: Annotated[str, typer.Argument(help="The base58 key of the value.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="Only the node's own copy.")] = False,
    api: ApiOpt = None,
    config: ConfigOpt = None,
    token_file: TokenOpt = None,
    as_json: JsonOpt = False,
    progress: ProgressOpt = None,
) -> None:
    """Fetch KEY through a running node, checking its hash; write it to -o FILE or stdout."""
    import blake3

    from lumera_p2p.content import key_from_bytes, key_to_bytes

    with reported_errors():
        key_to_bytes(key)  # a malformed key fails here, with the reason
        hasher = blake3.blake3()
        tmp: Path | None = None
        written = 0
        try:
            with (
                _client(api, config, token_file) as client,
                client.get_stream(key, local=local) as response,
            ):
                size = int(response.headers.get("content-length", "0")) or None
                expected = response.headers.get("x-content-key", key)
                kind = response.headers.get("x-value-kind", "value")
                if output is not None:
                    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
                    tmp = Path(tmp_name)
                    sink: IO[bytes] = os.fdopen(fd, "wb")
                else:
                    sink = sys.stdout.buffer
                with _progress(progress) as bar, contextlib.ExitStack() as closing:
                    if output is not None:
                        closing.enter_context(sink)
                    task = bar.add_task(f"get {key[:12]}…", total=size)
                    for chunk in response.iter_bytes(CHUNK):
                        hasher.update(chunk)
                        sink.write(chunk)
                        written += len(chunk)
                        bar.advance(task, len(chunk))
                    sink.flush()
            actual_key = key_from_bytes(hasher.digest())
            if actual_key != expected or (kind == "value" and actual_key != key):
                fail(
                    f"{key}: the data received hashes to {actual_key}, not to its key: discarded",
                    EXIT_FAILURE,
                )
            if size is not None and written != size:
                fail(f"{key}: received {written} of {size} bytes", EXIT_FAILURE)
            if tmp is not None and output is not None:
                tmp.replace(output)
                tmp = None
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        if as_json:
            result = {"key": key, "size": written, "kind": kind, "verified": True}
            if output is not None:
                result["output"] = str(output)
            _print_json(result)
        elif output is not None:
            typer.echo(f"wrote {output}: {_size(written)}, BLAKE3 matches the key", err=True)


def status(
    api: ApiOpt = None,
    config: ConfigOpt = None,
    token_file: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The node at a glance: peers, storage, repair backlog, recent errors."""
    with reported_errors(), _client(api, config, token_file) as client:
        s = client.get_json("/api/v1/status")
    if as_json:
        _print_json(s)
        return
    st, repair = s["storage"], s["repair"]
    ready = "ready" if s["ready"] else "not ready"
    lines = [
        f"node      {s['address']} ({ready}, up {s['uptime_seconds']:.0f} s, v{s['version']})",
        f"p2p       {s['p2p_listen']}    api {s['api_listen']}",
        f"peers     {s['peers']} (banned {s['banned']}, registry {s['registry_supernodes']})",
        f"storage   {st['records']} values, {_size(st['value_bytes'])} "
        f"(files {_size(st['db_file_bytes'])}"
        + (f", disk free {_size(st['disk_free_bytes'])}" if st["disk_free_bytes"] else "")
        + ")",
        f"repair    {repair['pending_keys']} keys to fetch, {repair['dropped_keys']} dropped",
        f"errors    {len(s['recent_errors'])} recent",
    ]
    lines += [f"  {e['level']} {e['logger']}: {e['message']}" for e in s["recent_errors"][:5]]
    typer.echo("\n".join(lines))


def peers(
    api: ApiOpt = None,
    config: ConfigOpt = None,
    token_file: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The node's routing table (and its ban list)."""
    with reported_errors(), _client(api, config, token_file) as client:
        result = client.get_json("/api/v1/peers")
    if as_json:
        _print_json(result)
        return
    table = Table(title=f"{result['count']} peers", title_justify="left")
    for column in ("address", "endpoint", "version", "state"):
        # Never cut: an address is what one copies from here.
        table.add_column(column, no_wrap=True, overflow="ignore")
    for p in result["peers"]:
        state = "banned" if p["banned"] else "ok"
        table.add_row(p["address"], f"{p['ip']}:{p['port']}", p["version"] or "-", state)
    console = Console()
    # Piped output has no width to fit: lay the table out whole.
    (console if console.is_terminal else Console(width=240)).print(table)
    for b in result["bans"]:
        typer.echo(f"ban list: {b['address']} {b['count']} failures, {b['age_seconds']:.0f} s")


def ls(
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Keys per page.")] = 100,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Every page, not just the first.")
    ] = False,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Start after this cursor.")] = None,
    api: ApiOpt = None,
    config: ConfigOpt = None,
    token_file: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Keys stored on the node, oldest first (key, size, when stored)."""
    keys: list[dict[str, Any]] = []
    next_cursor = cursor
    with reported_errors(), _client(api, config, token_file) as client:
        while True:
            page = client.get_json("/api/v1/keys", limit=limit, cursor=next_cursor)
            keys += page["keys"]
            next_cursor = page["next"]
            if not all_pages or next_cursor is None:
                break
    if as_json:
        _print_json({"keys": keys, "next": next_cursor})
        return
    for entry in keys:
        typer.echo(f"{entry['key']}  {entry['size']:>12}  {entry['created_at']}")
    if next_cursor is not None:
        typer.echo(f"# more: --cursor '{next_cursor}' (or --all)", err=True)


def stats(
    api: ApiOpt = None,
    config: ConfigOpt = None,
    token_file: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every counter of the node (what P2P.stats() returns)."""
    with reported_errors(), _client(api, config, token_file) as client:
        result = client.get_json("/api/v1/stats")
    if as_json:
        _print_json(result)
        return
    for section in ("store", "server", "transport", "pool", "memory", "serving"):
        values = result.get(section) or {}
        flat = ", ".join(f"{k} {v}" for k, v in values.items() if not isinstance(v, dict))
        typer.echo(f"{section:<10}{flat}")
    dht = result["dht"]
    flat = ", ".join(f"{k} {v}" for k, v in dht.items() if isinstance(v, int))
    typer.echo(f"{'dht':<10}{flat}")
    sent = dht.get("rpc_sent_by_type", {})
    handled = {k: v["total"] for k, v in dht.get("handled_by_type", {}).items()}
    typer.echo(f"{'sent':<10}{', '.join(f'{k} {v}' for k, v in sorted(sent.items()))}")
    typer.echo(f"{'handled':<10}{', '.join(f'{k} {v}' for k, v in sorted(handled.items()))}")
