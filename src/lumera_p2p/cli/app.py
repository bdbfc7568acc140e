"""The root typer application; each command group lives in its own module."""

from __future__ import annotations

import typer

from lumera_p2p.cli.config_cmd import config_app
from lumera_p2p.cli.doctor_cmd import doctor
from lumera_p2p.cli.keys import keys_app
from lumera_p2p.cli.node_cmds import demo, localnet, run
from lumera_p2p.cli.sim_cmd import sim
from lumera_p2p.cli.symbols_cmd import symbols_app

app = typer.Typer(
    name="lumera-p2p",
    help="A Python peer of the Lumera supernode P2P network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")
app.add_typer(symbols_app, name="symbols")
app.command("sim")(sim)
app.command("run")(run)
app.command("localnet")(localnet)
app.command("demo")(demo)
app.command("doctor")(doctor)
