"""YAML for files an operator writes: bounded in size, depth, nodes, aliases and integer digits.

``yaml.safe_load`` is safe from code execution but not from its input: deep nesting ends in a
``RecursionError``, an integer of 4,300+ digits in a ``ValueError`` (CPython's guard against
quadratic ``int()``), ``2001-13-45`` and ``!!int x`` in ``ValueError``, ``!!bool maybe`` in a
``KeyError``, and a few lines of nested aliases (the "billion laughs") expand into a tree that
takes minutes to walk. :func:`parse_yaml` checks its limits *while* composing (depth, node and
alias counts before the composer descends or goes on), then measures the tree as it would be
with every alias expanded (refusing cycles), and only then builds Python objects. libyaml scans
and parses when PyYAML has it (about 50 times faster than PyYAML's Python scanner, whose
look-ahead makes deep flow nesting quadratic); PyYAML's composer and constructor, with the
limits, do the rest. Every failure is a :class:`~lumera_p2p.errors.ConfigError` of one line
that names the position but never quotes the offending text (it may be a secret).

Timestamps stay strings: a date where a name belongs (``chain_id: 2024-01-01``) is text to
this program, as it is to Go's ``yaml.v3`` for a string field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from lumera_p2p.errors import ConfigError

_CParser: Any
try:
    from yaml._yaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml
    _CParser = None

__all__ = ["CONFIG_LIMITS", "REGISTRY_LIMITS", "YamlLimits", "parse_yaml", "read_yaml_file"]


@dataclass(frozen=True)
class YamlLimits:
    """Bounds for one kind of file; each is checked before the work it bounds."""

    #: Bytes read from the file at most (one more is read to tell that it is too large).
    max_bytes: int
    #: Nesting of sequences and mappings (a mapping of scalars is depth 1).
    max_depth: int
    #: Nodes (scalars, sequences, mappings, keys included), counted with aliases expanded.
    max_nodes: int
    #: Alias uses (``*name``) in the whole document.
    max_aliases: int
    #: Characters of a scalar that resolves to an integer (sign and ``_`` included).
    max_int_chars: int


#: A node config: a Go supernode's ``config.yml`` is 2 KB, nested 4 deep.
CONFIG_LIMITS = YamlLimits(
    max_bytes=128 * 1024, max_depth=32, max_nodes=5_000, max_aliases=128, max_int_chars=40
)
#: A static registry: 10,000 supernodes are about 1.5 MB and 110,000 nodes.
REGISTRY_LIMITS = YamlLimits(
    max_bytes=32 * 1024 * 1024,
    max_depth=16,
    max_nodes=2_000_000,
    max_aliases=128,
    max_int_chars=40,
)

_INT_TAG = "tag:yaml.org,2002:int"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _Refused(Exception):
    """A limit was hit; carries the message and the position (1-based) if known."""

    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def _where(mark: Any) -> str:
    if mark is None:
        return ""
    return f" at line {mark.line + 1}, column {mark.column + 1}"


class _LimitedConstructor(SafeConstructor):
    """SafeConstructor whose ints are refused past ``max_int_chars`` and whose dates are text."""

    _limits: YamlLimits

    def construct_limited_int(self, node: ScalarNode) -> int:
        """``SafeConstructor``'s int, refused before any conversion when too long."""
        text = str(node.value)
        if len(text) > self._limits.max_int_chars:
            raise _Refused(
                f"an integer longer than {self._limits.max_int_chars} characters",
                node.start_mark,
            )
        value: int = self.construct_yaml_int(node)
        return value

    def construct_timestamp_text(self, node: ScalarNode) -> str:
        """Dates and times are kept as the text written."""
        return str(node.value)


# (The stubs bound constructors to yaml's own loader classes; this one is a mixin of those.)
_LimitedConstructor.add_constructor(_INT_TAG, _LimitedConstructor.construct_limited_int)  # type: ignore[type-var]
_LimitedConstructor.add_constructor(_TIMESTAMP_TAG, _LimitedConstructor.construct_timestamp_text)  # type: ignore[type-var]


