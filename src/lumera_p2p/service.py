"""``P2P``: the node as a service: configuration in, a running DHT storage node out.

The seed's usage, in Python::

    p2p = await P2P.create(config)            # keys, store, registry, transport
    async with p2p:                           # start: listen, bootstrap, background loops
        key = await p2p.store(b"Hello, world!")
        data = await p2p.retrieve(key)
    # or: await p2p.run()  (until cancelled or SIGTERM)

Background loops (intervals from ``p2p.*_interval``): the allowlist refresh from the registry,
the full peer sync (bootstrap again from the registry's list), bucket refresh, and the health
check that pings every routing-table peer. Stopping (cancellation, ``stop``, leaving
``async with``) stops accepting, lets in-flight requests finish, closes connections and then
the store, so every acknowledged write is committed before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lumera_p2p.chain.grpc_registry import GrpcRegistry
from lumera_p2p.chain.registry import Registry, Supernode, bootstrap_candidates
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.config import Config
from lumera_p2p.dht import DHT, BatchStoreReport, DHTOptions, Eligibility
from lumera_p2p.errors import ConfigError, LumeraP2PError
from lumera_p2p.identity.keyring import Keyring, resolve_passphrase
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.kademlia import Contact
from lumera_p2p.net.tcp import TcpServer, TcpTransport, TransportOptions
from lumera_p2p.secure import PeerVerifier, StaticPeerVerifier
from lumera_p2p.store import LocalStore

log = logging.getLogger(__name__)


class NotRunning(LumeraP2PError):
    """The service has not been started (or has stopped)."""


@dataclass(frozen=True)
class P2PStats:
    """What ``stats`` reports."""

    address: str
    listen: str
    peers: int
    banned: int
    records: int
    data_bytes: int
    db_file_bytes: int
    rpc_sent: int
    rpc_failed: int
    requests_handled: int
    poisoned_values: int
    registry_routing: int


def load_node_key(config: Config, environ: Mapping[str, str] | None = None) -> PrivateKey:
    """The node's key from the configured keyring (``key_name``), checked against ``identity``."""
    ring_cfg = config.keyring
    passphrase = resolve_passphrase(
        ring_cfg.passphrase_plain,
        ring_cfg.passphrase_env,
        ring_cfg.passphrase_file,
        dict(os.environ if environ is None else environ),
    )
    ring = Keyring(ring_cfg.dir, ring_cfg.backend, passphrase=passphrase)
    key = ring.private_key(config.key_name)
    if config.identity and key.address != config.identity:
        raise ConfigError(
            "identity", f"is {config.identity} but key {config.key_name!r} is {key.address}"
        )
    return key


def registry_for(config: Config) -> Registry | None:
    """The registry the config names: a static file, the chain over gRPC, or none."""
    if config.lumera.registry_file is not None:
        return StaticRegistry.from_file(config.lumera.registry_file)
    if config.lumera.grpc_addr:
        return GrpcRegistry.from_config(config.lumera)
    return None


