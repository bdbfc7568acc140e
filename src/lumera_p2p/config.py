"""Node configuration: YAML → a validated, typed :class:`Config`.

The layout follows the seed's ``p2p`` section and the Go supernode's ``config.yml``
(``keyring``, ``lumera``, and ``supernode.key_name`` as an alias of our top-level ``key_name``), so
an operator can point this node at the file a Go supernode uses. Sections we do not use (the Go
node's ``raptorq``, ``storage_challenge``, …) are ignored, as Go ignores unknown keys; inside the
sections we own, an unknown key is an error, because a misspelt field silently taking its default
is how nodes end up misconfigured.

Every problem is reported as a :class:`~lumera_p2p.errors.ConfigError` naming the field
(``p2p.port``) and what is wrong, in one line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lumera_p2p.errors import ConfigError, IdentityError
from lumera_p2p.identity.keys import validate_address
from lumera_p2p.kademlia.version import parse_semver

DEFAULT_P2P_PORT = 4445
DEFAULT_LISTEN_ADDRESS = "0.0.0.0"
#: The supernode release whose P2P protocol this node implements, advertised in every
#: ``Node.Version`` we send (Go nodes with a minimum version drop peers without one).
DEFAULT_P2P_VERSION = "v2.6.2"
_MAX_VERSION_LENGTH = 64
#: Sections of a Go supernode config.yml that this node does not use; accepted and ignored.
_FOREIGN_SECTIONS = frozenset({"raptorq", "storage_challenge", "self_healing", "log", "logging"})

_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)

Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
Interval = Annotated[float, Field(gt=0, le=7 * 24 * 3600)]


def _check_host(value: str) -> str:
    """An IP literal (v4 or v6, brackets allowed) or a DNS hostname."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOSTNAME_RE.match(text):
            raise ValueError(f"{value!r} is neither an IP address nor a hostname") from None
    return text


def _check_version(value: str) -> str:
    """A version by Go's ``parseSemver`` rules (``v2.6.2``, ``2.6``, ``v2.6.2-testnet``)."""
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > _MAX_VERSION_LENGTH or not text.isprintable() or " " in text:
        raise ValueError(f"{value!r} is not a version (at most 64 printable characters, no spaces)")
    if parse_semver(text) is None:
        raise ValueError(f"{value!r} is not a version such as 'v2.6.2' (major.minor.patch)")
    return text


@dataclass(frozen=True)
class BootstrapNode:
    """One ``identity@host:port`` entry of ``p2p.bootstrap_nodes``."""

    identity: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.identity}@{host}:{self.port}"


