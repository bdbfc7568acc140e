"""What decoded values cost in memory, and the most one gob value may cost (its *allowance*).

A peer chooses how many Python objects its bytes become. Checking each count against the bytes
left (:mod:`.ops`) bounds the *time* a decode takes, not its memory: one wire byte is an empty
struct in a slice (a 72-byte ``Node``), two bytes a one-byte ``[]byte`` in a list, so a 400 MB
frame of empty ``*Node`` would become 30 GB. Both decoders (the general one and the generated
one) therefore charge an estimate of the memory of what they build, value by value, against an
allowance tied to the size of the stream, and refuse the value once the estimate passes it
(``gob: too many elements in message``).

The estimate is charged where the peer picks a count, when a slice, array or map count is read
and before a single element is decoded: ``count * (slot + fixed cost of one element)``, so an
oversized container is refused at once, without allocating. On top of that: the fixed cost of
every value decoded at the top (the root, each interface's contents, each type definition),
every decode of a recursive struct (its depth is not in its static cost), ``[]byte`` fields
handed out as views, and strings that are not ASCII (CPython may store them with up to 4 bytes
a character). What the estimate leaves out is what is at most proportional to the wire bytes:
the contents of ASCII strings and of ``[]byte`` (one byte per byte), so the memory a value
takes is at most its allowance plus the size of the stream.

Sizes are CPython's (3.11+, 64-bit) as ``sys.getsizeof`` gives them, garbage-collector header
included; the generated decoder charges exactly what the general one does for the same input.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Final

from lumera_p2p.wire.gob.types import (
    GoArray,
    GoBool,
    GoBytes,
    GoFloat,
    GoInt,
    GoInterface,
    GoMap,
    GoPtr,
    GoSlice,
    GoString,
    GoStruct,
    GoType,
    GoUint,
)

__all__ = [
    "BYTES_COST",
    "DEFAULT_DECODE_LIMIT",
    "DICT_COST",
    "DICT_ENTRY",
    "DICT_STR_ENTRY",
    "LIST_COST",
    "LIST_SLOT",
    "STR_COST",
    "VIEW_COST",
    "DecodeLimit",
    "element_cost",
    "entry_cost",
    "is_recursive",
    "max_charge_per_byte",
    "too_many_elements",
    "value_cost",
]

MIB: Final = 1024 * 1024

LIST_COST: Final = 88
"""A list with its first allocation (4 slots): ``sys.getsizeof`` of ``[]`` after one append."""
LIST_SLOT: Final = 9
"""One more list item: an 8-byte pointer, plus the 1/8 a growing list over-allocates."""
DICT_COST: Final = 184
"""A dict with its first table (``{'a': None}``)."""
DICT_ENTRY: Final = 60
"""One more dict entry, at worst (just after the table doubles)."""
DICT_STR_ENTRY: Final = 44
"""The same for a dict whose keys are all strings (CPython keeps those in a smaller table)."""
STR_COST: Final = 56
"""A ``str`` object without its characters (49, rounded up to pymalloc's 8-byte steps)."""
BYTES_COST: Final = 40
"""A ``bytes`` object without its contents (33, rounded up)."""
VIEW_COST: Final = sys.getsizeof(memoryview(b""))
"""A ``memoryview`` (a large ``[]byte`` field handed out as a view into the frame)."""
FLOAT_COST: Final = 24
_OBJECT_WITH_DICT: Final = 64
"""An instance with a ``__dict__`` (its attributes are charged as a dict's entries)."""


def _int_cost(bits: int) -> int:
    # CPython stores ints in 30-bit digits: 28 bytes up to 2**30, 4 more per digit.
    return 28 + 4 * max(0, (bits - 1) // 30)


def _object_cost(factory: Any, fields: int) -> int:
    """A struct value: a slotted instance, or an object (or dict) holding its fields in a dict."""
    if isinstance(factory, type):
        try:
            instance: object | None = object.__new__(factory)
        except TypeError:
            instance = None
        if instance is not None and not hasattr(instance, "__dict__"):
            return sys.getsizeof(instance)
    return _OBJECT_WITH_DICT + DICT_COST + fields * DICT_ENTRY


def value_cost(t: GoType, stack: tuple[GoStruct, ...] = ()) -> int:
    """The fixed memory of one decoded value of ``t``: its objects, without the elements of
    its slices and maps (charged when their counts are read) and without the contents of its
    strings and byte strings. A struct already on ``stack`` (a recursive reference) costs 0
    here: recursive structs are charged each time one is decoded."""
    if isinstance(t, GoPtr):
        return value_cost(t.elem, stack)
    if isinstance(t, GoStruct):
        if t in stack:
            return 0
        inner = (*stack, t)
        return _object_cost(t.factory, len(t.fields)) + sum(
            value_cost(f.type, inner) for f in t.fields
        )
    if isinstance(t, GoSlice | GoArray):
        return LIST_COST
    if isinstance(t, GoMap):
        return DICT_COST
    if isinstance(t, GoString):
        return STR_COST
    if isinstance(t, GoBytes):
        return BYTES_COST
    if isinstance(t, GoInt | GoUint):
        return _int_cost(t.bits)
    if isinstance(t, GoFloat):
        return FLOAT_COST
    if isinstance(t, GoBool | GoInterface):
        return 0  # True and False are shared; an interface's contents are charged on decode
    raise TypeError(f"no cost for {t.go_string()}")


def element_cost(elem: GoType) -> int:
    """What one element of a ``[]elem`` or ``[N]elem`` is charged."""
    return LIST_SLOT + value_cost(elem)


def entry_cost(m: GoMap) -> int:
    """What one entry of a map is charged."""
    slot = DICT_STR_ENTRY if isinstance(m.key, GoString) else DICT_ENTRY
    return slot + value_cost(m.key) + value_cost(m.elem)


def is_recursive(s: GoStruct) -> bool:
    """Whether ``s`` contains itself (through pointers, slices or maps)."""
    seen: set[int] = set()

    def reaches(t: GoType) -> bool:
        if isinstance(t, GoPtr | GoSlice | GoArray):
            return reaches(t.elem)
        if isinstance(t, GoMap):
            return reaches(t.key) or reaches(t.elem)
        if isinstance(t, GoStruct):
            if t is s:
                return True
            if id(t) in seen:
                return False
            seen.add(id(t))
            return any(reaches(f.type) for f in t.fields)
        return False

    return any(reaches(f.type) for f in s.fields)


def max_charge_per_byte(t: GoType) -> int:
    """An upper bound of what decoding values of ``t`` is charged per wire byte, beyond the
    fixed cost of each top value: every element of a container takes a byte at least, and so
    does every character of a string that is not ASCII (4 bytes each, plus a header)."""
    worst = STR_COST + 4
    seen: set[int] = set()
    todo = [t]
    while todo:
        u = todo.pop()
        if isinstance(u, GoPtr):
            todo.append(u.elem)
        elif isinstance(u, GoSlice | GoArray):
            worst = max(worst, element_cost(u.elem))
            todo.append(u.elem)
        elif isinstance(u, GoMap):
            worst = max(worst, entry_cost(u))
            todo += (u.key, u.elem)
        elif isinstance(u, GoStruct) and id(u) not in seen:
            seen.add(id(u))
            todo += (f.type for f in u.fields)
    return worst


@dataclass(frozen=True, slots=True)
class DecodeLimit:
    """The most a decoded value may cost: ``floor + ratio * n`` bytes for a stream of ``n``.

    The default (2 MiB + 4 bytes per wire byte) is sized from what legitimate traffic needs
    (charged as above): a Kademlia node costs about 3 times its wire size (a 100-byte ``Node``
    is a 292-byte estimate: the object and four string headers), so node lists of any length,
    BatchFindNode maps included (3.03 times), pass the ratio alone; the densest legitimate
    message, a BatchGetValues request (66 wire bytes a key, 276 charged: 4.2 times), fits with
    the floor up to 170,000 keys, far more than any client sends (Go: 1,500 a batch, ours: 600,
    and our server refuses more than 20,000, which take 75 % of their allowance). Replicate's
    5,000 keys cost 1 time their size, batch stores of thousands of values a few hundred KB,
    and every small frame (a Ping, a lookup, their type definitions) is a few KB. A crafted
    frame gets at most 2 MiB plus 4 times its size in objects (plus its string and byte
    contents, at most once more its size) instead of the 80 times that empty structs take.
    """

    floor: int = 2 * MIB
    ratio: int = 4

    def allowance(self, size: int) -> int:
        """What a value decoded from a stream of ``size`` bytes may cost."""
        return self.floor + self.ratio * max(0, size)


DEFAULT_DECODE_LIMIT: Final = DecodeLimit()
"""The limit every decoder applies unless told otherwise."""


def too_many_elements(allowance: int) -> str:
    """The decoders' error text for a value over its allowance (Go has no such limit)."""
    return f"gob: too many elements in message (over {allowance} bytes decoded)"