class P2P:
    """A Lumera P2P storage node (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        key: PrivateKey,
        store: LocalStore,
        registry: Registry | None,
    ) -> None:
        self.config = config
        self.key = key
        self.db = store
        self.registry = registry
        p2p = config.p2p
        advertised = p2p.external_ip or (
            p2p.listen_address if p2p.listen_address not in ("0.0.0.0", "::") else "127.0.0.1"
        )
        me = Contact(key.address.encode(), advertised, p2p.port, p2p.version)
        self.eligibility = Eligibility()
        self.verifier: PeerVerifier = (
            registry
            if registry is not None
            else StaticPeerVerifier([b.identity for b in p2p.bootstrap_nodes])
        )
        # Servers (ours, Go's) drop a connection after 90 s without a request; pooled
        # connections idle longer than that would mostly be found dead, so let them go first.
        self.transport = TcpTransport(
            key, self.verifier, TransportOptions(idle_timeout=60.0, prune_interval=30.0)
        )
        self.dht = DHT(
            me,
            store,
            self.transport,
            options=DHTOptions(
                allow_private=p2p.allow_private_peers,
                bucket_refresh_age=p2p.bucket_refresh_interval,
                min_peer_version=p2p.min_peer_version or "",
            ),
            eligibility=self.eligibility,
        )
        self.server: TcpServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._stopped = False

    @classmethod
    async def create(
        cls,
        config: Config,
        *,
        registry: Registry | None = None,
        keyring: Keyring | None = None,
        key: PrivateKey | None = None,
    ) -> P2P:
        """Build a node from ``config``; nothing listens until ``start``/``run``.

        ``key`` (or ``keyring``) overrides the configured keyring; ``registry`` overrides the
        configured one (``lumera.registry_file`` or ``lumera.grpc_addr``).
        """
        if key is None:
            key = (
                keyring.private_key(config.key_name)
                if keyring is not None
                else await asyncio.to_thread(load_node_key, config)
            )
        if registry is None:
            registry = registry_for(config)
        if registry is None and not config.p2p.bootstrap_nodes:
            raise ConfigError(
                "lumera",
                "no peers: set p2p.bootstrap_nodes, lumera.registry_file or lumera.grpc_addr",
            )
        store = await LocalStore.open(config.p2p.data_dir, **config.store.open_options())
        return cls(config, key, store, registry)

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def me(self) -> Contact:
        """This node as peers see it: ID, advertised address and port."""
        return self.dht.core.me

    @property
    def address(self) -> str:
        """This node's ``lumera1…`` address (its node ID)."""
        return self.key.address

    @property
    def port(self) -> int:
        """The port actually listened on (differs from the config when it asked for 0)."""
        return self.server.port if self.server is not None else self.config.p2p.port

    @property
    def running(self) -> bool:
        """Whether ``start`` has completed and ``stop`` has not begun."""
        return self._running

    async def start(self, *, bootstrap: bool = True) -> None:
        """Listen, bootstrap and start the background loops.

        With ``bootstrap=False`` the first peer sync is left to the caller (``sync_peers``):
        a local network starts every listener before anyone dials.
        """
        if self._running:
            return
        if self._stopped:
            raise NotRunning("a stopped node cannot be started again; create a new one")
        p2p = self.config.p2p
        self.server = TcpServer(
            self.dht.handle, p2p.listen_address, p2p.port, self.key, self.verifier
        )
        await self.server.start()
        if self.me.port != self.server.port:
            self.dht.core.me = self.me.with_endpoint(self.me.ip, self.server.port)
        try:
            if bootstrap:
                await self.sync_peers()
        except LumeraP2PError as exc:
            # The registry may be briefly unreachable at start; the periodic peer sync
            # retries, and meanwhile the node serves whoever reaches it.
            log.warning("initial peer sync failed, will retry: %s", exc)
        self._running = True
        self._spawn(
            self._every(p2p.allowlist_refresh_interval, self.refresh_allowlist), "allowlist"
        )
        self._spawn(self._peer_sync_loop(), "peer-sync")
        self._spawn(self._every(min(600.0, p2p.bucket_refresh_interval), self._refresh), "refresh")
        self._spawn(self._every(p2p.health_check_interval, self._health), "health")
        log.info("node %s listening on %s:%d", self.address, p2p.listen_address, self.port)

    async def stop(self) -> None:
        """Stop loops, stop serving, close connections, then close the store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.close()
        await self.transport.close()
        await self.dht.close()
        await self.db.close()
        if self.registry is not None:
            await self.registry.close()

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

    @staticmethod
    async def _every(interval: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed round is logged and retried next interval
                log.exception("background job %s failed", getattr(job, "__name__", job))

    async def _peer_sync_loop(self) -> None:
        """Full peer sync every ``bootstrap_refresh_interval``; every 30 s while alone."""
        interval = self.config.p2p.bootstrap_refresh_interval
        while True:
            alone = len(self.dht.core.table) == 0
            await asyncio.sleep(min(interval, 30.0) if alone else interval)
            try:
                await self.sync_peers()
            except LumeraP2PError as exc:
                log.warning("peer sync failed, will retry: %s", exc)

    # --- membership ----------------------------------------------------------------------

    async def _supernodes(self) -> list[Supernode]:
        assert self.registry is not None
        return await self.registry.list_supernodes()

    def _apply_allowlist(self, nodes: Sequence[Supernode]) -> None:
        routing = [n.routing_id for n in nodes if n.routing_eligible]
        store = [n.routing_id for n in nodes if n.store_eligible]
        ours = next((n for n in nodes if n.address == self.address), None)
        if self.eligibility.update(routing, store):
            self.eligibility.self_store_eligible = ours is None or ours.store_eligible
            for contact in list(self.dht.core.table):
                if not self.eligibility.routing(contact.hashed_id):
                    self.dht.core.table.remove(contact.hashed_id)
        # Without external_ip, advertise the address the chain lists for us (as Go does),
        # unless we listen on one specific address.
        wildcard = self.config.p2p.listen_address in ("0.0.0.0", "::")
        if ours is not None and ours.host and not self.config.p2p.external_ip and wildcard:
            self.dht.core.me = self.me.with_endpoint(ours.host, self.me.port)

    async def refresh_allowlist(self) -> None:
        """Re-read the registry's states into the routing and store allowlists."""
        if self.registry is None:
            return
        self._apply_allowlist(await self._supernodes())

    def _seed_contacts(self, nodes: Sequence[Supernode]) -> list[Contact]:
        candidates = bootstrap_candidates(
            nodes,
            allow_private=self.config.p2p.allow_private_peers,
            self_endpoint=None,
        )
        return [
            Contact(n.address.encode(), n.host or "", n.port)
            for n in candidates
            if n.address != self.address
        ]

    async def sync_peers(self) -> int:
        """Bootstrap from the configured list or the registry; return the routing-table size."""
        bootstrap = self.config.p2p.bootstrap_nodes
        if bootstrap:
            seeds = [
                Contact(b.identity.encode(), b.host, b.port)
                for b in bootstrap
                if b.identity != self.address
            ]
        else:
            nodes = await self._supernodes()
            self._apply_allowlist(nodes)
            seeds = self._seed_contacts(nodes)
        if not seeds:
            return len(self.dht.core.table)
        return await self.dht.bootstrap(seeds)

    async def _refresh(self) -> None:
        await self.dht.refresh()

    async def _health(self) -> None:
        answered, failed = await self.dht.check_peers()
        log.debug("health check: %d answered, %d failed", answered, failed)

    # --- the client API ------------------------------------------------------------------

    def _check_running(self) -> None:
        if not self._running:
            raise NotRunning("p2p service is not running")

    async def store(self, data: bytes, datatype: int = 0) -> str:
        """Store ``data``; return its base58 key (committed locally before it returns)."""
        self._check_running()
        return await self.dht.store(data, datatype)

    async def retrieve(self, key: str, local_only: bool = False) -> bytes | None:
        """The value of a base58 key: local, then the network (None if nowhere)."""
        self._check_running()
        return await self.dht.retrieve(key, local_only)

    async def store_batch(
        self, values: Sequence[bytes], datatype: int = 0, task_id: str = ""
    ) -> BatchStoreReport:
        """Store many values: one local transaction, then one request per replica node."""
        self._check_running()
        return await self.dht.store_batch(values, datatype, task_id)

    async def batch_retrieve(
        self,
        keys: Sequence[str],
        required: int | None = None,
        tx_id: str = "",
        local_only: bool = False,
    ) -> dict[str, bytes]:
        """Values of many keys, stopping once ``required`` are in hand."""
        self._check_running()
        return await self.dht.batch_retrieve(keys, required, tx_id, local_only)

    async def batch_retrieve_stream(
        self,
        keys: Sequence[str],
        required: int,
        tx_id: str,
        on_value: Callable[[str, bytes], Awaitable[object]],
        local_only: bool = False,
    ) -> int:
        """Like ``batch_retrieve``, handing each value to ``on_value``; returns the count."""
        self._check_running()
        return await self.dht.batch_retrieve_stream(keys, required, tx_id, on_value, local_only)

    async def delete(self, key: str) -> bool:
        """Delete the local copy of a key."""
        self._check_running()
        return await self.dht.delete(key)

    async def local_store(self, key: str, data: bytes) -> str:
        """Store locally only; ``data`` must hash to ``key``."""
        self._check_running()
        return await self.dht.local_store(key, data)

    async def disable_key(self, key: str) -> None:
        """Refuse single-key retrieval of ``key`` here for a while."""
        await self.dht.disable_key(key)

    async def enable_key(self, key: str) -> None:
        """Undo ``disable_key``."""
        await self.dht.enable_key(key)

    async def get_local_keys(self, start: datetime | None, end: datetime) -> list[str]:
        """Base58 keys stored here with ``createdAt`` in (start, end)."""
        return await self.dht.get_local_keys(start, end)

    def n_closest_nodes(self, n: int, key: str, ignores: Sequence[str] = ()) -> list[str]:
        """Addresses of the ``n`` known nodes nearest ``key`` (no network call)."""
        return self.dht.n_closest_nodes(n, key, ignores)

    async def stats(self) -> P2PStats:
        """Counters and sizes of this node."""
        dht = await self.dht.stats()
        store = await self.db.stats()
        return P2PStats(
            address=self.address,
            listen=f"{self.config.p2p.listen_address}:{self.port}",
            peers=dht.peers,
            banned=dht.banned,
            records=store.records,
            data_bytes=store.data_bytes,
            db_file_bytes=store.db_file_bytes,
            rpc_sent=dht.rpc_sent,
            rpc_failed=dht.rpc_failed,
            requests_handled=dht.requests_handled,
            poisoned_values=dht.poisoned_values,
            registry_routing=self.eligibility.routing_count,
        )


async def run_until_signalled(p2p: P2P) -> None:
    """Run ``p2p`` until SIGINT or SIGTERM, then stop it cleanly."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await p2p.run()
