"""Symbol directories on disk as RaptorQ writes them, for the tests."""

from __future__ import annotations

import os
from pathlib import Path

from lumera_p2p.content import content_key
from lumera_p2p.symbols.files import LAYOUT_FILE


def write_symbol_dir(
    directory: Path, count: int, *, size: int = 256, blocks: int = 1
) -> dict[str, bytes]:
    """``count`` random symbols in ``directory/block_<n>/<key>`` and a layout file; return
    them by content key."""
    symbols: dict[str, bytes] = {}
    for n in range(blocks):
        (directory / f"block_{n}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        value = os.urandom(size)
        key = content_key(value)
        (directory / f"block_{i % blocks}" / key).write_bytes(value)
        symbols[key] = value
    (directory / LAYOUT_FILE).write_text('{"blocks": []}')
    return symbols


def files_left(directory: Path) -> set[str]:
    """Names of the symbol files still below ``directory`` (the layout file aside)."""
    if not directory.exists():
        return set()
    return {p.name for p in directory.rglob("*") if p.is_file() and p.name != LAYOUT_FILE}
