"""The Lumera chain as a :class:`~lumera_p2p.chain.registry.Registry`, over gRPC (``grpc.aio``).

Four queries (spec chain-and-keys.md §1.1): ``ListSuperNodes`` (paged through ``next_key``),
``GetSuperNodeBySuperNodeAddress``, ``cosmos.auth.v1beta1.Query/AccountInfo``, and
``GetNodeInfo`` once per connection to check that the node serves the configured chain id.

Connecting (§1.5). ``grpc_addr`` may be ``host:port``, ``host`` or ``scheme://host[:port]``.
Without a port, 9090 is tried and then 443. ``https://`` or port 443 means TLS (gRPC's bundled
web-PKI roots unless ``root_certificates`` is given); any other target is tried in plaintext
first, then with TLS. Go instead races every port × {TLS, plaintext} candidate and keeps the
first to become READY; trying them in order is simpler, deterministic, and costs only the failed
attempts' round trips at start-up (each attempt is bounded by ``connect_timeout``). A candidate
counts as reached when ``GetNodeInfo`` answers on it, which is also the chain-id check; a chain-id
mismatch is final (it is the right node, serving the wrong chain).

The handshake lookups (``is_registered_supernode``, ``account_exists``) cache positive answers
for an hour and share one in-flight query per address, like Go's ristretto cache + singleflight.
Negative answers are not cached, so a newly registered peer is let in on its next attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from lumera_p2p.chain._generated.cosmos.auth.v1beta1 import query_pb2 as auth_query_pb2
from lumera_p2p.chain._generated.cosmos.base.tendermint.v1beta1 import query_pb2 as node_pb2
from lumera_p2p.chain._generated.lumera.supernode.v1 import query_pb2 as sn_query_pb2
from lumera_p2p.chain._generated.lumera.supernode.v1 import supernode_pb2
from lumera_p2p.chain.registry import Supernode, supernode_from_record
from lumera_p2p.config import LumeraConfig
from lumera_p2p.errors import ChainError, ConfigError, IdentityError
from lumera_p2p.identity.keys import validate_address

__all__ = [
    "DEFAULT_CACHE_TTL",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH",
    "DEFAULT_PAGE_LIMIT",
    "DEFAULT_TIMEOUT",
    "GrpcRegistry",
    "dial_candidates",
]

#: Full gRPC method names; they must match the chain's exactly.
LIST_SUPERNODES = "/lumera.supernode.v1.Query/ListSuperNodes"
GET_SUPERNODE = "/lumera.supernode.v1.Query/GetSuperNodeBySuperNodeAddress"
ACCOUNT_INFO = "/cosmos.auth.v1beta1.Query/AccountInfo"
GET_NODE_INFO = "/cosmos.base.tendermint.v1beta1.Service/GetNodeInfo"

DEFAULT_TIMEOUT = 5.0  # seconds per query, as Go's handshake lookups
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds per connection candidate
DEFAULT_PAGE_LIMIT = 1000
DEFAULT_CACHE_TTL = 3600.0  # Go's ristretto TTL for the handshake lookups
DEFAULT_CACHE_SIZE = 1024
#: 1000 supernodes with metrics and histories per page can pass gRPC's 4 MiB default.
DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH = 64 * 1024 * 1024
_DEFAULT_PORTS = (9090, 443)
_TLS_PORT = 443
#: A chain with more pages than this is answering in a loop, not listing supernodes.
_MAX_PAGES = 10_000

_M = TypeVar("_M", bound=Message)


def dial_candidates(grpc_addr: str) -> list[tuple[str, bool]]:
    """The ``(target, use_tls)`` pairs tried for ``grpc_addr``, in order; ConfigError if bad."""
    text = grpc_addr.strip()
    scheme = ""
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme = scheme.lower()
    text = text.split("/", 1)[0]  # a trailing path means nothing to gRPC
    host, port_text = _split_target(text)
    if not host:
        raise ConfigError("lumera.grpc_addr", f"{grpc_addr!r} has no host")
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(
                "lumera.grpc_addr", f"{grpc_addr!r}: port {port_text!r} is not 1-65535"
            )
        ports: tuple[int, ...] = (int(port_text),)
    else:
        ports = _DEFAULT_PORTS
    candidates: list[tuple[str, bool]] = []
    for port in ports:
        target = f"{host}:{port}"
        if scheme == "https" or port == _TLS_PORT:
            candidates.append((target, True))
        else:
            candidates += [(target, False), (target, True)]
    return candidates


def _split_target(text: str) -> tuple[str, str]:
    """``(host, port)``; the host keeps or gains brackets when it is an IPv6 literal."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return "", ""
        rest = text[end + 1 :]
        return text[: end + 1], rest[1:] if rest.startswith(":") else rest
    if text.count(":") > 1:  # a bare IPv6 address: no port can be told apart
        return f"[{text}]", ""
    host, _, port = text.partition(":")
    return host, port


