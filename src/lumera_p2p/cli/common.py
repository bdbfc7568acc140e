"""Helpers shared by the CLI commands: one-line errors and exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

from lumera_p2p.config import Config, load_config
from lumera_p2p.errors import ConfigError

#: Exit status of a runtime failure (I/O, network, a wrong passphrase…).
EXIT_FAILURE = 1
#: Exit status of bad usage or a bad configuration.
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with ``code``."""
    one_line = " ".join(message.split())
    print(f"error: {one_line}", file=sys.stderr)
    raise typer.Exit(code)


def load_config_or_exit(path: Path) -> Config:
    """Load a config file, or exit with status 2 and a line naming the bad field."""
    try:
        return load_config(path)
    except ConfigError as exc:
        where = f"{path}: " if exc.field else ""
        fail(f"{where}{exc}", EXIT_USAGE)
