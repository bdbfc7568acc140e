"""``lumera-p2p config``: inspect configuration files."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
import yaml

from lumera_p2p.cli.common import EXIT_FAILURE, load_config_or_exit
from lumera_p2p.preflight import Status, run_preflight

config_app = typer.Typer(help="Inspect configuration files.", no_args_is_help=True)


@config_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The YAML configuration file to check.")],
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not contact the chain (lumera.grpc_addr).")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 on warnings too, not only on failures.")
    ] = False,
) -> None:
    """Validate FILE, print it resolved (defaults filled, paths absolute), then check what
    `run` needs: the key, data_dir, the registry file, a peers source and the chain.

    One verdict line per check on stderr. Exit 0 when all pass, 1 when a check fails, 2 when
    the file itself is invalid (every problem printed, one per line).
    """
    config = load_config_or_exit(file)
    typer.echo(yaml.safe_dump(config.redacted(), sort_keys=False).rstrip())
    verdicts = asyncio.run(run_preflight(config, dict(os.environ), offline=offline))
    for verdict in verdicts:
        typer.echo(verdict.line(), err=True)
    failed = [v for v in verdicts if v.failed or (strict and v.status is Status.WARN)]
    warned = sum(v.status is Status.WARN for v in verdicts)
    if failed:
        typer.echo(f"# {file}: {len(failed)} of {len(verdicts)} checks failed", err=True)
        raise typer.Exit(EXIT_FAILURE)
    note = f", {warned} warning{'s' if warned != 1 else ''}" if warned else ""
    typer.echo(f"# {file}: ok{note}", err=True)