class _TtlCache:
    """Addresses known good until an expiry time; bounded, oldest entries evicted first."""

    def __init__(self, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def __contains__(self, key: str) -> bool:
        expiry = self._expiry.get(key)
        if expiry is None:
            return False
        if self._clock() >= expiry:
            del self._expiry[key]
            return False
        return True

    def add(self, key: str) -> None:
        self._expiry.pop(key, None)
        while len(self._expiry) >= self._size:
            del self._expiry[next(iter(self._expiry))]
        self._expiry[key] = self._clock() + self._ttl

    def clear(self) -> None:
        self._expiry.clear()


class GrpcRegistry:
    """A :class:`~lumera_p2p.chain.registry.Registry` backed by a Lumera node's gRPC endpoint.

    Connects lazily on the first query (or :meth:`connect`), then keeps one channel; gRPC
    reconnects it by itself after an outage. Every failure to get an answer raises
    :class:`~lumera_p2p.errors.ChainError` naming the endpoint.
    """

    def __init__(
        self,
        grpc_addr: str,
        chain_id: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        page_limit: int | None = DEFAULT_PAGE_LIMIT,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_receive_message_length: int = DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH,
        root_certificates: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``page_limit=None`` sends no pagination, so the chain pages by its default of 100."""
        if not chain_id:
            raise ConfigError("lumera.chain_id", "is required to talk to the chain")
        if page_limit is not None and page_limit < 1:
            raise ValueError("page_limit must be at least 1 (or None for the chain's default)")
        self._addr = grpc_addr
        self._candidates = dial_candidates(grpc_addr)
        self._chain_id = chain_id
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._page_limit = page_limit
        self._root_certificates = root_certificates
        self._options: list[tuple[str, int]] = [
            ("grpc.max_receive_message_length", max_receive_message_length),
            # Go's keepalive: ping after 10 min idle, 20 s to answer, also without calls.
            ("grpc.keepalive_time_ms", 600_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        self._supernode_cache = _TtlCache(cache_ttl, cache_size, clock)
        self._account_cache = _TtlCache(cache_ttl, cache_size, clock)
        self._inflight: dict[str, asyncio.Task[bool]] = {}
        self._channel: Any = None
        self._target: str | None = None
        self._connect_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def from_config(
        cls,
        config: LumeraConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        page_limit: int | None = DEFAULT_PAGE_LIMIT,
    ) -> GrpcRegistry:
        """A registry for the ``lumera`` config section; ConfigError if it names no endpoint."""
        if not config.grpc_addr:
            raise ConfigError("lumera.grpc_addr", "is required to use the chain registry")
        if not config.chain_id:
            raise ConfigError("lumera.chain_id", "is required when grpc_addr is set")
        return cls(config.grpc_addr, config.chain_id, timeout=timeout, page_limit=page_limit)

    @property
    def target(self) -> str | None:
        """The ``host:port`` connected to (None before the first successful connection)."""
        return self._target

    # --- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and check the chain id now, rather than on the first query."""
        await self._get_channel()

    async def close(self) -> None:
        """Close the channel and forget the caches; later queries raise ChainError."""
        self._closed = True
        for task in self._inflight.values():
            task.cancel()
        self._inflight.clear()
        self.clear_cache()
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    def clear_cache(self) -> None:
        """Forget cached handshake answers (Go does this after an EVM key migration)."""
        self._supernode_cache.clear()
        self._account_cache.clear()

    async def _get_channel(self) -> Any:
        if self._closed:
            raise ChainError(f"the chain registry for {self._addr} is closed")
        if self._channel is not None:
            return self._channel
        async with self._connect_lock:
            if self._channel is None:
                self._channel = await self._connect()
            return self._channel

    def _open(self, target: str, tls: bool) -> Any:
        if tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=self._root_certificates)
            return grpc.aio.secure_channel(target, credentials, options=self._options)
        return grpc.aio.insecure_channel(target, options=self._options)

    async def _connect(self) -> Any:
        failures: list[str] = []
        for target, tls in self._candidates:
            mode = "TLS" if tls else "plaintext"
            channel = self._open(target, tls)
            try:
                raw = await channel.unary_unary(GET_NODE_INFO)(
                    node_pb2.GetNodeInfoRequest().SerializeToString(),
                    timeout=self._connect_timeout,
                )
                network = _decode(node_pb2.GetNodeInfoResponse, raw, target).default_node_info
            except grpc.aio.AioRpcError as exc:
                await channel.close()
                failures.append(f"{target} ({mode}): {exc.code().name}: {exc.details()}")
                continue
            except BaseException:
                await channel.close()
                raise
            if network.network != self._chain_id:
                await channel.close()
                raise ChainError(
                    f"the Lumera node at {target} serves chain {network.network!r}, "
                    f"but lumera.chain_id is {self._chain_id!r}"
                )
            self._target = target
            return channel
        raise ChainError(
            f"cannot reach a Lumera gRPC endpoint at {self._addr!r}; tried " + "; ".join(failures)
        )

    # --- queries ---------------------------------------------------------------------------

    async def _call(
        self, method: str, request: Message, response_type: type[_M], *, not_found_ok: bool
    ) -> _M | None:
        """One unary call; None for NOT_FOUND when ``not_found_ok``, else ChainError."""
        channel = await self._get_channel()
        name = method.rsplit("/", 1)[1]
        try:
            raw = await channel.unary_unary(method)(
                request.SerializeToString(), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND and not_found_ok:
                return None
            where = f"the Lumera node at {self._target}"
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ChainError(f"{where} is unavailable ({name}): {exc.details()}") from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ChainError(
                    f"{where} did not answer {name} within {self._timeout:g} s"
                ) from None
            raise ChainError(f"{where} refused {name}: {code.name}: {exc.details()}") from None
        return _decode(response_type, raw, self._target or self._addr)

    async def list_supernodes(self) -> list[Supernode]:
        """Every supernode record with a state, following ``next_key`` to the last page.

        An address listed twice (the chain moved on between pages) keeps its latest record.
        """
        found: dict[str, Supernode] = {}
        key = b""
        seen_keys: set[bytes] = set()
        for _ in range(_MAX_PAGES):
            request = sn_query_pb2.QueryListSuperNodesRequest()
            if self._page_limit is not None:
                request.pagination.limit = self._page_limit
            if key:
                request.pagination.key = key
            response = await self._call(
                LIST_SUPERNODES,
                request,
                sn_query_pb2.QueryListSuperNodesResponse,
                not_found_ok=False,
            )
            assert response is not None  # not_found_ok=False
            for record in response.supernodes:
                node = supernode_from_record(record)
                if node is not None:
                    found.pop(node.address, None)
                    found[node.address] = node
            key = response.pagination.next_key
            if not key:
                return list(found.values())
            if key in seen_keys:
                raise ChainError(f"the Lumera node at {self._target} repeats a page key")
            seen_keys.add(key)
        raise ChainError(f"the Lumera node at {self._target} sent more than {_MAX_PAGES} pages")

    async def _supernode_record(self, address: str) -> supernode_pb2.SuperNode | None:
        response = await self._call(
            GET_SUPERNODE,
            sn_query_pb2.QueryGetSuperNodeBySuperNodeAddressRequest(supernodeAddress=address),
            sn_query_pb2.QueryGetSuperNodeBySuperNodeAddressResponse,
            not_found_ok=True,
        )
        if response is None or not response.HasField("supernode"):
            return None
        return response.supernode

    async def get_supernode(self, address: str) -> Supernode | None:
        """The supernode registered for ``address``; None if unknown or not usable (§1.4)."""
        if not _well_formed(address):
            return None
        record = await self._supernode_record(address)
        return None if record is None else supernode_from_record(record)

    async def is_registered_supernode(self, address: str) -> bool:
        """Go's handshake check: the record found for ``address`` has that account."""
        if not _well_formed(address):
            return False
        if address in self._supernode_cache:
            return True

        async def query() -> bool:
            record = await self._supernode_record(address)
            known = record is not None and record.supernode_account == address
            if known:
                self._supernode_cache.add(address)
            return known

        return await self._single_flight(f"sn:{address}", query)

    async def account_exists(self, address: str) -> bool:
        """Go's simple-node handshake check: ``AccountInfo(address).info.address == address``."""
        if not _well_formed(address):
            return False
        if address in self._account_cache:
            return True

        async def query() -> bool:
            response = await self._call(
                ACCOUNT_INFO,
                auth_query_pb2.QueryAccountInfoRequest(address=address),
                auth_query_pb2.QueryAccountInfoResponse,
                not_found_ok=True,
            )
            known = response is not None and response.info.address == address
            if known:
                self._account_cache.add(address)
            return known

        return await self._single_flight(f"acct:{address}", query)

    async def _single_flight(self, key: str, query: Callable[[], Awaitable[bool]]) -> bool:
        """Run ``query`` once for concurrent callers with the same key.

        The query runs as its own task so a caller that gives up (cancelled) does not cancel
        it for the others.
        """
        if self._closed:
            raise ChainError(f"the chain registry for {self._addr} is closed")
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(query())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                # close() stopped the shared query; this caller was not cancelled itself.
                raise ChainError(f"the chain registry for {self._addr} was closed") from None
            raise

    def _forget(self, key: str, task: asyncio.Task[bool]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning if every caller left


def _well_formed(address: str) -> bool:
    """A malformed address can be neither registered nor funded: no need to ask the chain."""
    try:
        validate_address(address)
    except IdentityError:
        return False
    return True


def _decode(response_type: type[_M], raw: object, where: str) -> _M:
    if not isinstance(raw, bytes):
        raise ChainError(f"the Lumera node at {where} sent a non-bytes reply")
    try:
        return response_type.FromString(raw)
    except DecodeError as exc:
        raise ChainError(f"the Lumera node at {where} sent a malformed reply: {exc}") from None


if TYPE_CHECKING:
    from lumera_p2p.chain.registry import Registry
    from lumera_p2p.secure.handshake import PeerVerifier

    def _conforms(registry: GrpcRegistry) -> tuple[Registry, PeerVerifier]:
        """Checked by mypy only: GrpcRegistry is a Registry and a handshake PeerVerifier."""
        return registry, registry
