"""Which keys the data table may hold: an in-memory filter that spares a read for most misses.

A single-key retrieve reads its own store before asking the network, and most of the time the
key is not there (a value lives on its seven nearest nodes); so does a server asked for a value
it lacks. Each such miss costs an SQLite statement on the event loop (~15 µs among many nodes'
stores, the caches cold). The filter answers most of them from memory.

It is a bitmap indexed by the leading bits of a key (a BLAKE3 digest, so they are uniform): a
clear bit says the table holds no key with those bits; a set bit says it may, and the read
goes to SQLite as before. It never forgets a key (deleting one leaves its bit set: a false
positive, one read as before), so the only rule is that a key's bit is set before the key can
be read back: the writer sets it in the transaction that inserts the key, before the commit.
It is built at open from the keys stored, sized for them, and not resized as the table grows:
the share of false positives rises with it (a read each, as before the filter) until the next
open sizes it again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

#: Bits per key held at open: a false positive for about 1 absent key in 32.
BITS_PER_KEY = 32
#: The bitmap's bounds: 16 KiB (enough for 4,096 keys at 32 bits each) to 8 MiB.
MIN_BITS = 1 << 17
MAX_BITS = 1 << 26


class HeldKeys:
    """The keys the data table may hold (see the module docstring).

    ``add`` runs in the one writer thread, ``may_hold`` on the event loop: a bit is only ever
    set, by one thread, so a reader sees it clear only if it was never set.
    """

    __slots__ = ("_bits", "_shift")

    def __init__(self, keys_held: int = 0) -> None:
        size = MIN_BITS
        while size < MAX_BITS and size < keys_held * BITS_PER_KEY:
            size <<= 1
        self._bits = bytearray(size // 8)
        self._shift = 64 - (size.bit_length() - 1)

    @classmethod
    def of_table(cls, conn: sqlite3.Connection) -> HeldKeys:
        """A filter of the keys in ``conn``'s ``data`` table (at open, before any write)."""
        (count,) = conn.execute("SELECT COUNT(*) FROM data").fetchone()
        held = cls(int(count))
        for (hex_key,) in conn.execute("SELECT key FROM data"):
            held.add_hex(hex_key)
        return held

    def may_hold(self, key: bytes) -> bool:
        """False only if ``key`` (32 bytes) was never added."""
        i = int.from_bytes(key[:8], "big") >> self._shift
        return bool(self._bits[i >> 3] & (1 << (i & 7)))

    def add(self, keys: Iterable[bytes]) -> None:
        """Note ``keys`` (raw 32-byte keys) as held, before they are committed."""
        bits, shift = self._bits, self._shift
        for key in keys:
            i = int.from_bytes(key[:8], "big") >> shift
            bits[i >> 3] |= 1 << (i & 7)

    def add_hex(self, hex_key: object) -> None:
        """Note a key as the table spells it (lowercase hex). Anything else could never be
        read back by a raw key (reads ask for its lowercase hex): it is skipped."""
        if not isinstance(hex_key, str) or len(hex_key) != 64:
            return
        try:
            raw = bytes.fromhex(hex_key[:16])
        except ValueError:
            return
        self.add((raw,))
