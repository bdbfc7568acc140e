"""Logging for the node commands: the config's ``log`` section, overridden by ``--log-level``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from lumera_p2p.config import LogConfig

__all__ = ["JsonLineFormatter", "setup_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, RFC 3339), ``level``, ``logger``, ``message``
    and, when there is one, ``exception``; for log collectors that parse lines."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(log: LogConfig, level: str | None = None) -> None:
    """Send the root logger's records where ``log`` says, at ``level`` if given.

    ``level`` is a name already checked by the caller (``--log-level``). Raise ``OSError`` if
    ``log.file`` cannot be opened.
    """
    name = (level or log.level).upper()
    handler: logging.Handler = (
        logging.FileHandler(log.file, encoding="utf-8")
        if log.file is not None
        else logging.StreamHandler()
    )
    handler.setFormatter(
        JsonLineFormatter() if log.format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=getattr(logging, name), handlers=[handler], force=True)
