"""``lumera-p2p config``: inspect configuration files (placeholder, being written)."""

from __future__ import annotations

import typer

config_app = typer.Typer(help="Inspect configuration files.", no_args_is_help=True)
