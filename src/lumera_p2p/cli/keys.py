"""``lumera-p2p keys``: manage the Cosmos SDK keyring (placeholder, being written)."""

from __future__ import annotations

import typer

keys_app = typer.Typer(help="Manage keys in a Cosmos SDK keyring directory.", no_args_is_help=True)
