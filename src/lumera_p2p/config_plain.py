"""A validated configuration in plain form: JSON that a node process reads without pydantic.

``lumera-p2p localnet --processes`` and ``bench/scale.py`` run one process per node. Each used
to validate its YAML file with pydantic, whose import and model building were about a fifth of
the process's memory. Now the parent validates (:func:`lumera_p2p.config.load_config`), writes
:func:`dump_plain` of the result, and the child rebuilds it with :func:`load_plain`: the same
attribute tree (``config.p2p.data_dir``, ``config.dht.rpc_timeouts.ping``, …), read-only, with
every value of the type the validated :class:`~lumera_p2p.config.Config` holds (paths,
tuples, :class:`BootstrapNode`). Nothing is validated again: the file is the parent's own
output, and a file not in this form is refused as a whole.

This module also holds the pydantic-free pieces of the configuration other modules import at
run time (:data:`DEFAULT_P2P_PORT`, :class:`BootstrapNode`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from lumera_p2p.errors import ConfigError

if TYPE_CHECKING:
    from lumera_p2p.config import Config

#: The P2P port a node listens on when none is configured (Go's default).
DEFAULT_P2P_PORT: Final = 4445
#: The first key of a plain file, naming its format (anything else is refused).
FORMAT: Final = "lumera-p2p/plain-config/v1"


@dataclass(frozen=True)
class BootstrapNode:
    """One ``identity@host:port`` entry of ``p2p.bootstrap_nodes``."""

    identity: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.identity}@{host}:{self.port}"


class PlainSection:
    """One section of a plain configuration: its fields as read-only attributes."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.__dict__.update(fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a configuration is read-only ({name!r})")

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"PlainSection({inner})"


def dump_plain(config: Config) -> str:
    """``config`` as plain JSON for :func:`load_plain`."""
    return json.dumps({"format": FORMAT, "config": _encode(config)}, sort_keys=True)


def load_plain(path: str | Path) -> Config:
    """The configuration :func:`dump_plain` wrote to ``path`` (``ConfigError`` if it is not
    such a file). It has every attribute of the :class:`~lumera_p2p.config.Config` it was made
    from, and no pydantic methods."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        root = _decode(data["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("", f"{path}: not a plain configuration: {exc}") from exc
    if not isinstance(root, PlainSection):
        raise ConfigError("", f"{path}: not a plain configuration: no sections")
    # A PlainSection tree answers every attribute lookup the node makes on a Config.
    return cast("Config", root)


def _encode(value: Any) -> Any:
    fields = getattr(type(value), "model_fields", None)
    if fields is not None:  # a pydantic model: its fields, in declaration order
        return {"section": {name: _encode(getattr(value, name)) for name in fields}}
    if isinstance(value, BootstrapNode):
        return {"bootstrap": [value.identity, value.host, value.port]}
    if isinstance(value, Path):
        return {"path": str(value)}
    if isinstance(value, tuple | list):
        return {"tuple" if isinstance(value, tuple) else "list": [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    raise TypeError(f"no plain form for {type(value).__name__}")


def _decode(node: Any) -> Any:
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError(f"bad node {node!r:.80}")
    ((kind, body),) = node.items()
    if kind == "section":
        return PlainSection({str(k): _decode(v) for k, v in body.items()})
    if kind == "bootstrap":
        identity, host, port = body
        return BootstrapNode(str(identity), str(host), int(port))
    if kind == "path":
        return Path(body)
    if kind == "tuple":
        return tuple(_decode(v) for v in body)
    if kind == "list":
        return [_decode(v) for v in body]
    if kind == "dict":
        return {_decode(k): _decode(v) for k, v in body}
    if kind == "value":
        return body
    raise ValueError(f"unknown node kind {kind!r}")
