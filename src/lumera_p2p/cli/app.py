"""The root typer application; each command group lives in its own module."""

from __future__ import annotations

from typing import Annotated

import typer

from lumera_p2p import __version__
from lumera_p2p.cli import client_cmds
from lumera_p2p.cli.config_cmd import config_app
from lumera_p2p.cli.doctor_cmd import doctor
from lumera_p2p.cli.keys import keys_app
from lumera_p2p.cli.localnet_cmds import localnet_app
from lumera_p2p.cli.node_cmds import demo, run
from lumera_p2p.cli.sim_cmd import sim
from lumera_p2p.cli.symbols_cmd import symbols_app

app = typer.Typer(
    name="lumera-p2p",
    help="A Python peer of the Lumera supernode P2P network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"lumera-p2p {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """A Python peer of the Lumera supernode P2P network."""


app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")
app.add_typer(localnet_app, name="localnet")
app.add_typer(symbols_app, name="symbols")
app.command("sim")(sim)
app.command("run")(run)
app.command("demo")(demo)
app.command("doctor")(doctor)
for _command in ("put", "get", "status", "peers", "ls", "stats"):
    app.command(_command)(getattr(client_cmds, _command))
