"""Give memory that was freed back to the kernel (glibc's ``malloc_trim``), after a large answer.

An answer of 190 MB of 16 KiB values is 12,000 heap allocations; once the answer is encoded
they are freed, but glibc keeps freed heap memory for reuse and returns only what sits at the
top of the heap. Measured under four concurrent BatchGetValues of 20,000 keys: 317 MB of
freed memory still held at the peak, beside 156 MB in use, so the node's RSS stood some 300 MB
above what its memory budget allowed. Trimming once a large answer's values are gone keeps the
RSS at the budget; it costs a few milliseconds, once per large answer. Elsewhere than glibc
this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from typing import Final

#: Answers and requests at least this large are followed by a trim.
TRIM_AFTER: Final = 32 * 1024 * 1024


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on another C library (looked up once)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def trim_heap() -> bool:
    """Return the heap's free pages to the kernel now (True if glibc did it)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def give_back_freed_memory(size: int) -> bool:
    """After ``size`` bytes were freed: if that is large, return the heap's free pages to the
    kernel. True if a trim ran."""
    if size < TRIM_AFTER:
        return False
    return trim_heap()
