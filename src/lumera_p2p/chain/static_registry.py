"""A fixed registry read from a YAML file, for private and local networks without a chain.

The file::

    supernodes:
      - address: lumera1…          # required, a lumera1… account address
        host: 127.0.0.1            # required, an IP address or hostname
        port: 4445                 # optional, default 4445
        state: ACTIVE              # optional: a name (ACTIVE, SUPERNODE_STATE_ACTIVE, active)
                                   # or a number 0-6; default ACTIVE
        validator_address: ""      # optional
    accounts: [lumera1…]           # optional: more accounts that exist (simple-node peers)

A bare list of entries is accepted as well. Every supernode address is also an existing account.
Problems are reported as :class:`~lumera_p2p.errors.ConfigError` naming the entry
(``supernodes[2].port``).

A registry read with :meth:`StaticRegistry.from_file` follows its file: each
``list_supernodes`` (the node's allowlist refresh and peer sync) compares the file's
modification time and size with those it last read, and reads it again when they differ. A
new file that does not validate is not used: the registry keeps what it had and logs one
warning for that version of the file.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lumera_p2p.chain.registry import DEFAULT_P2P_PORT, Supernode, SupernodeState
from lumera_p2p.errors import ConfigError, IdentityError
from lumera_p2p.identity.keys import validate_address
from lumera_p2p.safe_yaml import REGISTRY_LIMITS, read_yaml_file

__all__ = ["StaticRegistry"]

log = logging.getLogger(__name__)

_ENTRY_KEYS = frozenset({"address", "host", "port", "state", "validator_address"})
_TOP_KEYS = frozenset({"supernodes", "accounts"})
_STATE_PREFIX = "SUPERNODE_STATE_"
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


class StaticRegistry:
    """A :class:`~lumera_p2p.chain.registry.Registry` over a fixed list of supernodes."""

    def __init__(self, supernodes: Iterable[Supernode], accounts: Iterable[str] = ()) -> None:
        """Raise ValueError on a duplicate address or a supernode without a host."""
        self._supernodes: dict[str, Supernode] = {}
        for node in supernodes:
            if node.host is None:
                raise ValueError(f"supernode {node.address} has no host")
            if node.address in self._supernodes:
                raise ValueError(f"supernode {node.address} is listed twice")
            self._supernodes[node.address] = node
        self._accounts = frozenset(accounts) | frozenset(self._supernodes)
        self._extra = frozenset(accounts) - frozenset(self._supernodes)
        # The file followed (from_file), and the (mtime_ns, size) of the version in use and
        # of the last version seen (a bad one is warned about once).
        self._source: Path | None = None
        self._stamp: tuple[int, int] | None = None
        self._seen: tuple[int, int] | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> StaticRegistry:
        """Read and validate a registry file, and follow it (see the module docstring);
        ConfigError naming the entry and field."""
        file = Path(path).expanduser()
        stamp = _stamp(file)
        registry = cls._parse_file(file)
        registry._source = file
        registry._stamp = registry._seen = stamp
        return registry

    @classmethod
    def _parse_file(cls, file: Path) -> StaticRegistry:
        # Parsed within limits (size, depth, aliases): nothing but a ConfigError comes out.
        data = read_yaml_file(file, REGISTRY_LIMITS, "registry file")
        try:
            return cls.from_data(data)
        except ConfigError as exc:
            raise ConfigError(exc.field, f"{exc.problem} (in {file})") from None

    async def reload_if_changed(self) -> bool:
        """Read the followed file again if its modification time or size changed; return
        whether the entries were replaced (a bad new file keeps the old entries)."""
        if self._source is None:
            return False
        stamp = _stamp(self._source)
        if stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        try:
            fresh = await asyncio.to_thread(self._parse_file, self._source)
        except ConfigError as exc:
            log.warning(
                "registry file %s changed but is not valid, keeping the %d supernodes read "
                "before: %s",
                self._source,
                len(self._supernodes),
                " ".join(exc.lines()),
            )
            return False
        added = len(set(fresh._supernodes) - set(self._supernodes))
        removed = len(set(self._supernodes) - set(fresh._supernodes))
        self._supernodes, self._accounts, self._extra = (
            fresh._supernodes,
            fresh._accounts,
            fresh._extra,
        )
        self._stamp = stamp
        log.info(
            "registry file %s reloaded: %d supernodes (%d new, %d gone)",
            self._source,
            len(self._supernodes),
            added,
            removed,
        )
        return True

    def snapshot(self) -> list[Supernode]:
        """The entries in use now, in file order."""
        return list(self._supernodes.values())

    @property
    def extra_accounts(self) -> frozenset[str]:
        """The ``accounts`` that are not supernodes."""
        return self._extra

    @classmethod
    def from_data(cls, data: object) -> StaticRegistry:
        """Validate parsed YAML: a mapping with ``supernodes`` (and ``accounts``), or a list."""
        if isinstance(data, list):
            data = {"supernodes": data}
        if not isinstance(data, Mapping):
            raise ConfigError("", "a registry file holds a 'supernodes' list")
        unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
        if unknown:
            raise ConfigError(unknown[0], "unknown field (expected supernodes, accounts)")
        entries = data.get("supernodes")
        if not isinstance(entries, list):
            raise ConfigError("supernodes", "must be a list of entries")
        nodes: list[Supernode] = []
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            node = _parse_entry(index, entry)
            if node.address in seen:
                raise ConfigError(
                    f"supernodes[{index}].address",
                    f"{node.address} is already listed at supernodes[{seen[node.address]}]",
                )
            seen[node.address] = index
            nodes.append(node)
        accounts = data.get("accounts") or []
        if not isinstance(accounts, list):
            raise ConfigError("accounts", "must be a list of lumera1… addresses")
        for index, account in enumerate(accounts):
            _check_address(f"accounts[{index}]", account)
        return cls(nodes, accounts)

    def to_data(self) -> dict[str, Any]:
        """The plain mapping :meth:`write` saves (and :meth:`from_data` reads back)."""
        entries: list[dict[str, Any]] = []
        for node in self._supernodes.values():
            entry: dict[str, Any] = {
                "address": node.address,
                "host": node.host,
                "port": node.port,
                "state": node.state.name,
            }
            if node.validator_address:
                entry["validator_address"] = node.validator_address
            entries.append(entry)
        data: dict[str, Any] = {"supernodes": entries}
        extra = sorted(self._extra)
        if extra:
            data["accounts"] = extra
        return data

    def write(self, path: str | Path) -> None:
        """Save as YAML, atomically (a reader never sees half a file)."""
        file = Path(path).expanduser()
        text = yaml.safe_dump(self.to_data(), sort_keys=False)
        fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            Path(tmp).replace(file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # --- Registry ----------------------------------------------------------------------------

    async def list_supernodes(self) -> list[Supernode]:
        """Every listed supernode, in file order (the file read again if it changed)."""
        await self.reload_if_changed()
        return list(self._supernodes.values())

    async def get_supernode(self, address: str) -> Supernode | None:
        """The listed supernode with this address, or None."""
        return self._supernodes.get(address)

    async def is_registered_supernode(self, address: str) -> bool:
        """True if listed (in any state)."""
        return address in self._supernodes

    async def account_exists(self, address: str) -> bool:
        """True for listed supernodes and extra ``accounts``."""
        return address in self._accounts

    async def close(self) -> None:
        """Nothing to release."""


def _stamp(file: Path) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of ``file``, or None if it cannot be read now."""
    try:
        info = file.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _check_address(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field, "must be a lumera1… address")
    try:
        return validate_address(value.strip())
    except IdentityError as exc:
        raise ConfigError(field, str(exc)) from None


