"""``lumera-p2p put/get/status/peers/ls/stats``: commands against a running node's API.

``put`` sends a file (or stdin) as a stream and prints its key: one value up to one chunk
(1 MiB), a file of chunks and a manifest beyond (``POST /api/v1/files``). ``get`` streams a
value or a file into a file (or stdout), checking its BLAKE3 hash as it arrives; into a file
it resumes an interrupted get (an HTTP range from what the partial file holds). Both show a progress
bar on stderr when it is a terminal (``--progress`` to force it). Every command takes
``--json`` for one JSON object on stdout, and ``--api URL`` or ``--config FILE`` to choose the
node (see :mod:`lumera_p2p.cli.api_client`).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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

from lumera_p2p.cli.common import EXIT_USAGE, fail, reported_errors
from lumera_p2p.errors import RangeRefused, ValueMismatch

#: Bytes read from a file per chunk sent (and the size past which ``put`` sends a file).
CHUNK = 1 << 20
#: A resuming get's sidecar notes the bytes written about this often.
_NOTE_EVERY = 16 * CHUNK

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


def _fetch(
    path: str, api: str | None, config: Path | None, token_file: Path | None, as_json: bool
) -> Any:
    """``GET path`` from the node; with ``--json`` the answer is printed as it is and None
    returned (the caller has nothing left to do), else the answer for the caller to show."""
    with reported_errors(), _client(api, config, token_file) as client:
        result = client.get_json(path)
    if as_json:
        _print_json(result)
        return None
    return result


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


KindOpt = Annotated[
    str,
    typer.Option(
        "--as",
        help="auto: a file when larger than one chunk (1 MiB), else a value; value: one DHT "
        "value (at most the node's api.max_value_bytes); file: chunks and a manifest.",
        case_sensitive=False,
    ),
]


def put(
    file: Annotated[str, typer.Argument(help="The file to store, or - for stdin.")],
    datatype: Annotated[int, typer.Option("--datatype", min=0, help="The value's datatype.")] = 0,
    kind: KindOpt = "auto",
    api: ApiOpt = None,
    config: ConfigOpt = None,
    token_file: TokenOpt = None,
    as_json: JsonOpt = False,
    progress: ProgressOpt = None,
) -> None:
    """Store FILE (or stdin) through a running node; print its key.

    Anything larger than one chunk (1 MiB) goes as a file (``--as auto``): chunks and a
    manifest, streamed in bounded memory, the key naming the file. Interrupted, the same
    command run again re-sends the bytes to the node, which skips the chunks it already
    stored on enough replicas.
    """
    kind = kind.lower()
    if kind not in ("auto", "value", "file"):
        fail(f"--as must be auto, value or file, not {kind!r}", EXIT_USAGE)
    if kind == "file" and datatype:
        fail("--datatype applies to a single value, not to a file (--as file)", EXIT_USAGE)
    with reported_errors():
        source: IO[bytes]
        if file == "-":
            source, length, name = sys.stdin.buffer, None, "stdin"
        else:
            path = Path(file)
            source = open(path, "rb")  # noqa: SIM115  (closed below, also on errors)
            length, name = os.fstat(source.fileno()).st_size, path.name
        try:
            # Of a stream of unknown length, read a chunk and a byte to tell which it is.
            head = b""
            if kind == "auto" and length is None:
                head = _read_up_to(source, CHUNK + 1)
                if len(head) <= CHUNK:
                    length = len(head)
            as_file = kind == "file" or (
                kind == "auto" and datatype == 0 and (length is None or length > CHUNK)
            )
            with _client(api, config, token_file) as client, _progress(progress) as bar:
                task = bar.add_task(f"put {name}", total=length)

                def chunks() -> Iterator[bytes]:
                    if head:
                        bar.advance(task, len(head))
                        yield head
                    while chunk := source.read(CHUNK):
                        bar.advance(task, len(chunk))
                        yield chunk

                if as_file:
                    result = client.put_file_stream(chunks(), length)
                else:
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


def _read_up_to(source: IO[bytes], n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n and (piece := source.read(n - got)):
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def get(
    key: Annotated[str, typer.Argument(help="The base58 key of a value or a file.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write here (default: stdout); an interrupted get into a file resumes when "
            "run again (FILE.lumera-part).",
        ),
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="Only the node's own copy.")] = False,
    api: ApiOpt = None,
    config: ConfigOpt = None,
    token_file: TokenOpt = None,
    as_json: JsonOpt = False,
    progress: ProgressOpt = None,
) -> None:
    """Fetch KEY (a value, or a file stored in chunks) through a running node, checking its
    BLAKE3 hash; write it to -o FILE or stdout.

    Into a file, the bytes go to ``FILE.lumera-part`` (with a sidecar naming the key), renamed
    to FILE once the whole matches; run again after an interruption, the get hashes what the
    partial file holds and asks the node only for the rest.
    """
    from lumera_p2p.content import key_to_bytes

    with reported_errors():
        key_to_bytes(key)  # a malformed key fails here, with the reason
        with _client(api, config, token_file) as client:
            if output is None:
                got = _get_to_stream(client, key, local, progress, sys.stdout.buffer)
            elif _is_special(output):
                # A device or a pipe (/dev/null, a FIFO) is written as it is, never resumed:
                # a partial file renamed over it would replace the device itself.
                with open(output, "wb") as sink:
                    got = _get_to_stream(client, key, local, progress, sink)
            else:
                got = _get_to_file(client, key, output, local, progress)
    if as_json:
        result: dict[str, Any] = {"key": key, "size": got.size, "kind": got.kind}
        result.update(verified=True, resumed_bytes=got.resumed)
        if output is not None:
            result["output"] = str(output)
        _print_json(result)
    elif output is not None:
        resumed = f" ({_size(got.resumed)} kept from an earlier get)" if got.resumed else ""
        typer.echo(f"wrote {output}: {_size(got.size)}, BLAKE3 matches the key{resumed}", err=True)


@dataclass
class _Got:
    size: int = 0
    kind: str = "value"
    #: Bytes a resumed get kept from the partial file.
    resumed: int = 0


def _verify(key: str, kind: str, expected: str, hasher: Any, size: int | None, got: int) -> None:
    from lumera_p2p.content import key_from_bytes

    actual_key = key_from_bytes(hasher.digest())
    if actual_key != expected or (kind == "value" and actual_key != key):
        raise ValueMismatch(
            f"{key}: the data received hashes to {actual_key}, not to its key: discarded"
        )
    if size is not None and got != size:
        raise ValueMismatch(f"{key}: received {got} of {size} bytes")


def _is_special(path: Path) -> bool:
    """Whether ``path`` exists and is no regular file (a device, a FIFO, a socket)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _get_to_stream(
    client: Any, key: str, local: bool, progress: bool | None, sink: IO[bytes]
) -> _Got:
    import blake3

    hasher = blake3.blake3()
    out = _Got()
    with client.get_stream(key, local=local) as response, _progress(progress) as bar:
        size = _header_int(response, "content-length")
        expected = response.headers.get("x-content-key", key)
        out.kind = response.headers.get("x-value-kind", "value")
        task = bar.add_task(f"get {key[:12]}…", total=size)
        for chunk in response.iter_bytes(CHUNK):
            hasher.update(chunk)
            sink.write(chunk)
            out.size += len(chunk)
            bar.advance(task, len(chunk))
        sink.flush()
    _verify(key, out.kind, expected, hasher, size, out.size)
    return out


