"""``lumera-p2p symbols``: register RaptorQ symbol directories, and see where they stand.

``add`` works on the files of a node that is not running (it takes the node's data-directory
lock); the node stores the directory once it runs. A running node registers through
``P2P.register_symbol_dir``. ``list`` only reads, so it works either way.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lumera_p2p.cli.common import UsageFailure, load_config_or_exit, reported_errors
from lumera_p2p.errors import SymbolDirError

symbols_app = typer.Typer(
    help="RaptorQ symbol directories the node stores (Go's rqstore).", no_args_is_help=True
)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The node's YAML config.")]


@symbols_app.command("add")
def add(
    txid: Annotated[str, typer.Argument(help="The action's txid (the directory's name).")],
    directory: Annotated[Path, typer.Argument(help="The directory of symbol files.")],
    config: ConfigOption,
    first_batch_stored: Annotated[
        bool,
        typer.Option(
            "--first-batch-stored/--first-batch-pending",
            help="Whether the worker may take it now (Go's is_first_batch_stored).",
        ),
    ] = True,
) -> None:
    """Register DIRECTORY under TXID for a node that is not running: once it runs, it stores
    every symbol file, deletes each stored one, and removes DIRECTORY if it is named TXID."""
    from lumera_p2p.symbols.registration import register_offline

    cfg = load_config_or_exit(config)
    with reported_errors():
        try:
            status = asyncio.run(
                register_offline(cfg, txid, directory, first_batch_stored=first_batch_stored)
            )
        except SymbolDirError as exc:
            raise UsageFailure(str(exc)) from None
        typer.echo(f"registered {status.txid} {status.directory}")


@symbols_app.command("list")
def list_dirs(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Every registered directory: stored so far, refused, complete, last error."""
    from lumera_p2p.components import rqstore_path
    from lumera_p2p.store.rqstore import read_status_file

    cfg = load_config_or_exit(config)
    with reported_errors():
        rows = read_status_file(rqstore_path(cfg))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(asdict(row)))
        return
    table = Table(title=f"symbol directories ({len(rows)})")
    for column in ("txid", "directory", "stored", "refused", "state", "last error"):
        table.add_column(column)
    for row in rows:
        state = (
            "complete"
            if row.completed
            else ("waiting" if row.first_batch_stored else "first batch pending")
        )
        table.add_row(
            row.txid, row.directory, str(row.stored), str(row.refused), state, row.last_error
        )
    Console().print(table)
