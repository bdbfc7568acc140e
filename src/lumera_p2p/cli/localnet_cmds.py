"""``lumera-p2p localnet``: run a local network (the group's own command) or ``add`` to one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumera_p2p.cli.common import UsageFailure, reported_errors
from lumera_p2p.cli.node_cmds import localnet

localnet_app = typer.Typer(
    help="Run a local network of nodes on 127.0.0.1 (keys, registry and configs under --dir), "
    "or add a member to one.",
    invoke_without_command=True,
)
localnet_app.callback()(localnet)


@localnet_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The new member's name (its key and folder).")],
    directory: Annotated[Path, typer.Option("--dir", help="The local network's directory.")] = Path(
        "localnet"
    ),
    state: Annotated[
        str,
        typer.Option(
            "--state",
            help="Its registry state: ACTIVE (a full member) or POSTPONED (routed to, "
            "stores nothing), ...",
        ),
    ] = "ACTIVE",
) -> None:
    """Add NAME to a (running) local network: a key, a registry entry and DIR/NAME/config.yml.

    Running nodes admit it once they re-read the registry (their allowlist refresh, 10 s in a
    local network). Start it with `lumera-p2p run --config DIR/NAME/config.yml`. Prints the
    config path on the last line.
    """
    from lumera_p2p.chain.registry import SupernodeState
    from lumera_p2p.localnet import add_member

    with reported_errors():
        wanted = state.strip().upper().removeprefix("SUPERNODE_STATE_")
        if wanted not in SupernodeState.__members__:
            names = ", ".join(SupernodeState.__members__)
            raise UsageFailure(f"--state: {state!r} is not a supernode state ({names})")
        member = add_member(directory, name, state=SupernodeState[wanted])
        typer.echo(f"{member.address} 127.0.0.1:{member.port} http://127.0.0.1:{member.api_port}")
        typer.echo(str(member.config_path))
