"""Listing, reading, checking and deleting symbol files on a real file system."""

from __future__ import annotations

import os
from pathlib import Path

from lumera_p2p.content import content_key
from lumera_p2p.symbols.files import (
    LAYOUT_FILE,
    delete_files,
    list_symbol_files,
    load_symbols,
    prune_empty_block_dirs,
    remove_directory,
)
from tests.symbols.dirs import write_symbol_dir


def test_listing_is_gos_top_files_and_one_level_of_blocks_without_the_layout(
    tmp_path: Path,
) -> None:
    symbols = write_symbol_dir(tmp_path, 6, blocks=2)
    (tmp_path / "block_1" / LAYOUT_FILE).write_text("{}")
    (tmp_path / "block_1" / "deeper").mkdir()
    (tmp_path / "block_1" / "deeper" / "ignored").write_bytes(b"x")
    top = os.urandom(10)
    (tmp_path / content_key(top)).write_bytes(top)
    (tmp_path / "block_0" / "link").symlink_to(tmp_path / LAYOUT_FILE)
    names = {f.name for f in list_symbol_files(tmp_path)}
    in_blocks = {n.split("/", 1)[1] for n in names if "/" in n}
    assert in_blocks == set(symbols) | {"link"}
    assert content_key(top) in names
    assert all(n.startswith(("block_0/", "block_1/")) or "/" not in n for n in names)
    assert not any(LAYOUT_FILE in n or "ignored" in n for n in names)
    sizes = {f.name: f.size for f in list_symbol_files(tmp_path)}
    assert sizes[content_key(top)] == 10


def test_every_file_is_checked_against_its_name(tmp_path: Path) -> None:
    symbols = write_symbol_dir(tmp_path, 4, size=32)
    keys = sorted(symbols)
    block = tmp_path / "block_0"
    (block / keys[0]).write_bytes(b"damaged")  # no longer hashes to its name
    (block / "symbol_7.bin").write_bytes(b"not named by its key")
    linked = os.urandom(8)
    (tmp_path / "outside").write_bytes(linked)
    (block / content_key(linked)).symlink_to(tmp_path / "outside")
    os.mkfifo(block / content_key(b"fifo"))  # a FIFO must not hang the read
    large = os.urandom(100)
    (block / content_key(large)).write_bytes(large)
    names = [f"block_0/{n}" for n in os.listdir(block)] + ["block_0/" + content_key(b"gone")]
    batch = load_symbols(tmp_path, names, max_size=64)
    assert sorted(batch.verified) == [f"block_0/{k}" for k in keys[1:]]
    assert sorted(batch.values) == sorted(symbols[k] for k in keys[1:])
    assert batch.missing == ["block_0/" + content_key(b"gone")]
    reasons = batch.refused
    assert "does not hash to its name" in reasons[f"block_0/{keys[0]}"]
    assert "not named by its content key" in reasons["block_0/symbol_7.bin"]
    assert "symbolic link" in reasons[f"block_0/{content_key(linked)}"]
    assert "not a regular file" in reasons[f"block_0/{content_key(b'fifo')}"]
    assert "over the limit of 64" in reasons[f"block_0/{content_key(large)}"]


def test_the_same_symbol_in_two_blocks_is_one_value(tmp_path: Path) -> None:
    value = os.urandom(32)
    for block in ("block_0", "block_1"):
        (tmp_path / block).mkdir()
        (tmp_path / block / content_key(value)).write_bytes(value)
    names = [f"block_0/{content_key(value)}", f"block_1/{content_key(value)}"]
    batch = load_symbols(tmp_path, names, max_size=1024)
    assert batch.verified == names and batch.values == [value]


def test_delete_reports_what_it_could_not_delete(tmp_path: Path) -> None:
    symbols = write_symbol_dir(tmp_path, 3)
    names = [f"block_0/{k}" for k in symbols]
    (tmp_path / "block_0" / "a-dir").mkdir()
    failed = delete_files(tmp_path, [*names, "block_0/never-there", "block_0/a-dir"])
    assert list(failed) == ["block_0/a-dir"]
    assert sorted(os.listdir(tmp_path / "block_0")) == ["a-dir"]


def test_pruning_removes_only_empty_block_dirs(tmp_path: Path) -> None:
    write_symbol_dir(tmp_path, 2, blocks=2)
    for path in (tmp_path / "block_0").iterdir():
        path.unlink()
    (tmp_path / "other").mkdir()
    prune_empty_block_dirs(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([LAYOUT_FILE, "block_1", "other"])
    prune_empty_block_dirs(tmp_path / "not-there")  # best effort, no error


def test_removal_never_follows_a_link_out_of_the_directory(tmp_path: Path) -> None:
    outside = tmp_path / "keep"
    outside.mkdir()
    (outside / "precious").write_bytes(b"x")
    victim = tmp_path / "tx1"
    write_symbol_dir(victim, 2)
    (victim / "block_0" / "escape").symlink_to(outside)
    (victim / "escape-dir").symlink_to(outside)
    assert remove_directory(victim) is None
    assert not victim.exists()
    assert (outside / "precious").read_bytes() == b"x"
    assert remove_directory(victim) is None  # already gone
