"""The interface registry: which concrete types may travel in an ``interface{}``, by name.

Go's ``gob.Register`` keeps one process-wide map; here a registry is an immutable object built
once and handed to encoders and decoders, so two codecs with different registries can coexist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from lumera_p2p.errors import GobEncodeError
from lumera_p2p.wire.gob.types import GoStruct, GoType, base_type

__all__ = ["EMPTY_REGISTRY", "InterfaceRegistry", "Registered"]


@dataclass(frozen=True, slots=True)
class Registered:
    """One registered type: the name it travels under (as bytes), its type and its struct."""

    name: bytes
    type: GoType
    struct: GoStruct


class InterfaceRegistry:
    """Concrete types that may travel in an ``interface{}``, under their gob names.

    Immutable: build it once with every ``(name, type)`` pair, as Go's ``gob.Register`` calls in
    an ``init``. The type is the registered Go type (``GoPtr(struct)`` for ``Register(&T{})``);
    its struct's ``factory`` must be a class, which is how an outgoing value finds its name.
    """

    __slots__ = ("_by_class", "_by_name")

    def __init__(self, entries: Iterable[tuple[str, GoType]] = ()) -> None:
        self._by_name: dict[bytes, GoType] = {}
        self._by_class: dict[type, Registered] = {}
        for name, t in entries:
            base = base_type(t)
            if not name:
                raise ValueError("attempt to register empty name")
            if not isinstance(base, GoStruct) or not isinstance(base.factory, type):
                raise TypeError(f"{name}: only struct types with a class factory can be registered")
            key = name.encode()
            if key in self._by_name or base.factory in self._by_class:
                raise ValueError(f"gob: registering duplicate name or type for {name!r}")
            self._by_name[key] = t
            self._by_class[base.factory] = Registered(key, t, base)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return [n.decode() for n in self._by_name]

    def entries(self) -> list[Registered]:
        """Every registered type, in registration order."""
        return list(self._by_class.values())

    def type_for_name(self, name: bytes) -> GoType | None:
        """The registered type called ``name``."""
        return self._by_name.get(name)

    def name_for(self, value: object) -> str:
        """The name an outgoing ``value`` is sent under."""
        return self.entry_for(value).name.decode()

    def entry_for(self, value: object) -> Registered:
        """The registration of ``value``'s class; ``GobEncodeError`` if it has none."""
        entry = self._by_class.get(type(value))
        if entry is None:
            raise GobEncodeError(f"type not registered for interface: {type(value).__qualname__}")
        return entry


EMPTY_REGISTRY: Final = InterfaceRegistry()
"""A registry with nothing in it: the default for codecs of interface-free types."""
