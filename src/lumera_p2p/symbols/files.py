"""The file side of symbol ingestion: list a directory, read and check a batch, delete, remove.

Every function here blocks (it reads directories and files); the worker runs each in a thread
so the event loop stays free. The layout is RaptorQ's, as the Go node reads it
(``utils.ReadDirFilenames``): symbol files in ``<dir>/block_<n>/``, or (older) at the top,
each named by its content key, base58(BLAKE3-256 of its bytes), beside a
``_raptorq_layout.json`` that is not a symbol.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lumera_p2p.content import content_key, key_to_bytes
from lumera_p2p.dht.plans.symbol_dir import SymbolFile
from lumera_p2p.errors import InvalidContentKey

#: The layout file RaptorQ writes beside the symbols (Go skips it too).
LAYOUT_FILE = "_raptorq_layout.json"
_READ_CHUNK = 1024 * 1024


@dataclass
class LoadedBatch:
    """A batch read from disk: the values of the files that check out, and the others."""

    #: One value per distinct key among ``verified`` (two files of one key hold one value).
    values: list[bytes] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    #: Name → why it was refused.
    refused: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def _size(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0  # gone already: the read reports it missing


def list_symbol_files(root: Path) -> list[SymbolFile]:
    """Every candidate symbol file of ``root``: the files at the top and in each subdirectory
    one level down, except the layout file (Go's ``ReadDirFilenames``). Symbolic links are
    listed (and refused when read). Raises ``OSError`` when a directory cannot be read."""
    out: list[SymbolFile] = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                with os.scandir(entry.path) as inner:
                    for item in inner:
                        if item.name != LAYOUT_FILE and not item.is_dir(follow_symlinks=False):
                            out.append(SymbolFile(f"{entry.name}/{item.name}", _size(item)))
            elif entry.name != LAYOUT_FILE:
                out.append(SymbolFile(entry.name, _size(entry)))
    return out


def _named_by_key(name: str) -> bool:
    try:
        key_to_bytes(name)
    except InvalidContentKey:
        return False
    return True


def _read_at_most(fd: int, limit: int) -> bytes:
    """The file's bytes, or ``limit + 1`` of them if it is longer (it grew since ``fstat``)."""
    parts: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = os.read(fd, min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


def _read_symbol(path: Path, key: str, max_size: int) -> bytes | str | None:
    """The checked content of one symbol file, the reason it is refused, or None if gone."""
    try:
        # O_NOFOLLOW: a link is not a symbol file; O_NONBLOCK: a FIFO must not hang the read.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link, not a symbol file"
        return f"cannot be opened ({exc.strerror or exc})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size > max_size:
            return f"{info.st_size} bytes, over the limit of {max_size}"
        data = _read_at_most(fd, max_size)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    finally:
        os.close(fd)
    if len(data) > max_size:
        return f"over the limit of {max_size} bytes"
    actual = content_key(data)
    if actual != key:
        return f"content does not hash to its name (BLAKE3 gives {actual})"
    return data


def load_symbols(root: Path, names: list[str] | tuple[str, ...], max_size: int) -> LoadedBatch:
    """Read ``names`` below ``root``, checking each file's BLAKE3 against its name."""
    batch = LoadedBatch()
    seen: set[str] = set()
    for name in names:
        key = name.rsplit("/", 1)[-1]
        if not _named_by_key(key):
            batch.refused[name] = "not named by its content key (base58 of BLAKE3-256)"
            continue
        result = _read_symbol(root / name, key, max_size)
        if result is None:
            batch.missing.append(name)
        elif isinstance(result, str):
            batch.refused[name] = result
        else:
            batch.verified.append(name)
            if key not in seen:
                seen.add(key)
                batch.values.append(result)
    return batch


def delete_files(root: Path, names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Delete ``names`` below ``root``; return those that could not be (name → why). A file
    already gone counts as deleted."""
    failed: dict[str, str] = {}
    for name in names:
        try:
            os.unlink(root / name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            failed[name] = exc.strerror or str(exc)
    return failed


def prune_empty_block_dirs(root: Path) -> None:
    """Remove the empty ``block_*`` subdirectories of ``root`` (Go's ``PruneEmptyBlockDirs``);
    best effort."""
    blocks: list[str] = []
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        blocks = [
            e.path
            for e in entries
            if e.name.startswith("block_") and e.is_dir(follow_symlinks=False)
        ]
    for path in blocks:
        with contextlib.suppress(OSError):
            os.rmdir(path)  # fails, harmlessly, unless it is empty


def remove_directory(root: Path) -> str | None:
    """Remove ``root`` and everything below it (links are removed, never followed); return
    why it failed, or None."""
    try:
        shutil.rmtree(root)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
