"""Convert between our wire dataclasses and the JSON notation of ``shared/vectors/gob/README.md``.

``[]byte`` is lowercase hex (``null`` when nil), a nil slice, pointer, map or interface is
``null``, structs are objects in field order, and ``Data`` is ``{"$gob_type": name, "value": ...}``.
Values Go decoded never hold empty slices (gob cannot tell them from nil), so ``to_go_json`` writes
an empty list or ``[]byte`` as ``null``, which is what Go's decoder would show.
"""

from __future__ import annotations

from typing import Any

from lumera_p2p.wire.gob import (
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
    InterfaceRegistry,
)


def to_go_json(value: Any, t: GoType, registry: InterfaceRegistry) -> Any:
    """Our value of Go type ``t`` in the README's notation."""
    if isinstance(t, GoPtr):
        return None if value is None else to_go_json(value, t.elem, registry)
    if isinstance(t, GoBytes):
        return value.hex() if value else None
    if isinstance(t, GoBool | GoInt | GoUint | GoFloat | GoString):
        return value
    if isinstance(t, GoSlice | GoArray):
        if not value:
            return None
        return [to_go_json(v, t.elem, registry) for v in value]
    if isinstance(t, GoMap):
        if value is None:
            return None
        return {k: to_go_json(v, t.elem, registry) for k, v in sorted(value.items())}
    if isinstance(t, GoStruct):
        return {f.name: to_go_json(getattr(value, f.attr), f.type, registry) for f in t.fields}
    if isinstance(t, GoInterface):
        if value is None:
            return None
        name = registry.name_for(value)
        concrete = registry.type_for_name(name.encode())
        assert concrete is not None
        return {"$gob_type": name, "value": to_go_json(value, concrete, registry)}
    raise TypeError(t)


def from_go_json(j: Any, t: GoType, registry: InterfaceRegistry) -> Any:
    """Build our value of Go type ``t`` from the README's notation."""
    if isinstance(t, GoPtr):
        return None if j is None else from_go_json(j, t.elem, registry)
    if isinstance(t, GoBytes):
        return bytes.fromhex(j) if j else b""
    if isinstance(t, GoBool | GoInt | GoUint | GoFloat | GoString):
        return j
    if isinstance(t, GoSlice | GoArray):
        return [] if j is None else [from_go_json(v, t.elem, registry) for v in j]
    if isinstance(t, GoMap):
        # json keeps the file's key order, which is the order Go happened to write
        return None if j is None else {k: from_go_json(v, t.elem, registry) for k, v in j.items()}
    if isinstance(t, GoStruct):
        return t.factory(
            **{f.attr: from_go_json(j.get(f.name), f.type, registry) for f in t.fields}
        )
    if isinstance(t, GoInterface):
        if j is None:
            return None
        concrete = registry.type_for_name(j["$gob_type"].encode())
        assert concrete is not None, j["$gob_type"]
        return from_go_json(j["value"], concrete, registry)
    raise TypeError(t)
