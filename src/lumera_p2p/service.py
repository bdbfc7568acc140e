"""``P2P``: the node as a service: configuration in, a running DHT storage node out.

The seed's usage, in Python::

    p2p = await P2P.create(config)            # keys, store, registry, transport
    async with p2p:                           # start: listen, bootstrap, background loops
        key = await p2p.store(b"Hello, world!")
        data = await p2p.retrieve(key)
    # or: await p2p.run()  (until cancelled or SIGTERM)

Background loops (intervals from ``p2p.*_interval``): the allowlist refresh from the registry,
the full peer sync (bootstrap again from the registry's list), bucket refresh, the health
check that pings every routing-table peer, the symbol worker that stores registered
RaptorQ symbol directories (``symbols.interval``, see :mod:`lumera_p2p.symbols`), and
replication and repair (the ``replication`` section:
:class:`~lumera_p2p.dht.replication.Replicator`). Stopping (cancellation, ``stop``, leaving
``async with``) stops accepting, lets in-flight requests finish, closes connections and then
the stores, so every acknowledged write is committed before the process exits.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import base58

from lumera_p2p import __version__
from lumera_p2p.alone import AloneWarning
from lumera_p2p.chain.registry import Registry, Supernode, bootstrap_candidates
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.components import (
    Intervals,
    dht_options,
    file_options,
    replication_options,
    rqstore_path,
    server_limits,
    store_open_options,
    symbol_worker_options,
    transport_options,
)
from lumera_p2p.content import digest, key_from_bytes, key_to_bytes
from lumera_p2p.dht import BatchStoreReport, Node
from lumera_p2p.dht.replication import Replicator
from lumera_p2p.dht.reports import StoreReport
from lumera_p2p.errors import (
    ConfigError,
    LumeraP2PError,
    NotEnoughValues,
    NotRunning,
    ValueMismatch,
    ValueTooLarge,
)
from lumera_p2p.files import (
    FileGet,
    FileOptions,
    FilePut,
    FileReader,
    Files,
    GetProgress,
    PutProgress,
    Source,
)
from lumera_p2p.identity.keyring import Keyring
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.kademlia import Contact, hash_id
from lumera_p2p.net.budget import MemoryBudget
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.resolve import resolve_hosts
from lumera_p2p.net.tcp import ServerStats, TcpServer, TcpTransport
from lumera_p2p.recent_ops import RecentOps, RetrievePoint, StorePoint
from lumera_p2p.secure import PeerVerifier, StaticPeerVerifier
from lumera_p2p.stats import DiskUsage, MemoryBudgetCounters, P2PStats, PoolCounters
from lumera_p2p.store import LocalStore, StoredKey
from lumera_p2p.store.rqstore import RQStore, SymbolDirStatus
from lumera_p2p.symbols.registration import checked_registration
from lumera_p2p.symbols.worker import SymbolWorker
from lumera_p2p.wire.envelope import MAX_VALUE_SIZE

if TYPE_CHECKING:
    # A type only: a node process may run on a plain configuration (config_plain) and
    # never import pydantic.
    from lumera_p2p.config import Config

log = logging.getLogger(__name__)

#: ``on_value(key, value)`` of ``batch_retrieve_stream``; raising refuses the value.
OnValue = Callable[[str, bytes], Awaitable[object]]


def open_node_key(config: Config, passphrase: str | None = None) -> PrivateKey:
    """The node's key (``key_name``) from the keyring the config names.

    ``passphrase`` unlocks a ``file`` keyring; without it only ``keyring.passphrase_plain`` is
    used. A passphrase named by ``passphrase_env`` or ``passphrase_file`` is a secret the
    command line resolves (``identity.keyring.resolve_passphrase``) and passes in: nothing here
    reads the environment.
    """
    ring_cfg = config.keyring
    if passphrase is None:
        if ring_cfg.passphrase_env or ring_cfg.passphrase_file:
            raise ConfigError(
                "keyring",
                "passphrase_env and passphrase_file are resolved by the command line; "
                "pass passphrase= (or key= or keyring=) to P2P.create",
            )
        passphrase = ring_cfg.passphrase_plain
    ring = Keyring(ring_cfg.dir, ring_cfg.backend, passphrase=passphrase)
    return ring.private_key(config.key_name)


def registry_for(config: Config) -> Registry | None:
    """The registry the config names: a static file, the chain over gRPC, or none."""
    if config.lumera.registry_file is not None:
        return StaticRegistry.from_file(config.lumera.registry_file)
    if config.lumera.grpc_addr:
        # gRPC only when the chain is asked: it is the largest import a node could make.
        from lumera_p2p.chain.grpc_registry import GrpcRegistry  # noqa: PLC0415

        return GrpcRegistry.from_config(config.lumera)
    return None


def closest_target(key: str) -> bytes:
    """``NClosestNodes``'s target: the base58-decoded key if it is 32 bytes, else BLAKE3 of it."""
    try:
        raw = base58.b58decode(key)
    except ValueError:
        raw = b""
    return raw if len(raw) == 32 else hash_id(key.encode())


