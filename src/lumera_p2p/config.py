"""Node configuration: YAML → a validated, typed :class:`Config`.

The layout follows the seed's ``p2p`` section and the Go supernode's ``config.yml``
(``keyring``, ``lumera``, ``log``), so an operator can point this node at the file a Go supernode
uses: :mod:`lumera_p2p.config_go` lists the Go node's fields, maps the ones we honour
(``supernode.key_name``, ``keyring.password``, …) and checks the spelling of the ones we do not
use. Any other key is an error, in every section, because a misspelt field silently taking its
default is how nodes end up misconfigured.

Nothing but a :class:`~lumera_p2p.errors.ConfigError` leaves :func:`load_config`: the file is
read and parsed within limits (:mod:`lumera_p2p.safe_yaml`), and every problem found is reported
at once, one line each, naming the field (``p2p.port``) and what is wrong, and never the value of
a passphrase.
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lumera_p2p import config_go
from lumera_p2p.config_plain import DEFAULT_P2P_PORT, BootstrapNode
from lumera_p2p.errors import ConfigError, IdentityError
from lumera_p2p.identity.keys import validate_address
from lumera_p2p.kademlia.version import parse_semver
from lumera_p2p.safe_yaml import CONFIG_LIMITS, read_yaml_file

DEFAULT_LISTEN_ADDRESS = "0.0.0.0"
#: The supernode release whose P2P protocol this node implements, advertised in every
#: ``Node.Version`` we send (Go nodes with a minimum version drop peers without one).
DEFAULT_P2P_VERSION = "v2.6.2"
_MAX_VERSION_LENGTH = 64
#: More bootstrap nodes than this is a mistake (a routing table holds a few hundred peers), and
#: each one costs a bech32 check.
MAX_BOOTSTRAP_NODES = 256
#: Fields whose value is a secret: a problem with one names the field, never the value.
SECRET_FIELDS = frozenset({"passphrase_plain", "password"})
#: Sections whose values are never quoted in an error (a passphrase may sit anywhere in them
#: when the file is mis-indented).
_QUIET_SECTIONS = frozenset({"keyring"})
_MAX_QUOTED = 60
#: Problems reported at most for one file, then a count of the rest: a file that is all wrong
#: gets a readable answer, and a "did you mean" for each of thousands of keys costs seconds.
MAX_PROBLEMS = 50

_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)

Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
Interval = Annotated[float, Field(gt=0, le=7 * 24 * 3600)]
#: A duration in seconds (a timeout or a deadline), at most a day.
Seconds = Annotated[float, Field(gt=0, le=24 * 3600)]
AtLeastOne = Annotated[int, Field(ge=1, le=1_000_000, strict=True)]
Bytes = Annotated[int, Field(ge=1, le=1 << 40, strict=True)]
Rate = Annotated[float, Field(gt=0, le=1e12)]
Share = Annotated[float, Field(ge=0, le=1)]
#: A size, a count or a rate where 0 turns the limit off.
BytesOrOff = Annotated[int, Field(ge=0, le=1 << 40, strict=True)]
CountOrOff = Annotated[int, Field(ge=0, le=1_000_000_000, strict=True)]
RateOrOff = Annotated[float, Field(ge=0, le=1e12)]
MIB = 1024 * 1024


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
    #: While the routing table is empty, the peer sync runs this often instead.
    peer_sync_retry_interval: Interval = 30.0
    #: How often stale buckets are looked for (at least every ``bucket_refresh_interval``).
    bucket_refresh_check_interval: Interval = 600.0
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
        if len(entries) > MAX_BOOTSTRAP_NODES:
            raise ValueError(f"at most {MAX_BOOTSTRAP_NODES} entries, got {len(entries)}")
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


class RpcTimeoutsConfig(_Section):
    """Seconds to wait for each kind of answer (Go's client timeouts, network.go)."""

    ping: Seconds = 5.0
    find_node: Seconds = 10.0
    batch_find_node: Seconds = 5.0
    find_value: Seconds = 5.0
    store_data: Seconds = 10.0
    batch_store_data: Seconds = 75.0
    batch_find_values: Seconds = 180.0
    batch_get_values: Seconds = 75.0
    replicate: Seconds = 180.0
    #: Any other type (Go's ``defaultExecTimeout``).
    default: Seconds = 15.0


class DHTConfig(_Section):
    """How the node looks up, stores and retrieves (``dht/options.py`` says why each)."""

    k: Annotated[int, Field(ge=1, le=256, strict=True)] = 20
    alpha: Annotated[int, Field(ge=1, le=256, strict=True)] = 6
    replicas: Annotated[int, Field(ge=1, le=256, strict=True)] = 6
    min_replicas: Annotated[int, Field(ge=0, le=256, strict=True)] = 1
    find_value_alpha: Annotated[int, Field(ge=1, le=256, strict=True)] = 1
    probe_after: Annotated[float, Field(ge=0, le=1e9)] = 60.0
    lookup_timeout: Seconds = 5.0
    lookup_stall: Seconds = 1.0
    lookup_retries: Annotated[int, Field(ge=0, le=100, strict=True)] = 2
    max_failures: Annotated[int, Field(ge=1, le=1000, strict=True)] = 2
    batch_store_bytes: Bytes = 8 * MIB
    batch_store_concurrency: AtLeastOne = 16
    min_batch_store_success: Share = 0.75
    batch_get_keys: AtLeastOne = 600
    batch_get_concurrency: AtLeastOne = 8
    fallback_lookups: AtLeastOne = 8
    health_check_concurrency: AtLeastOne = 32
    rpc_timeouts: RpcTimeoutsConfig = RpcTimeoutsConfig()

    @model_validator(mode="after")
    def _min_replicas_fit(self) -> DHTConfig:
        if self.min_replicas > self.replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) cannot exceed replicas ({self.replicas})"
            )
        return self


