"""The ``lumera-p2p`` command line."""

from __future__ import annotations

from lumera_p2p.cli.app import app


def main() -> None:
    """Entry point of the ``lumera-p2p`` console script."""
    app()


__all__ = ["app", "main"]
