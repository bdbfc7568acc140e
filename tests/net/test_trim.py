"""Giving freed memory back after a large answer."""

from __future__ import annotations

import sys

import pytest

from lumera_p2p.net import trim


def test_small_frees_do_not_trim() -> None:
    assert not trim.give_back_freed_memory(trim.TRIM_AFTER - 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_large_frees_trim_on_glibc() -> None:
    assert trim._malloc_trim() is not None
    blocks = [bytearray(16 * 1024) for _ in range(4096)]  # 64 MiB of heap chunks
    del blocks
    assert trim.give_back_freed_memory(trim.TRIM_AFTER)