class _LimitedComposer(Composer):
    """PyYAML's composer, counting depth, nodes and aliases before it descends.

    Only the composer and the constructor recurse in PyYAML (its scanner and parser keep
    explicit stacks), so refusing depth here keeps every later step shallow.
    """

    _limits: YamlLimits
    _depth: int
    _nodes: int
    _aliases: int

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[attr-defined]  # from the parser
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self._limits.max_aliases:
                raise _Refused(f"more than {self._limits.max_aliases} aliases", event.start_mark)
            return super().compose_node(parent, index)
        self._nodes += 1
        if self._nodes > self._limits.max_nodes:
            raise _Refused(f"more than {self._limits.max_nodes:,} values", event.start_mark)
        if isinstance(event, yaml.ScalarEvent):
            return super().compose_node(parent, index)
        if self._depth >= self._limits.max_depth:
            raise _Refused(
                f"nested more than {self._limits.max_depth} levels deep", event.start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _init_limits(loader: _LimitedComposer, limits: YamlLimits) -> None:
    loader._limits = limits
    loader._depth = 0
    loader._nodes = 0
    loader._aliases = 0


class _PyScanner(Scanner):
    """PyYAML's scanner, refusing depth as it scans.

    While a simple key may be pending the scanner reads up to 1,024 characters ahead and, for
    every token, revisits one pending key per open flow level: 5,000 ``[`` cost 0.3 s before
    the composer sees the first. libyaml does the same in C, where it does not matter.
    """

    _limits: YamlLimits

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 (PyYAML's)
        """``[`` or ``{``, refused past ``max_depth`` open ones."""
        if self.flow_level >= self._limits.max_depth:
            raise _Refused(
                f"nested more than {self._limits.max_depth} levels deep",
                self.get_mark(),  # type: ignore[attr-defined]  # from the reader
            )
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:
        """A deeper block level, refused past ``max_depth``."""
        if len(self.indents) > self._limits.max_depth:
            raise _Refused(
                f"nested more than {self._limits.max_depth} levels deep",
                self.get_mark(),  # type: ignore[attr-defined]  # from the reader
            )
        return super().add_indent(column)


class _PyLimitedLoader(Reader, _PyScanner, Parser, _LimitedComposer, _LimitedConstructor, Resolver):
    """All Python: used when PyYAML was built without libyaml."""

    def __init__(self, text: str, limits: YamlLimits) -> None:
        self._limits = limits
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        _init_limits(self, limits)


_Loader = type[_PyLimitedLoader] | Any
_LOADER: _Loader = _PyLimitedLoader
if _CParser is not None:

    class _CLimitedLoader(_LimitedComposer, _CParser, _LimitedConstructor, Resolver):  # type: ignore[misc]
        """libyaml scans and parses (about 50 times faster); Python composes, with limits."""

        def __init__(self, text: str, limits: YamlLimits) -> None:
            _CParser.__init__(self, text)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            _init_limits(self, limits)

    _LOADER = _CLimitedLoader


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expanded(root: Node, limits: YamlLimits) -> None:
    """Refuse a node graph whose alias-expanded tree is too big or too deep, or cyclic.

    Iterative post-order walk with one memo entry per distinct collection, so a billion-laughs
    document costs its own size, not its expansion. Only needed when the document has aliases:
    without them the composer's counts are already the tree's.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size.get(id(k), 1) for k in kids)
            depth[key] = 1 + max((depth.get(id(k), 0) for k in kids), default=0)
            on_path.discard(key)
            if size[key] > limits.max_nodes:
                raise _Refused(
                    f"more than {limits.max_nodes:,} values once aliases are expanded",
                    node.start_mark,
                )
            if depth[key] > limits.max_depth:
                raise _Refused(
                    f"nested more than {limits.max_depth} levels deep once aliases are expanded",
                    node.start_mark,
                )
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if isinstance(kid, ScalarNode):
                continue  # size 1, depth 0: no entry needed
            kid_key = id(kid)
            if kid_key in on_path:
                raise _Refused("an alias refers to a value that contains it", kid.start_mark)
            if kid_key not in size:
                stack.append((kid, False))


def _reader_message(what: str, exc: yaml.reader.ReaderError) -> str:
    char = exc.character if isinstance(exc.character, int) else ord(exc.character or "\0")
    return f"{what}: not valid YAML: character {char:#06x} at offset {exc.position} is not allowed"


def parse_yaml(text: str, limits: YamlLimits, what: str) -> Any:
    """Parse one YAML document within ``limits``; ``None`` for an empty one.

    ``what`` starts every message (usually the file name). Raise ``ConfigError`` (field ``""``).
    """
    try:
        # The pure-Python reader checks every character as it is built: inside the try.
        loader = _LOADER(text, limits)
    except yaml.reader.ReaderError as exc:
        raise ConfigError("", _reader_message(what, exc)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if loader._aliases:
            _check_expanded(node, limits)
        return loader.construct_document(node)
    except _Refused as exc:
        raise ConfigError("", f"{what}: refused{_where(exc.mark)}: {exc.message}") from None
    except yaml.reader.ReaderError as exc:  # libyaml reads as it parses
        raise ConfigError("", _reader_message(what, exc)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError("", f"{what}: not valid YAML{_where(mark)}: {problem}") from None
    except yaml.YAMLError:
        raise ConfigError("", f"{what}: not valid YAML") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        # An explicit tag on a value it does not fit (``!!int x``, ``!!bool maybe``,
        # ``!!float ''``): PyYAML's constructors raise plain Python errors for these. The
        # message is not quoted, since it may carry the value.
        raise ConfigError("", f"{what}: a tagged value (!!…) that is not of its type") from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path, limits: YamlLimits, what: str = "") -> Any:
    """Read ``path`` (at most ``limits.max_bytes``) and parse it; ``ConfigError`` on failure.

    ``what`` names the kind of file in the "no such file" message ("registry file").
    """
    label = f"no such {what}" if what else "no such file"
    try:
        with path.open("rb") as handle:
            raw = handle.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError("", f"{path}: {label}") from None
    except IsADirectoryError:
        raise ConfigError("", f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError("", f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > limits.max_bytes:
        raise ConfigError("", f"{path}: larger than {limits.max_bytes:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "", f"{path}: cannot read: not UTF-8 text (byte {exc.start + 1})"
        ) from None
    return parse_yaml(text, limits, str(path))