class ServerConfig(_Section):
    """What the node accepts: connection admission and pacing, and request limits."""

    #: New connections a second from one IP, and the burst it may use at once.
    per_ip_rate: Rate = 20.0
    per_ip_burst: Annotated[float, Field(ge=1, le=1e9)] = 50.0
    #: New connections a second from everyone (Go: 1000/s).
    global_rate: Rate = 1000.0
    global_burst: Annotated[float, Field(ge=1, le=1e9)] = 1000.0
    max_tracked_ips: AtLeastOne = 65536
    max_connections: AtLeastOne = 1024
    max_handshakes: AtLeastOne = 100
    #: Handshakes in progress at once from one address (an IPv6 /64 counts as one), once half
    #: of ``max_handshakes`` are taken.
    max_handshakes_per_address: AtLeastOne = 8
    #: A new connection that sends nothing for this long is dropped.
    first_byte_timeout: Seconds = 2.5
    #: Refuse addresses the registry does not list, before the handshake (off: see README).
    registered_addresses_only: bool = False
    handshake_timeout: Seconds = 10.0
    idle_timeout: Seconds = 90.0
    frame_grace: Seconds = 10.0
    #: Bytes a second a frame must arrive at, on average (1 MiB/s: Go's deadline model).
    min_transfer_rate: Rate = 1.0 * MIB
    #: Longest a handler may take; null for no limit.
    handler_timeout: Seconds | None = 200.0
    max_keys_per_request: AtLeastOne = 20_000
    batch_find_values_slots: AtLeastOne = 25
    batch_find_values_wait: Seconds = 60.0
    batch_find_values_max_bytes: Bytes = 399 * MIB
    max_response_value_bytes: Bytes = 256 * MIB
    batch_find_values_per_peer: AtLeastOne = 2
    batch_get_values_slots: AtLeastOne = 8
    batch_get_values_per_peer: AtLeastOne = 2
    batch_get_values_wait: Seconds = 10.0
    #: Bytes in flight for the whole node, and for one peer (0: the whole budget).
    memory_budget: Bytes = 1024 * MIB
    memory_budget_per_peer: BytesOrOff = 512 * MIB
    #: How long a request waits for room in the memory budget.
    memory_wait: Seconds = 10.0
    #: Per-peer quotas (0 turns one off): value bytes and values stored, keys announced.
    write_quota_bytes: BytesOrOff = 1024 * MIB
    write_quota_values_per_second: RateOrOff = 2000.0
    replicate_quota_keys: CountOrOff = 50_000
    quota_window: Seconds = 60.0
    #: Refusals within a window after which a peer's over-quota requests close its connection.
    quota_strikes: AtLeastOne = 20