class P2P:
    """A Lumera P2P storage node (see the module docstring). Build it with :meth:`create`."""

    def __init__(
        self,
        config: Config,
        key: PrivateKey,
        store: LocalStore,
        registry: Registry | None,
        rqstore: RQStore,
    ) -> None:
        self._config = config
        self._key = key
        self._db = store
        self._rq = rqstore
        self._registry = registry
        self._intervals = Intervals.from_config(config)
        self._server_limits = server_limits(config)
        p2p = config.p2p
        advertised = p2p.external_ip or (
            p2p.listen_address if p2p.listen_address not in ("0.0.0.0", "::") else "127.0.0.1"
        )
        self._verifier: PeerVerifier = (
            registry
            if registry is not None
            else StaticPeerVerifier([b.identity for b in p2p.bootstrap_nodes])
        )
        self._transport = TcpTransport(key, self._verifier, transport_options(config))
        self._node = Node(
            Contact(key.address.encode(), advertised, p2p.port, p2p.version),
            store,
            self._transport,
            options=dht_options(config),
        )
        data_dir = config.p2p.data_dir
        self._replicator = Replicator(
            self._node,
            store,
            replication_options(config),
            free_bytes=lambda: shutil.disk_usage(data_dir).free,
        )
        self._files = Files(self._node, p2p.data_dir, file_options(config))
        self._alone = AloneWarning()
        self._symbols = SymbolWorker(rqstore, self.store_batch, symbol_worker_options(config))
        self._server: TcpServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._stopped = False
        self._started_at: float | None = None  # time.monotonic() at start
        self._recent = RecentOps()
        self._last_sync = float("-inf")  # loop time of the last sync_peers

    @classmethod
    async def create(
        cls,
        config: Config,
        *,
        registry: Registry | None = None,
        keyring: Keyring | None = None,
        key: PrivateKey | None = None,
        passphrase: str | None = None,
    ) -> P2P:
        """Build a node from ``config``; nothing listens until ``start``/``run``.

        The key is ``key`` if given, else ``key_name`` from ``keyring``, else from the keyring
        the config names, unlocked with ``passphrase`` (see :func:`open_node_key`).
        ``registry`` overrides the configured one (``lumera.registry_file`` or
        ``lumera.grpc_addr``).
        """
        if key is None:
            if keyring is not None:
                key = await asyncio.to_thread(keyring.private_key, config.key_name)
            else:
                key = await asyncio.to_thread(open_node_key, config, passphrase)
        if config.identity and key.address != config.identity:
            raise ConfigError(
                "identity", f"is {config.identity} but key {config.key_name!r} is {key.address}"
            )
        if registry is None:
            registry = registry_for(config)
        if registry is None and not config.p2p.bootstrap_nodes:
            raise ConfigError(
                "lumera",
                "no peers: set p2p.bootstrap_nodes, lumera.registry_file or lumera.grpc_addr",
            )
        store = await LocalStore.open(config.p2p.data_dir, **store_open_options(config))
        try:
            rqstore = await RQStore.open(rqstore_path(config))
        except BaseException:
            await store.close()
            raise
        return cls(config, key, store, registry, rqstore)

    # --- what it is ----------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration the node was built from."""
        return self._config

    @property
    def node(self) -> Node:
        """The DHT node (its public methods: routing-table inspection, counters, ...)."""
        return self._node

    @property
    def db(self) -> LocalStore:
        """The node's SQLite store."""
        return self._db

    @property
    def replicator(self) -> Replicator:
        """Replication and repair (its rounds can be run by hand, e.g. in tests)."""
        return self._replicator

    @property
    def symbol_worker(self) -> SymbolWorker:
        """The worker storing registered symbol directories (its ``counters``)."""
        return self._symbols

    @property
    def registry(self) -> Registry | None:
        """Where peers and their states come from (None: the configured bootstrap list)."""
        return self._registry

    @property
    def transport(self) -> TcpTransport:
        """The client transport (its ``options``, ``stats`` and ``pool``)."""
        return self._transport

    @property
    def server(self) -> TcpServer | None:
        """The TCP server once started (its ``limits`` and ``stats``)."""
        return self._server

    @property
    def server_limits(self) -> ServerLimits:
        """The limits the server runs with (from the ``server`` section)."""
        return self._server_limits

    @property
    def file_options(self) -> FileOptions:
        """How ``put_file``/``get_file`` chunk and stream (the ``files`` section)."""
        return self._files.options

    @property
    def intervals(self) -> Intervals:
        """Periods of the background loops."""
        return self._intervals

    @property
    def me(self) -> Contact:
        """This node as peers see it: ID, advertised address and port."""
        return self._node.me

    @property
    def address(self) -> str:
        """This node's ``lumera1…`` address (its node ID)."""
        return self._key.address

    @property
    def port(self) -> int:
        """The port actually listened on (differs from the config when it asked for 0)."""
        return self._server.port if self._server is not None else self._config.p2p.port

    @property
    def running(self) -> bool:
        """Whether ``start`` has completed and ``stop`` has not begun."""
        return self._running

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, *, bootstrap: bool = True) -> None:
        """Listen, bootstrap and start the background loops.

        With ``bootstrap=False`` the first peer sync is left to the caller (``sync_peers``):
        a local network starts every listener before anyone dials.
        """
        if self._running:
            return
        if self._stopped:
            raise NotRunning("a stopped node cannot be started again; create a new one")
        p2p = self._config.p2p
        self._server = TcpServer(
            self._node.handle,
            p2p.listen_address,
            p2p.port,
            self._key,
            self._verifier,
            limits=self._server_limits,
        )
        await self._server.start()
        if self._registry is None:
            await self._allow_registered(())  # the bootstrap list is all there is
        if self.me.port != self._server.port:
            self._node.move_to(self.me.ip, self._server.port)
        try:
            if bootstrap:
                peers = await self.sync_peers()
                if peers:
                    log.info("bootstrapped with %d peers", peers)
                else:
                    log.warning(
                        "bootstrapped with 0 peers (none answered), retrying every %g s",
                        self._intervals.peer_sync_retry,
                    )
        except LumeraP2PError as exc:
            # The registry may be briefly unreachable at start; the periodic peer sync
            # retries, and meanwhile the node serves whoever reaches it.
            log.warning("initial peer sync failed, will retry: %s", exc)
        if bootstrap:
            self._warn_if_alone()
        self._running = True
        self._started_at = time.monotonic()
        every = self._intervals
        self._spawn(_every(every.allowlist_refresh, self.refresh_allowlist), "allowlist")
        self._spawn(self._peer_sync_loop(), "peer-sync")
        self._spawn(_every(every.bucket_refresh_check, self._node.refresh), "refresh")
        self._spawn(_every(every.health_check, self._health), "health")
        self._replicator.start()
        self._spawn(self._symbols.run(), "symbols")
        log.info("node %s listening on %s:%d", self.address, p2p.listen_address, self.port)

    async def stop(self) -> None:
        """Stop loops, stop serving, close connections, then close the store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._running = False
        log.info("node %s stopping", self.address)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._replicator.stop()
        if self._server is not None:
            await self._server.close()
        await self._transport.close()
        await self._node.close()
        await self._files.close()
        await self._rq.close()
        await self._db.close()
        if self._registry is not None:
            await self._registry.close()
        log.info("node %s stopped", self.address)

    async def run(self) -> None:
        """Start and serve until cancelled; always stop cleanly."""
        try:
            await self.start()
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.stop())

    async def __aenter__(self) -> P2P:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _peer_sync_loop(self) -> None:
        """Full peer sync every ``peer_sync`` seconds; every ``peer_sync_retry`` while alone.

        Whether we are alone is asked when each wait ends, not when it starts: a node that
        joined (``sync_peers``) meanwhile waits out its full period from that join.
        """
        every = self._intervals
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every.peer_sync_retry)
            alone = self._node.peer_count == 0
            if not alone and loop.time() - self._last_sync < every.peer_sync:
                continue
            try:
                peers = await self.sync_peers()
            except LumeraP2PError as exc:
                log.warning("peer sync failed, will retry: %s", exc)
                self._warn_if_alone()
                continue
            if alone and peers:
                log.info("bootstrapped with %d peers", peers)
            self._warn_if_alone()

    def _warn_if_alone(self) -> None:
        """While the routing table is empty, say so and what to check (rate-limited)."""
        if not self._alone.due(self._node.peer_count, asyncio.get_running_loop().time()):
            return
        config = self._config
        if config.p2p.bootstrap_nodes:
            source = f"the {len(config.p2p.bootstrap_nodes)} nodes of p2p.bootstrap_nodes answer"
        elif config.lumera.registry_file is not None:
            source = (
                f"the nodes listed in {config.lumera.registry_file} run and list {self.address}"
            )
        else:
            source = (
                f"the chain at {config.lumera.grpc_addr} is reachable and lists {self.address} "
                "as ACTIVE"
            )
        log.warning(
            "no peers: this node stores and serves nothing for the network until it has some. "
            "Check that %s, that peers accept this node's handshake, and that p2p.external_ip "
            "and p2p.port are what the registry lists; 'lumera-p2p doctor --config FILE' "
            "checks each",
            source,
        )

    async def _health(self) -> None:
        answered, failed = await self._node.check_peers()
        log.debug("health check: %d answered, %d failed", answered, failed)

    # --- membership ----------------------------------------------------------------------

    async def _supernodes(self) -> list[Supernode]:
        assert self._registry is not None
        return await self._registry.list_supernodes()

    def _apply_allowlist(self, nodes: Sequence[Supernode]) -> None:
        ours = next((n for n in nodes if n.address == self.address), None)
        self._node.apply_allowlist(
            [n.routing_id for n in nodes if n.routing_eligible],
            [n.routing_id for n in nodes if n.store_eligible],
            self_store_eligible=ours is None or ours.store_eligible,
        )
        # Without external_ip, advertise the address the chain lists for us (as Go does),
        # unless we listen on one specific address.
        p2p = self._config.p2p
        wildcard = p2p.listen_address in ("0.0.0.0", "::")
        if ours is not None and ours.host and not p2p.external_ip and wildcard:
            self._node.move_to(ours.host, self.me.port)

    async def refresh_allowlist(self) -> None:
        """Re-read the registry's states into the routing and store allowlists."""
        if self._registry is None:
            return
        nodes = await self._supernodes()
        self._apply_allowlist(nodes)
        await self._allow_registered(nodes)

    async def _allow_registered(self, nodes: Sequence[Supernode]) -> None:
        """With ``server.registered_addresses_only``: only the addresses of the registry's
        supernodes (and of ``p2p.bootstrap_nodes``) may connect."""
        if self._server is None or not self._server_limits.registered_addresses_only:
            return
        hosts = [n.host for n in nodes if n.host]
        hosts += [b.host for b in self._config.p2p.bootstrap_nodes]
        self._server.set_allowed_addresses(await resolve_hosts(hosts))

    def _seed_contacts(self, nodes: Sequence[Supernode]) -> list[Contact]:
        candidates = bootstrap_candidates(
            nodes,
            allow_private=self._config.p2p.allow_private_peers,
            self_endpoint=None,
        )
        return [
            Contact(n.address.encode(), n.host or "", n.port)
            for n in candidates
            if n.address != self.address
        ]

    async def sync_peers(self) -> int:
        """Bootstrap from the configured list or the registry; return the routing-table size."""
        self._last_sync = asyncio.get_running_loop().time()
        bootstrap = self._config.p2p.bootstrap_nodes
        if bootstrap:
            seeds = [
                Contact(b.identity.encode(), b.host, b.port)
                for b in bootstrap
                if b.identity != self.address
            ]
        else:
            nodes = await self._supernodes()
            self._apply_allowlist(nodes)
            await self._allow_registered(nodes)
            seeds = self._seed_contacts(nodes)
        # Go's upsertBootstrapNode: every listed peer is a replication peer (one we ping and
        # push to); unlike Go's, the upsert keeps a known peer's state and cursor.
        await self._replicator.register_peers(seeds)
        if not seeds:
            return self._node.peer_count
        return await self._node.bootstrap(seeds)

    # --- the client API ------------------------------------------------------------------

    def _check_running(self) -> None:
        if not self._running:
            raise NotRunning("p2p service is not running")

    async def store(self, data: bytes, datatype: int = 0) -> str:
        """Store ``data`` here (committed while the network part runs) and on the nearest nodes;
        return its base58 key (the Go API). :meth:`store_with_report` says who holds it.

        Raises ``StoreFailed`` (``NoStorePeers``, ``TooFewReplicas``) when fewer than
        ``dht.min_replicas`` peers acknowledged; the error's ``key`` and ``report`` say what
        was achieved (the value is committed here either way).
        """
        return (await self.store_with_report(data, datatype)).key

    async def store_with_report(self, data: bytes, datatype: int = 0) -> StoreReport:
        """Like :meth:`store`, returning the :class:`~lumera_p2p.dht.reports.StoreReport`:
        the key, the peers that acknowledged (``replicas`` of ``wanted``), those that refused
        or failed, and the cause of any shortfall."""
        self._check_running()
        outcome = await self._node.store(bytes(data), datatype)
        self._recent.add_store(
            StorePoint(
                time.time(),
                "store",
                keys=1,
                requests=outcome.replicas + len(outcome.failed) + len(outcome.refused),
                successful=outcome.replicas,
                replicas=outcome.replicas,
            )
        )
        return StoreReport.of(key_from_bytes(outcome.key), outcome, self._node.options.replicas)

    async def retrieve(self, key: str, local_only: bool = False) -> bytes | None:
        """The value of a base58 key: local, then the network (None if nowhere).

        Raises ``KeyDisabled`` for a disabled key, ``NotFound`` for a local-only miss, and
        ``InvalidContentKey`` for a malformed key.
        """
        self._check_running()
        return await self._node.retrieve(key_to_bytes(key), local_only)

    async def store_batch(
        self, values: Sequence[bytes], datatype: int = 0, task_id: str = ""
    ) -> BatchStoreReport:
        """Store many values: one local transaction, then each replica node its share.

        ``task_id`` names the batch in logs and in the report, whose ``replicas`` say how many
        peers acknowledged each key. Raises ``StoreFailed`` (``NoStorePeers``,
        ``TooFewReplicas``) when some key has no eligible node, too few requests succeed, or
        a key reached fewer than ``dht.min_replicas`` peers (see ``dht.options``).
        """
        self._check_running()
        report = await self._node.store_batch([bytes(v) for v in values], datatype, task_id)
        self._recent.add_store(
            StorePoint(
                time.time(),
                "batch_store",
                keys=len(report.keys),
                requests=report.requests,
                successful=report.succeeded,
            )
        )
        return report

    async def batch_retrieve(
        self,
        keys: Sequence[str],
        required: int | None = None,
        tx_id: str = "",
        local_only: bool = False,
    ) -> dict[str, bytes]:
        """Values of ``keys`` (base58 → bytes), stopping once ``required`` are in hand.

        ``required`` defaults to all keys. A local-only call that finds fewer raises
        ``NotEnoughValues`` carrying what it found; over the network a shortfall is not an
        error (the result is simply smaller), as in Go.
        """
        self._check_running()
        raw = [key_to_bytes(k) for k in keys]
        need = len(set(raw)) if required is None else required
        found: dict[str, bytes] = {}

        async def collect(key: bytes, value: bytes) -> bool:
            found[key_from_bytes(key)] = value
            return True

        started = time.monotonic()
        await self._node.batch_retrieve_stream(raw, need, tx_id, collect, local_only=local_only)
        self._recent.add_retrieve(
            RetrievePoint(time.time(), len(raw), need, len(found), time.monotonic() - started)
        )
        if local_only and len(found) < need:
            raise NotEnoughValues(f"local-only: found {len(found)}, required {need}", found)
        return found

    async def batch_retrieve_stream(
        self,
        keys: Sequence[str],
        required: int,
        tx_id: str,
        on_value: OnValue,
        local_only: bool = False,
    ) -> int:
        """Like ``batch_retrieve``, handing each value to ``on_value(key, value)``.

        If ``on_value`` raises, the value is not counted and another provider may supply the
        key. ``tx_id`` seeds which replica is asked first. Returns how many were delivered.
        """
        self._check_running()
        raw = [key_to_bytes(k) for k in keys]

        async def deliver(key: bytes, value: bytes) -> bool:
            try:
                await on_value(key_from_bytes(key), value)
            except Exception as exc:  # the caller refused this value; try another provider
                log.info("on_value refused %s: %s", key_from_bytes(key), exc)
                return False
            return True

        count = await self._node.batch_retrieve_stream(
            raw, required, tx_id, deliver, local_only=local_only
        )
        if local_only and count < required:
            raise NotEnoughValues(f"local-only: found {count}, required {required}", {})
        return count

    async def put_file(self, source: Source, progress: PutProgress | None = None) -> FilePut:
        """Store a file of any size; its key is ``result.key`` (see ``lumera_p2p.files``).

        ``source`` is a path, a binary file object (``sys.stdin.buffer``) or an object with
        ``async read(n)``. Read chunk by chunk (``files.chunk_size``), stored in batches, then
        the manifest tree. Run again after an interruption, it sends only the chunks not
        already stored on enough replicas. ``progress(done, total)`` is called per chunk.
        """
        self._check_running()
        return await self._files.put(source, progress)

    async def get_file(
        self, key: str, dest: str | Path | BinaryIO, progress: GetProgress | None = None
    ) -> FileGet:
        """Fetch the file named ``key`` into ``dest``, every chunk and the whole verified.

        A path is written through ``DEST.lumera-part`` (resumed when run again) and renamed
        once complete; a binary stream is written as the bytes arrive.
        """
        self._check_running()
        target = Path(dest) if isinstance(dest, (str, Path)) else dest
        return await self._files.get(key, target, progress)

    def read_file(
        self, key: str, offset: int = 0, local_only: bool = False
    ) -> AsyncIterator[bytes]:
        """The verified bytes of file ``key`` from ``offset`` on, a chunk at a time (for
        serving a file as a stream; from offset 0 the whole is checked at the end).
        ``local_only``: from this node's own store only (``NotFound`` for a chunk not here)."""
        self._check_running()
        return self._files.read(key, offset, local_only)

    async def open_file(self, key: str, local_only: bool = False) -> FileReader:
        """The checked root manifest of file ``key`` (``size``, ``whole``) and its chunks."""
        self._check_running()
        return await self._files.open(key, local_only)

    async def delete(self, key: str) -> bool:
        """Delete the local copy of a key (nothing remote); return whether it was here."""
        self._check_running()
        return await self._db.delete(key_to_bytes(key))

    async def local_store(self, key: str, data: bytes) -> str:
        """Store ``data`` here only, under ``key``, which it must hash to (``ValueMismatch``)."""
        self._check_running()
        raw = key_to_bytes(key)
        if len(data) > MAX_VALUE_SIZE:
            raise ValueTooLarge(len(data), MAX_VALUE_SIZE)
        if digest(data) != raw:
            raise ValueMismatch(f"data does not hash to key {key}")
        await self._db.store_batch([(raw, bytes(data))], is_original=True)
        return key

    async def disable_key(self, key: str) -> None:
        """Refuse single-key retrieval of ``key`` here for a while."""
        await self._db.disable_key(key_to_bytes(key))

    async def enable_key(self, key: str) -> None:
        """Undo ``disable_key``."""
        await self._db.enable_key(key_to_bytes(key))

    async def get_local_keys(self, start: datetime | None, end: datetime) -> list[str]:
        """Base58 keys stored here with ``createdAt`` in (start, end)."""
        return [key_from_bytes(k) for k in await self._db.get_local_keys(start, end)]

    async def local_keys_page(
        self, limit: int = 100, after: tuple[str, str] | None = None
    ) -> list[StoredKey]:
        """Up to ``limit`` keys stored here, oldest first, with their size.

        ``after`` is ``(created_at, base58 key)`` of the last key of the previous page (any
        such pair is a position: the key need not be stored, nor decode to 32 bytes).
        """
        cursor = None if after is None else (after[0], base58.b58decode(after[1]).hex())
        return await self._db.local_keys_page(limit, cursor)

    def peers(self) -> list[Contact]:
        """The routing table's contacts (no network call)."""
        return self._node.contacts()

    def n_closest_nodes(self, n: int, key: str, ignores: Sequence[str] = ()) -> list[str]:
        """Addresses of the ``n`` routing-table nodes nearest ``key`` (no network call).

        ``key`` is base58; if it does not decode to 32 bytes it is hashed. Banned nodes and
        ``ignores`` (addresses) are left out; we are never included.
        """
        skip = {hash_id(i.encode()) for i in ignores}
        return [c.address for c in self._node.closest(closest_target(key), n, skip)]

    # --- RaptorQ symbol directories ------------------------------------------------------

    async def register_symbol_dir(
        self,
        txid: str,
        directory: str | os.PathLike[str],
        *,
        first_batch_stored: bool = True,
    ) -> SymbolDirStatus:
        """Have the symbol worker store the files of ``directory`` (RaptorQ's layout:
        ``block_<n>/<key>``) as datatype 1 under ``txid``, delete each once stored, then mark
        the directory complete and remove it if its base name is ``txid``.

        A round starts at once. ``first_batch_stored=False`` records the directory (Go's
        ``StoreSymbolDirectory``) for a caller that stores a first share itself: the worker
        leaves it alone until it is registered again with ``True``. Registering again also
        updates the path and forgets earlier refusals; progress is kept. Raises
        ``SymbolDirError`` for a malformed txid or a path that is not a directory.
        """
        self._check_not_stopped()
        path = await asyncio.to_thread(checked_registration, txid, directory)
        await self._rq.register(txid, path, first_batch_stored=first_batch_stored)
        if first_batch_stored:
            self._symbols.wake()
        [status] = await self._rq.status(txid)
        return status

    async def symbol_dirs(self, txid: str | None = None) -> list[SymbolDirStatus]:
        """Every registered symbol directory (or only ``txid``'s) and where it stands."""
        self._check_not_stopped()
        return await self._rq.status(txid)

    async def refused_symbol_files(self, txid: str) -> dict[str, str]:
        """The files of ``txid``'s directory that were not stored, and why each was refused."""
        self._check_not_stopped()
        return await self._rq.refused_files(txid)

    def _check_not_stopped(self) -> None:
        # The rqstore is open from ``create`` to ``stop``: registering before ``start`` is
        # fine (the first round runs at start).
        if self._stopped:
            raise NotRunning("p2p service is stopped")

    async def stats(self) -> P2PStats:
        """Counters and sizes of this node and of its server, transport and pool."""
        pool = self._transport.pool
        return P2PStats(
            address=self.address,
            listen=f"{self._config.p2p.listen_address}:{self.port}",
            peers=self._node.peer_count,
            banned=self._node.banned_count(),
            registry_routing=self._node.routing_allowlist_size,
            store=await self._db.stats(),
            dht=self._node.snapshot_counters(),
            replication=await self._replicator.stats(),
            server=copy.deepcopy(self._server.stats) if self._server is not None else ServerStats(),
            transport=copy.deepcopy(self._transport.stats),
            pool=PoolCounters(
                **dataclasses.asdict(pool.stats),
                open=pool.open,
                idle=pool.idle,
                capacity=pool.capacity,
            ),
            version=__version__,
            uptime=time.monotonic() - self._started_at if self._started_at is not None else 0.0,
            disk=_disk_usage(self._config.p2p.data_dir),
            recent_stores=self._recent.stores(),
            recent_retrieves=self._recent.retrieves(),
            memory=_budget_counters(self._server.budget) if self._server is not None else None,
            serving=self._node.serving_counters(),
        )


def _budget_counters(budget: MemoryBudget) -> MemoryBudgetCounters:
    b = budget.stats
    return MemoryBudgetCounters(
        capacity=budget.capacity,
        per_peer=budget.per_peer,
        used=budget.used,
        peak=b.peak,
        granted=b.granted,
        waited=b.waited,
        refused=b.refused,
        waiting=budget.waiting,
    )


def _disk_usage(path: Path) -> DiskUsage | None:
    """The file system holding ``path`` (None if it cannot be asked)."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return DiskUsage(usage.total, usage.used, usage.free)


async def _every(interval: float, job: Callable[[], Awaitable[object]]) -> None:
    """Run ``job`` every ``interval`` seconds; a failed round is logged and retried next time.

    A failure is one line (an unreachable chain fails every round: a traceback each time would
    bury everything else); the traceback comes with it only at DEBUG.
    """
    name = getattr(job, "__name__", str(job)).lstrip("_")
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "background job %s failed, retrying in %g s: %s: %s",
                name,
                interval,
                type(exc).__name__,
                " ".join(str(exc).split()) or "(no message)",
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