def _get_to_file(client: Any, key: str, output: Path, local: bool, progress: bool | None) -> _Got:
    import blake3

    from lumera_p2p.files.partial import PartialFile

    part = PartialFile.open(output, key, 0)
    finished = False
    written = 0
    try:
        hasher = blake3.blake3()
        kept = 0
        # What an earlier get left: hashed again (never trusted), then asked for the rest.
        while kept < part.found and (piece := part.read(min(CHUNK, part.found - kept))):
            hasher.update(piece)
            kept += len(piece)
        part.keep(kept)
        try:
            stream = client.get_stream(key, local=local, offset=kept)
            response = stream.__enter__()
        except RangeRefused:
            kept, hasher = 0, blake3.blake3()
            part.keep(0)
            stream = client.get_stream(key, local=local)
            response = stream.__enter__()
        with contextlib.ExitStack() as closing:
            closing.push(stream)
            if response.status_code != 206 and kept:
                kept, hasher = 0, blake3.blake3()  # the node sent it all: start over
                part.keep(0)
            size = _content_size(response, kept)
            expected = response.headers.get("x-content-key", key)
            kind = response.headers.get("x-value-kind", "value")
            part.size = size if size is not None else 0
            with _progress(progress) as bar:
                task = bar.add_task(f"get {key[:12]}…", total=size, completed=kept)
                written = kept
                for chunk in response.iter_bytes(CHUNK):
                    hasher.update(chunk)
                    part.write(chunk)
                    written += len(chunk)
                    if written % _NOTE_EVERY < len(chunk):
                        part.note(written)
                    bar.advance(task, len(chunk))
        try:
            _verify(key, kind, expected, hasher, size, written)
        except ValueMismatch:
            part.discard()
            finished = True
            raise
        part.finish()
        finished = True
        return _Got(written, kind, kept)
    finally:
        if finished:
            pass
        elif written or part.found:
            part.close()  # kept for a resume
        else:
            part.discard()  # nothing came (a 404, say): leave nothing behind


def _header_int(response: Any, name: str) -> int | None:
    text = response.headers.get(name, "")
    return int(text) if text.isdigit() else None


def _content_size(response: Any, offset: int) -> int | None:
    """The whole length: from ``Content-Range`` (``bytes a-b/N``) on a 206, else the body's."""
    if response.status_code == 206:
        total = response.headers.get("content-range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    return _header_int(response, "content-length")


def status(
    api: ApiOpt = None,
    config: ConfigOpt = None,
    token_file: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The node at a glance: peers, storage, repair backlog, recent errors."""
    s = _fetch("/api/v1/status", api, config, token_file, as_json)
    if s is None:
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
    result = _fetch("/api/v1/peers", api, config, token_file, as_json)
    if result is None:
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
    result = _fetch("/api/v1/stats", api, config, token_file, as_json)
    if result is None:
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
