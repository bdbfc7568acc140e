"""Registering a symbol directory: the checks, and the command line's way in while no node runs.

A running node registers through ``P2P.register_symbol_dir``, which is the one entry point
(a local API wraps it). ``lumera-p2p symbols add`` works on a stopped node's files: it takes the
lock on ``p2p.data_dir`` that a running node holds, so the two never write ``rqstore.db`` at once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lumera_p2p.components import rqstore_path
from lumera_p2p.errors import DataDirLocked, StoreError, SymbolDirError
from lumera_p2p.store.lock import DataDirLock
from lumera_p2p.store.rqstore import RQStore, SymbolDirStatus

if TYPE_CHECKING:
    from lumera_p2p.config import Config

#: The longest txid accepted (Lumera action IDs and task IDs are far shorter).
MAX_TXID_LENGTH = 256


def checked_registration(txid: str, directory: str | os.PathLike[str]) -> str:
    """The absolute, normalised path to record for ``txid``; raise ``SymbolDirError``.

    The txid must be printable text without spaces or path separators (the worker compares it
    with the directory's base name before removing anything), and the directory must exist.
    """
    if not isinstance(txid, str) or not txid:
        raise SymbolDirError("txid must be a non-empty string")
    if len(txid) > MAX_TXID_LENGTH:
        raise SymbolDirError(f"txid has {len(txid)} characters, at most {MAX_TXID_LENGTH}")
    if not txid.isprintable() or any(c.isspace() or c in "/\\" for c in txid):
        raise SymbolDirError(f"txid {txid!r} must be printable, without spaces or slashes")
    if txid in (".", ".."):
        raise SymbolDirError(f"txid {txid!r} is not a name")
    path = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(path):
        raise SymbolDirError(f"{path}: not a directory")
    return path


async def register_offline(
    config: Config, txid: str, directory: str | os.PathLike[str], *, first_batch_stored: bool
) -> SymbolDirStatus:
    """Register ``directory`` in the ``rqstore.db`` of a node that is not running; it is
    stored once the node runs. Raise ``SymbolDirError``, or ``DataDirLocked`` if it runs."""
    path = checked_registration(txid, directory)
    data_dir = config.p2p.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StoreError(f"{data_dir}: cannot create the data directory ({exc})") from exc
    try:
        lock = DataDirLock.acquire(data_dir)
    except DataDirLocked as exc:
        raise DataDirLocked(
            f"{exc}; while the node runs, register through the node itself "
            "(P2P.register_symbol_dir)"
        ) from None
    try:
        store = await RQStore.open(rqstore_path(config))
        try:
            await store.register(txid, path, first_batch_stored=first_batch_stored)
            [status] = await store.status(txid)
            return status
        finally:
            await store.close()
    finally:
        lock.release()