class TransportConfig(_Section):
    """The client side: dialling and the connection pool."""

    dial_timeout: Seconds = 5.0
    pool_capacity: AtLeastOne = 256
    conns_per_peer: Annotated[int, Field(ge=1, le=64, strict=True)] = 4
    #: Servers (ours, Go's) drop a connection after 90 s without a request; pooled
    #: connections idle longer would mostly be found dead, so they go first (Go keeps 1 h).
    idle_timeout: Seconds = 60.0
    prune_interval: Seconds = 30.0
    #: The largest answer read (the protocol's 400 MiB frame limit).
    max_response_size: Bytes = 400 * MIB
    #: Messages above this size are encoded and decoded in a worker thread.
    off_loop_size: Bytes = MIB
    #: Bytes a second a large request or answer is given: an RPC's timeout is its
    #: ``dht.rpc_timeouts`` entry plus its request's and its answer's size at this rate.
    transfer_rate: Rate = 1.0 * MIB
    #: Bytes of large answers read at once from all peers (at least ``max_response_size``).
    answer_budget: Bytes = 512 * MIB


class KeyringConfig(_Section):
    """Where the node's key lives (Cosmos SDK keyring directory) and how it is unlocked.

    ``os`` (the Go node's default: the operating system's secret store) is a valid value, so a
    Go config loads and ``config check`` can say what to do, but this node cannot read that
    store: ``run`` refuses it, with the same advice.
    """

    backend: Literal["test", "file", "os"] = "test"
    dir: Path = Path("~/.lumera")
    passphrase_plain: str | None = None
    passphrase_env: str | None = None
    passphrase_file: Path | None = None

    @field_validator("backend", mode="before")
    @classmethod
    def _backend(cls, value: object) -> object:
        if isinstance(value, str):
            lowered = value.strip().lower()
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


class LumeraConfig(_Section):
    """The Lumera chain endpoint (gRPC) used for peer discovery and admission.

    The Go config also carries transaction tuning here (``gas_adjustment``, ``fee_denom``, …):
    :mod:`lumera_p2p.config_go` checks and drops those keys before this section is validated.
    """

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


class ReplicationConfig(_Section):
    """Replication and repair: Go's replication workers (``dht/replication/options.py``
    says why each default)."""

    interval: Interval = 600.0
    activity_interval: Interval = 300.0
    activity_concurrency: AtLeastOne = 32
    neighbours: AtLeastOne = 12
    offline_deadline: Interval = 2100.0
    announce_batch_keys: AtLeastOne = 5000
    announce_concurrency: AtLeastOne = 16
    scan_keys: AtLeastOne = 200_000
    fetch_interval: Interval = 300.0
    fetch_delay: Seconds = 5.0
    failed_fetch_interval: Interval = 600.0
    fetch_rows: AtLeastOne = 10_000
    fetch_batch_keys: AtLeastOne = 400
    fetch_iterations: Annotated[int, Field(ge=1, le=1000, strict=True)] = 10
    fetch_concurrency: Annotated[int, Field(ge=1, le=1024, strict=True)] = 4
    fetch_alternates: Annotated[int, Field(ge=1, le=1000, strict=True)] = 12
    pending_key_ttl: Interval = 86400.0
    disabled_key_cleanup_interval: Interval = 120.0
    redundant_scan_interval: Interval = 43200.0
    delete_redundant: bool = False
    delete_interval: Interval = 39600.0
    delete_min_count: AtLeastOne = 10
    delete_below_free_bytes: Annotated[int, Field(ge=1, le=_MAX_INT64)] = 50 * 1000**3

    @field_validator("delete_below_free_bytes", mode="before")
    @classmethod
    def _free(cls, value: object) -> int:
        return parse_byte_size(value)


