"""The ``lumera-p2p`` command line."""

from __future__ import annotations

import sys

import typer

from lumera_p2p.cli.app import app
from lumera_p2p.cli.common import EXIT_USAGE


def main() -> None:
    """Entry point of the ``lumera-p2p`` console script.

    Usage errors (an unknown option, a missing argument) are printed as one line, like every
    other error of this command, instead of typer's framed panel.
    """
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:
        # Usage errors of the command-line parser (typer's bundled click): one line, exit 2.
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # empty after a group printed its help for missing arguments
            print(f"Error: {message}{hint}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
    except KeyboardInterrupt:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