def _parse_entry(index: int, entry: object) -> Supernode:
    where = f"supernodes[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(where, "must be a mapping with address, host, port, state")
    unknown = sorted(str(k) for k in entry if k not in _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", "unknown field (check the spelling)")
    if "address" not in entry:
        raise ConfigError(f"{where}.address", "is required")
    address = _check_address(f"{where}.address", entry["address"])
    if "host" not in entry:
        raise ConfigError(f"{where}.host", "is required")
    host = _parse_host(f"{where}.host", entry["host"])
    port = _parse_port(f"{where}.port", entry.get("port", DEFAULT_P2P_PORT))
    state = _parse_state(f"{where}.state", entry.get("state", "ACTIVE"))
    validator = entry.get("validator_address", "")
    if validator is None:
        validator = ""
    if not isinstance(validator, str):
        raise ConfigError(f"{where}.validator_address", "must be a string")
    return Supernode(address, state, host, port, state_height=0, validator_address=validator)


def _parse_host(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field, "must be an IP address or hostname")
    text = value.strip()
    literal = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(literal))
    except ValueError:
        pass
    if not _HOSTNAME_RE.match(text):
        raise ConfigError(field, f"{value!r} is neither an IP address nor a hostname")
    return text


def _parse_port(field: str, value: object) -> int:
    # bool is an int in Python; "port: yes" is a mistake, not port 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 0xFFFF:
        raise ConfigError(field, f"must be a number from 1 to 65535 (got {value!r})")
    return value


def _parse_state(field: str, value: object) -> SupernodeState:
    if isinstance(value, bool):
        raise ConfigError(field, f"must be a state name or number (got {value!r})")
    if isinstance(value, int):
        try:
            return SupernodeState(value)
        except ValueError:
            raise ConfigError(field, f"{value} is not a state number (0-6)") from None
    if isinstance(value, str):
        name = value.strip().upper()
        name = name.removeprefix(_STATE_PREFIX)
        if name in SupernodeState.__members__:
            return SupernodeState[name]
    names = ", ".join(SupernodeState.__members__)
    raise ConfigError(field, f"{value!r} is not a supernode state ({names}, or 0-6)")


if TYPE_CHECKING:
    from lumera_p2p.chain.registry import Registry
    from lumera_p2p.secure.handshake import PeerVerifier

    def _conforms(registry: StaticRegistry) -> tuple[Registry, PeerVerifier]:
        """Checked by mypy only: StaticRegistry is a Registry and a handshake PeerVerifier."""
        return registry, registry