def _chunk_size(value: object) -> int:
    size = parse_byte_size(value)
    if not 4096 <= size <= 64 * MIB:
        raise ValueError(f"must be from 4 KiB to 64 MiB, got {size} bytes")
    return size


class FilesConfig(_Section):
    """The ``files`` section: how ``put_file``/``get_file`` split and stream files."""

    #: Bytes per chunk (each chunk is one value): bytes or a size such as ``"4MiB"``.
    chunk_size: int = MIB
    #: Chunks stored per ``store_batch``.
    store_batch_chunks: Annotated[int, Field(ge=1, le=64, strict=True)] = 4
    #: Chunks fetched per ``batch_retrieve`` on a get (the next group while one is written).
    readahead_chunks: Annotated[int, Field(ge=1, le=64, strict=True)] = 4
    #: Acknowledging replicas for a chunk to count as stored when a put runs again.
    min_replicas: Annotated[int, Field(ge=1, le=256, strict=True)] | None = None
    #: Seconds a stored chunk's record counts for a resumed put.
    resume_window: Interval = 24 * 3600.0
    #: Rounds of ``batch_retrieve`` for missing chunks before a get gives up.
    retrieve_attempts: Annotated[int, Field(ge=1, le=100, strict=True)] = 3
    #: Rounds of a put's batch store (later rounds only to replicas that did not acknowledge).
    store_rounds: Annotated[int, Field(ge=1, le=20, strict=True)] = 4
    #: Seconds before a batch's second round (doubling each further round).
    store_retry_delay: Annotated[float, Field(ge=0.0, le=60.0)] = 0.5

    @field_validator("chunk_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        return _chunk_size(value)


class SymbolsConfig(_Section):
    """The ``symbols`` section: storing registered RaptorQ symbol directories (Go's
    ``rq_symbols`` worker)."""

    #: The ``rqstore.db`` of registered directories (Go: ``<raptorq.files_dir>/rq/rqstore.db``);
    #: default ``<p2p.data_dir>/rqstore.db``; relative to the config file's folder.
    db_path: Path | None = None
    #: Seconds between the worker's rounds (Go: 30 s); a registration starts one at once.
    interval: Interval = 30.0
    #: Files per ``StoreBatch`` (Go: 1,000).
    batch_size: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 1000
    #: Symbol bytes one batch may hold (the worker's memory bound); a larger file is refused.
    max_batch_bytes: Annotated[int, Field(ge=1, le=400 * MIB, strict=True)] = 128 * MIB

    @field_validator("db_path", mode="before")
    @classmethod
    def _db_path(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, (str, Path)):
            raise ValueError("must be a path (a string)")
        return value


#: Go's level names (``warn``, ``fatal``; Go's ``log.level`` and ``LOG_LEVEL``) beside ours.
_LOG_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical"}


class LogConfig(_Section):
    """How ``lumera-p2p run`` logs: level, line format and an optional file (else stderr)."""

    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    #: ``text``: one human-readable line per record; ``json``: one JSON object per line.
    format: Literal["text", "json"] = "text"
    #: Append to this file instead of writing to stderr; relative to the config file's folder.
    file: Path | None = None

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        if isinstance(value, str):
            lowered = value.strip().lower()
            return _LOG_LEVEL_ALIASES.get(lowered, lowered)
        return value

    @field_validator("file", mode="before")
    @classmethod
    def _file(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, (str, Path)):
            raise ValueError("must be a path (a string)")
        return value


#: The API's default port: the P2P port's neighbour (Go's own HTTP gateway is 8002).
DEFAULT_API_PORT = 4446
DEFAULT_API_LISTEN = f"127.0.0.1:{DEFAULT_API_PORT}"


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (an IPv6 host in brackets) → ``(host, port)``; port 0 picks a free one.

    Raise ``ValueError`` naming what is wrong.
    """
    text = value.strip()
    host, colon, port_text = text.rpartition(":")
    if not colon or not host:
        raise ValueError(f"{value!r} is not host:port (e.g. '127.0.0.1:{DEFAULT_API_PORT}')")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"{value!r}: an IPv6 host must be written in brackets")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{value!r}: port {port_text!r} is not a number from 0 to 65535")
    return _check_host(host), int(port_text)


class ApiConfig(_Section):
    """The node's local HTTP API, Prometheus metrics and status page (``run``, ``localnet``).

    On a loopback address no token is asked of local clients; anything else needs the bearer
    token kept in ``token_file`` (made on first start, readable by the owner only).
    """

    enabled: bool = True
    #: ``host:port`` to serve on; port 0 picks a free one.
    listen: str = DEFAULT_API_LISTEN
    #: The bearer token's file; relative paths resolve against ``p2p.data_dir``.
    token_file: Path = Path("api-token")
    #: Ask for the token from loopback clients too (a shared machine).
    require_token: bool = False
    #: The largest value one store request may carry.
    max_value_bytes: Bytes = 128 * MIB
    #: The largest batch-store request body (JSON, values in base64).
    max_batch_bytes: Bytes = 64 * MIB
    #: Keys one batch-retrieve request may ask for.
    max_batch_keys: AtLeastOne = 10_000

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, port = parse_listen(value)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def host(self) -> str:
        """The address part of ``listen`` (no brackets)."""
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return parse_listen(self.listen)[1]


class Config(BaseModel):
    """The whole node configuration, validated and with paths resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    key_name: str = Field(min_length=1)
    identity: str | None = None
    p2p: P2PConfig
    keyring: KeyringConfig = KeyringConfig()
    lumera: LumeraConfig = LumeraConfig()
    dht: DHTConfig = DHTConfig()
    server: ServerConfig = ServerConfig()
    transport: TransportConfig = TransportConfig()
    store: StoreConfig = StoreConfig()
    replication: ReplicationConfig = ReplicationConfig()
    files: FilesConfig = FilesConfig()
    symbols: SymbolsConfig = SymbolsConfig()
    log: LogConfig = LogConfig()
    api: ApiConfig = ApiConfig()

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


_PLAIN_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _key_text(key: object) -> str:
    """A key as it appears in a field path; odd keys (spaces, newlines, huge) quoted and cut."""
    text = str(key)
    return text if _PLAIN_KEY_RE.match(text) else _quoted(text)


def _quoted(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 1] + "…"


def _format_loc(loc: Iterable[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif "[" in item or item.startswith("function-"):
            continue  # pydantic's names for validator steps, not fields
        else:
            parts.append(("." if parts else "") + _key_text(item))
    return "".join(parts)


def _section_model(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that validates the mapping found at ``loc`` (for "did you mean" hints)."""
    model: type[BaseModel] = Config
    path = loc
    if loc and loc[0] in config_go.GO_ONLY_SECTIONS:
        model, path = config_go.GO_ONLY_SECTIONS[str(loc[0])], loc[1:]
    for item in path:
        info = model.model_fields.get(item) if isinstance(item, str) else None
        sub = config_go.model_in(info.annotation) if info is not None else None
        if sub is None:
            return None
        model = sub
    return model


def _unknown_field(loc: tuple[int | str, ...]) -> str:
    message = "unknown field (check the spelling)"
    parent = loc[:-1]
    model = _section_model(parent)
    if model is None or not isinstance(loc[-1], str):
        return message
    known = list(model.model_fields)
    if len(parent) == 1:
        known += config_go.go_keys_of(str(parent[0]))
    if not parent:
        known += list(config_go.GO_ONLY_SECTIONS)
    close = difflib.get_close_matches(loc[-1], known, n=1)
    return f"unknown field (did you mean {close[0]!r}?)" if close else message


def _problems(
    exc: ValidationError,
    prefix: tuple[str, ...] = (),
    renames: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, str]]:
    """Every error of ``exc`` as ``(field, problem)``, lazily, secrets never shown."""
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        kind = err["type"]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if kind == "invalid_key":
            # A non-string key (``1: x``): pydantic puts the key itself last in ``loc``.
            field = _format_loc(loc[:-1])
            field = f"{field}.{_key_text(loc[-1])}" if field else _key_text(loc[-1])
            yield field, "unknown field (field names are text)"
            continue
        field = _format_loc(loc)
        if renames:
            field = renames.get(field, field)
        secret = bool(loc) and (
            str(loc[0]) in _QUIET_SECTIONS or any(str(p) in SECRET_FIELDS for p in loc)
        )
        if kind == "missing":
            msg = "is required"
        elif kind == "extra_forbidden":
            msg = _unknown_field(loc)
        elif (
            "input" in err
            and kind not in ("value_error", "assertion_error")
            and not secret
            and isinstance(err["input"], (str, int, float, bool, type(None)))
        ):
            msg = f"{msg} (got {_quoted(err['input'])})"
        yield field, msg


def config_from_mapping(data: Mapping[Any, Any], base_dir: Path) -> Config:
    """Validate a parsed mapping; relative paths resolve against ``base_dir``.

    Raise one :class:`ConfigError` carrying every problem found.
    """
    adapted = config_go.adapt(data)
    found: list[Iterable[tuple[str, str]]] = [adapted.problems]
    total = len(adapted.problems)
    for section, invalid in adapted.invalid:
        found.append(_problems(invalid, (section,)))
        total += invalid.error_count()
    config: Config | None = None
    try:
        config = Config.model_validate(adapted.data)
    except ValidationError as exc:
        found.append(_problems(exc, renames=adapted.renames))
        total += exc.error_count()
    if total or config is None:
        problems = list(itertools.islice(itertools.chain(*found), MAX_PROBLEMS))
        if total > MAX_PROBLEMS:
            problems.append(("", f"… and {total - MAX_PROBLEMS} more problems"))
        raise ConfigError.of(problems or [("", "invalid configuration")])
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
    log = config.log
    if log.file is not None:
        log = log.model_copy(update={"file": _resolve(log.file, base_dir)})
    api = config.api.model_copy(
        update={"token_file": _resolve(config.api.token_file, p2p.data_dir)}
    )
    symbols = config.symbols
    if symbols.db_path is not None:
        symbols = symbols.model_copy(update={"db_path": _resolve(symbols.db_path, base_dir)})
    return config.model_copy(
        update={
            "p2p": p2p,
            "keyring": ring.model_copy(update=ring_update),
            "lumera": lumera,
            "symbols": symbols,
            "log": log,
            "api": api,
        }
    )


def load_config(path: str | Path) -> Config:
    """Read, parse and validate a YAML configuration file.

    Raise :class:`ConfigError`, and nothing else, for every way the file can be wrong:
    unreadable, too large, not YAML, nested too deep, too many values or aliases, an
    oversized integer, or fields that do not validate (all of them reported at once).
    """
    file = Path(path).expanduser()
    data = read_yaml_file(file, CONFIG_LIMITS)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{file}: the top level must be a mapping of sections")
    return config_from_mapping(data, file.resolve().parent)