def parse_bootstrap_node(entry: str) -> BootstrapNode:
    """Parse ``lumera1…@host:port`` (IPv6 hosts in brackets); raise ``ValueError``."""
    identity, sep, endpoint = entry.strip().partition("@")
    if not sep:
        raise ValueError(f"{entry!r} is not identity@host:port")
    try:
        validate_address(identity)
    except IdentityError as exc:
        raise ValueError(f"{entry!r}: bad identity: {exc}") from None
    host, colon, port_text = endpoint.rpartition(":")
    if not colon or not host:
        raise ValueError(f"{entry!r}: missing host:port after '@'")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{entry!r}: port {port_text!r} is not a number from 1 to 65535")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"{entry!r}: an IPv6 host must be written in brackets")
    return BootstrapNode(identity, _check_host(host), int(port_text))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class P2PConfig(_Section):
    """The seed's ``p2p`` section."""

    listen_address: str = DEFAULT_LISTEN_ADDRESS
    port: Port = DEFAULT_P2P_PORT
    data_dir: Path
    bootstrap_nodes: tuple[BootstrapNode, ...] = ()
    external_ip: str | None = None
    #: Accept peers on loopback and private addresses (local and test networks; the Go node's
    #: INTEGRATION_TEST switch).
    allow_private_peers: bool = False
    #: Seconds between full peer-list syncs from the registry (Go: 10 min).
    bootstrap_refresh_interval: Interval = 600.0
    #: Seconds between allowlist refreshes from the registry (Go: 30 s).
    allowlist_refresh_interval: Interval = 30.0
    #: Seconds after which an unvisited bucket is refreshed (Go: 1 h).
    bucket_refresh_interval: Interval = 3600.0
    #: Seconds between pings of every routing-table peer (Go: 5 min).
    health_check_interval: Interval = 300.0
    #: The version we advertise in every ``Node`` we send (Go: the build's release tag).
    version: str = DEFAULT_P2P_VERSION
    #: Peers advertising a lower version (or none) are refused, as a Go node built with a
    #: minimum refuses them; ``None`` (the default) admits every version.
    min_peer_version: str | None = None

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_host(value)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        if not isinstance(value, (str, Path)):
            raise ValueError("must be a path (a string)")
        return value

    @field_validator("bootstrap_nodes", mode="before")
    @classmethod
    def _bootstrap(cls, value: object) -> tuple[BootstrapNode, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            entries = [e for e in value.split(",") if e.strip()]
        elif isinstance(value, list) and all(isinstance(e, str) for e in value):
            entries = value
        else:
            raise ValueError("must be a string 'identity@host:port,…' or a list of them")
        return tuple(parse_bootstrap_node(e) for e in entries)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        # Go advertises whatever it was built with, but a Go node with a minimum drops a peer
        # whose version does not parse, so we only ever advertise one that does.
        return _check_version(value)

    @field_validator("min_peer_version", mode="before")
    @classmethod
    def _min_peer_version(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise ValueError("must be a version string such as 'v2.6.2'")
        # Go ignores a minimum it cannot parse (the gate fails open); a typo here would then
        # silently admit everyone, so we refuse it instead.
        return _check_version(value)

    @field_validator("external_ip", mode="before")
    @classmethod
    def _external_ip(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise ValueError("must be an IP address (a string)")
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None


class KeyringConfig(_Section):
    """Where the node's key lives (Cosmos SDK keyring directory) and how it is unlocked."""

    backend: Literal["test", "file"] = "test"
    dir: Path = Path("~/.lumera")
    passphrase_plain: str | None = None
    passphrase_env: str | None = None
    passphrase_file: Path | None = None

    @field_validator("backend", mode="before")
    @classmethod
    def _backend(cls, value: object) -> object:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered == "os":
                raise ValueError(
                    "the 'os' backend (the OS secret store) cannot be read portably; "
                    "use 'file' (or 'test' for local networks)"
                )
            if lowered in ("memory", "mem"):
                raise ValueError("the 'memory' backend keeps no key across runs; use 'file'")
            return lowered
        return value

    @model_validator(mode="after")
    def _one_passphrase_source(self) -> KeyringConfig:
        sources = [
            n
            for n in ("passphrase_plain", "passphrase_env", "passphrase_file")
            if getattr(self, n) not in (None, "")
        ]
        if len(sources) > 1:
            raise ValueError(f"set at most one passphrase source, got {', '.join(sources)}")
        return self


class LumeraConfig(BaseModel):
    """The Lumera chain endpoint (gRPC) used for peer discovery and admission."""

    # The Go config carries transaction tuning here (gas_adjustment, fee_denom, …): ignored.
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    grpc_addr: str | None = None
    chain_id: str | None = None
    #: A static registry (YAML list of supernodes) used instead of the chain: private and
    #: local networks. Relative paths resolve against the config file's folder.
    registry_file: Path | None = None

    @field_validator("grpc_addr")
    @classmethod
    def _grpc_addr(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        rest = value.split("://", 1)[1] if "://" in value else value
        host, colon, port = rest.rpartition(":")
        if colon and not (host.endswith("]") or host.count(":") == 0):
            host, port = rest, ""  # bare IPv6 without a port
        elif not colon:
            host, port = rest, ""
        if port and (not port.isdigit() or not 1 <= int(port) <= 65535):
            raise ValueError(f"{value!r}: port {port!r} is not a number from 1 to 65535")
        _check_host(host.rstrip("/"))
        return value

    @model_validator(mode="after")
    def _chain_id_with_addr(self) -> LumeraConfig:
        if self.grpc_addr and not self.chain_id:
            raise ValueError("chain_id is required when grpc_addr is set (the node checks it)")
        return self


#: Units of ``store.max_storage_bytes``: decimal (kB, MB…) and binary (KiB, MiB…).
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d{1,15}(?:\.\d{1,9})?)\s*([a-zA-Z]{0,3})\s*$")
#: The largest count or size accepted: SQLite's integers are 64-bit.
_MAX_INT64 = 2**63 - 1

Count = Annotated[int, Field(ge=0, le=_MAX_INT64, strict=True)]


def parse_byte_size(value: object) -> int:
    """Bytes from an integer or a size such as ``"10GiB"``, ``"500 MB"``, ``"1.5TiB"``."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number of bytes or a size such as '10GiB'")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a whole number of bytes or a size such as '10GiB'")
    match = _SIZE_RE.match(value)
    unit = _SIZE_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"{value[:40]!r} is not a size: write bytes, or a number with kB, MB, GB, TB, "
            "KiB, MiB, GiB or TiB"
        )
    whole, _, fraction = match.group(1).partition(".")
    # Integer arithmetic, so "1.1GB" is exactly 1,100,000,000 (a float would round).
    scale: int = 10 ** len(fraction)
    return int(whole) * unit + int(fraction or "0") * unit // scale


class StoreOpenOptions(TypedDict):
    """The ``store`` section as keyword arguments of ``LocalStore.open``."""

    synchronous: Literal["full", "normal"]
    max_storage_bytes: int
    max_replication_keys_per_peer: int
    max_replication_keys: int


class StoreConfig(_Section):
    """The ``store`` section: the data database's durability and limits (0: no limit)."""

    #: ``full``: an acknowledged write survives power loss (an fsync per commit); ``normal``:
    #: it survives the process being killed, but the last commits may be lost on power loss.
    synchronous: Literal["full", "normal"] = "full"
    #: Stored value bytes past which new values are refused (the node answers as full).
    max_storage_bytes: Annotated[int, Field(ge=0, le=_MAX_INT64)] = 0
    #: ``replication_keys`` rows one announcing peer may have pending; more are dropped.
    max_replication_keys_per_peer: Count = 100_000
    #: ``replication_keys`` rows in all.
    max_replication_keys: Count = 1_000_000

    @field_validator("synchronous", mode="before")
    @classmethod
    def _synchronous(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("max_storage_bytes", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        return parse_byte_size(value)

    def open_options(self) -> StoreOpenOptions:
        """Keyword arguments for ``LocalStore.open``."""
        return StoreOpenOptions(
            synchronous=self.synchronous,
            max_storage_bytes=self.max_storage_bytes,
            max_replication_keys_per_peer=self.max_replication_keys_per_peer,
            max_replication_keys=self.max_replication_keys,
        )


class Config(BaseModel):
    """The whole node configuration, validated and with paths resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    key_name: str = Field(min_length=1)
    identity: str | None = None
    p2p: P2PConfig
    keyring: KeyringConfig = KeyringConfig()
    lumera: LumeraConfig = LumeraConfig()
    store: StoreConfig = StoreConfig()

    @field_validator("identity")
    @classmethod
    def _identity(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        try:
            return validate_address(value)
        except IdentityError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="before")
    @classmethod
    def _supernode_alias(cls, data: Any) -> Any:
        """Accept a Go supernode config: ``supernode.key_name``/``identity``/``host``."""
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if k not in _FOREIGN_SECTIONS}
        sn = data.pop("supernode", None)
        if sn is None:
            return data
        if not isinstance(sn, dict):
            raise ValueError("supernode must be a mapping")
        for key in ("key_name", "identity"):
            if key in sn:
                if key in data and data[key] != sn[key]:
                    raise ValueError(f"{key} and supernode.{key} disagree")
                data.setdefault(key, sn[key])
        host = sn.get("host") or sn.get("ip_address")
        p2p = data.get("p2p")
        if host and isinstance(p2p, dict) and "listen_address" not in p2p:
            data["p2p"] = {**p2p, "listen_address": host}
        return data

    def redacted(self) -> dict[str, Any]:
        """A plain dict of the configuration with secrets masked, for printing."""
        out = self.model_dump(mode="json")
        if out["keyring"].get("passphrase_plain"):
            out["keyring"]["passphrase_plain"] = "***"
        out["p2p"]["bootstrap_nodes"] = [str(b) for b in self.p2p.bootstrap_nodes]
        return out


def _resolve(path: Path, base: Path) -> Path:
    expanded = path.expanduser()
    return expanded if expanded.is_absolute() else (base / expanded).resolve()


def _format_loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif "[" not in item and "function-" not in item:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def _first_error(exc: ValidationError) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    field = _format_loc(tuple(err["loc"]))
    kind = err["type"]
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "missing":
        msg = "is required"
    elif kind == "extra_forbidden":
        msg = "unknown field (check the spelling)"
    elif "input" in err and kind not in ("value_error", "assertion_error"):
        msg = f"{msg} (got {err['input']!r})"
    return ConfigError(field, msg)


def config_from_mapping(data: Mapping[str, Any], base_dir: Path) -> Config:
    """Validate a parsed mapping; relative paths resolve against ``base_dir``."""
    try:
        config = Config.model_validate(dict(data))
    except ValidationError as exc:
        raise _first_error(exc) from None
    p2p = config.p2p.model_copy(update={"data_dir": _resolve(config.p2p.data_dir, base_dir)})
    ring = config.keyring
    ring_update: dict[str, Path] = {"dir": _resolve(ring.dir, base_dir)}
    if ring.passphrase_file is not None:
        ring_update["passphrase_file"] = _resolve(ring.passphrase_file, base_dir)
    lumera = config.lumera
    if lumera.registry_file is not None:
        lumera = lumera.model_copy(
            update={"registry_file": _resolve(lumera.registry_file, base_dir)}
        )
    return config.model_copy(
        update={
            "p2p": p2p,
            "keyring": ring.model_copy(update=ring_update),
            "lumera": lumera,
        }
    )


def load_config(path: str | Path) -> Config:
    """Read, parse and validate a YAML configuration file; raise ``ConfigError``."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"{file}: no such file") from None
    except IsADirectoryError:
        raise ConfigError("", f"{file}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"{file}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError("", f"{file}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{file}: the top level must be a mapping of sections")
    return config_from_mapping(data, file.resolve().parent)
