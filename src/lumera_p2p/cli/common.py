"""Helpers shared by the CLI commands: one-line errors and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer

from lumera_p2p.config import Config, load_config
from lumera_p2p.errors import ConfigError, LumeraP2PError

#: Exit status of a runtime failure (I/O, network, a wrong passphrase…).
EXIT_FAILURE = 1
#: Exit status of bad usage or a bad configuration.
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with ``code``."""
    fail_lines([message], code)


def fail_lines(messages: Iterable[str], code: int = EXIT_FAILURE) -> NoReturn:
    """Print each message as one ``Error: …`` line of stderr and exit with ``code``."""
    for message in messages:
        one_line = " ".join(message.split())
        print(f"Error: {one_line}", file=sys.stderr)
    raise typer.Exit(code)


class UsageFailure(Exception):
    """Raised inside :func:`reported_errors` for a usage or configuration problem (exit 2)."""


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn every expected failure into stderr lines and an exit status, never a traceback.

    ``UsageFailure`` and ``ConfigError`` exit 2 (a ``ConfigError`` prints one line per
    problem); other package errors, OS errors and undecodable input exit 1.
    """
    try:
        yield
    except UsageFailure as exc:
        fail(str(exc), EXIT_USAGE)
    except ConfigError as exc:
        fail_lines(exc.lines(), EXIT_USAGE)
    except LumeraP2PError as exc:
        fail(str(exc), EXIT_FAILURE)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}", EXIT_FAILURE)
    except UnicodeDecodeError:
        fail("input is not UTF-8 text", EXIT_FAILURE)


def load_config_or_exit(path: Path) -> Config:
    """Load a config file, or exit with status 2 and one line per problem, naming the field."""
    try:
        return load_config(path)
    except ConfigError as exc:
        fail_lines(
            (
                f"{path}: {line}" if field else line
                for (field, _), line in zip(exc.problems, exc.lines(), strict=True)
            ),
            EXIT_USAGE,
        )
