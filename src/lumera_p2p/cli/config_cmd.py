"""``lumera-p2p config``: inspect configuration files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from lumera_p2p.cli.common import load_config_or_exit

config_app = typer.Typer(help="Inspect configuration files.", no_args_is_help=True)


@config_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The YAML configuration file to check.")],
) -> None:
    """Validate FILE and print the resolved configuration (defaults filled, paths absolute)."""
    config = load_config_or_exit(file)
    typer.echo(f"# {file}: ok", err=True)
    typer.echo(yaml.safe_dump(config.redacted(), sort_keys=False).rstrip())
