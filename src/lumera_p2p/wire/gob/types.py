"""The Go type model: small immutable descriptors of the Go types a value is encoded as.

A descriptor says what Go's ``reflect`` would say about a type (its name, its ``String()``, its
element or fields), nothing about gob ids or wire definitions (:mod:`.typetable` and
:mod:`.wiretypes` derive those). Structs are compared by identity, like reflect types; every other
descriptor is a frozen dataclass compared by value, so ``GoSlice(GoString())`` written twice is
one type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GoArray",
    "GoBool",
    "GoBytes",
    "GoField",
    "GoFloat",
    "GoInt",
    "GoInterface",
    "GoMap",
    "GoPtr",
    "GoSlice",
    "GoString",
    "GoStruct",
    "GoType",
    "GoUint",
    "base_type",
]


class GoType:
    """A Go type. ``go_name`` is reflect's ``Name()``, ``go_string`` its ``String()``."""

    __slots__ = ()

    def go_name(self) -> str:
        """The type's own name ("" for unnamed composite types)."""
        return ""

    def go_string(self) -> str:
        """The type as Go prints it (``[]*kademlia.Node``)."""
        raise NotImplementedError


def _qualified(package: str, name: str) -> str:
    return f"{package}.{name}" if package else name


@dataclass(frozen=True, slots=True)
class GoBool(GoType):
    """Go ``bool``."""

    name: str = "bool"
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)


@dataclass(frozen=True, slots=True)
class GoInt(GoType):
    """Go ``int``/``intN``; ``bits`` sets the range the decoder accepts."""

    bits: int = 64
    name: str = "int"
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)


@dataclass(frozen=True, slots=True)
class GoUint(GoType):
    """Go ``uint``/``uintN``; ``bits`` sets the range the decoder accepts."""

    bits: int = 64
    name: str = "uint"
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)


@dataclass(frozen=True, slots=True)
class GoFloat(GoType):
    """Go ``float64`` (or ``float32`` with ``bits=32``)."""

    bits: int = 64
    name: str = "float64"
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)


@dataclass(frozen=True, slots=True)
class GoString(GoType):
    """Go ``string``."""

    name: str = "string"
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)


@dataclass(frozen=True, slots=True)
class GoBytes(GoType):
    """Go ``[]byte``: gob's builtin ``bytes`` type, not a slice of uints."""

    name: str = ""
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name) if self.name else "[]uint8"


@dataclass(frozen=True, slots=True)
class GoInterface(GoType):
    """Go ``interface{}``: values are registered struct types (see ``InterfaceRegistry``)."""

    def go_string(self) -> str:
        return "interface {}"


@dataclass(frozen=True, slots=True)
class GoPtr(GoType):
    """Go ``*T``. gob flattens pointers: only the pointed-to value travels."""

    elem: GoType

    def go_string(self) -> str:
        return "*" + self.elem.go_string()


@dataclass(frozen=True, slots=True)
class GoSlice(GoType):
    """Go ``[]T`` (use :class:`GoBytes` for ``[]byte``)."""

    elem: GoType
    name: str = ""
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name) if self.name else "[]" + self.elem.go_string()


@dataclass(frozen=True, slots=True)
class GoArray(GoType):
    """Go ``[N]T``; values are lists of exactly ``length`` items."""

    elem: GoType
    length: int
    name: str = ""
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        if self.name:
            return _qualified(self.package, self.name)
        return f"[{self.length}]{self.elem.go_string()}"


_MAP_KEY_TYPES = (GoBool, GoInt, GoUint, GoFloat, GoString)


@dataclass(frozen=True, slots=True)
class GoMap(GoType):
    """Go ``map[K]V``; keys are limited to hashable primitives."""

    key: GoType
    elem: GoType
    name: str = ""
    package: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.key, _MAP_KEY_TYPES):
            raise TypeError(f"unsupported map key type {self.key.go_string()}")

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        if self.name:
            return _qualified(self.package, self.name)
        return f"map[{self.key.go_string()}]{self.elem.go_string()}"


@dataclass(frozen=True, slots=True)
class GoField:
    """One exported (sent) struct field: its Go name, Go type and Python attribute."""

    name: str
    type: GoType
    attr: str


class GoStruct(GoType):
    """A named Go struct; compared by identity, like reflect types.

    ``factory`` builds the Python value from keyword arguments named by each field's ``attr``
    (fields that were not on the wire are left to the factory's defaults, i.e. Go's zero value).
    ``fields`` may be given later with :meth:`define`, for recursive types.

    ``encoder_plan`` is a slot the encoder fills on first use with what it derives from the
    fields (which writer each one needs); like Go's per-type encoder cache it lives beside the
    type so that every encoder shares it.
    """

    __slots__ = ("_by_name", "_fields", "encoder_plan", "factory", "name", "package")

    def __init__(
        self,
        name: str,
        package: str,
        fields: Sequence[GoField] | None,
        factory: Callable[..., Any],
    ) -> None:
        self.name = name
        self.package = package
        self.factory = factory
        self._fields: tuple[GoField, ...] = ()
        self._by_name: dict[str, GoField] = {}
        self.encoder_plan: Any = None
        if fields is not None:
            self.define(fields)

    def define(self, fields: Sequence[GoField]) -> None:
        """Set the fields once (separately from construction only for recursive types)."""
        if self._fields:
            raise TypeError(f"struct {self.name} is already defined")
        if len(fields) >= 0x80:
            raise TypeError("structs of 128 fields or more are not supported")
        self._fields = tuple(fields)
        self._by_name = {f.name: f for f in self._fields}
        self.encoder_plan = None  # a plan made before the fields were known is stale

    @property
    def fields(self) -> tuple[GoField, ...]:
        """The sent fields in declaration order (their index is the gob field number)."""
        return self._fields

    def field(self, name: str) -> GoField | None:
        """The field called ``name``, as Go's ``FieldByName``."""
        return self._by_name.get(name)

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)

    def __repr__(self) -> str:
        return f"GoStruct({self.go_string()!r})"


def base_type(t: GoType) -> GoType:
    """Go's ``userType(t).base``: the type with every pointer removed."""
    while isinstance(t, GoPtr):
        t = t.elem
    return t
