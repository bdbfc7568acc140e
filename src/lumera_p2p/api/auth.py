"""The API's bearer token: a file in ``data_dir``, made on first start, readable by the owner.

Clients on the same machine read it (``lumera-p2p put --config …`` does); anyone else must be
given it. It is asked for when the API listens on anything but a loopback address, or always
with ``api.require_token``.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import tempfile
from pathlib import Path

#: Bytes of randomness in a new token (256 bits, URL-safe base64: 43 characters).
TOKEN_BYTES = 32
_MAX_TOKEN_FILE = 4096


def is_loopback(host: str) -> bool:
    """Is ``host`` a loopback address (127.0.0.0/8, ::1) or ``localhost``?"""
    text = host.strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def token_required(listen_host: str, require_token: bool) -> bool:
    """Whether requests must carry the token: always when asked to, else off loopback."""
    return require_token or not is_loopback(listen_host)


def read_token(path: Path) -> str:
    """The token in ``path``; ``OSError`` if unreadable, ``ValueError`` if not a token."""
    with open(path, "rb") as handle:
        raw = handle.read(_MAX_TOKEN_FILE + 1)
    if len(raw) > _MAX_TOKEN_FILE:
        raise ValueError(f"{path}: too large for a token file")
    token = raw.decode("ascii", errors="replace").strip()
    if not token or not token.isprintable() or " " in token:
        raise ValueError(f"{path}: not a token (one line of printable characters)")
    return token


def load_or_create_token(path: Path) -> str:
    """The token in ``path``, made first (mode 0600, never overwritten) if there is none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return read_token(path)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    # Written whole to a private temporary file, then linked into place: the link fails if
    # the file exists, so two nodes starting at once agree on one token, and no reader ever
    # sees a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(token + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return read_token(path)
    finally:
        os.unlink(tmp)
    return token


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison (the token must not leak through timing)."""
    return hmac.compare_digest(given.encode(), expected.encode())
