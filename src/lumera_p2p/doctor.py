"""``lumera-p2p doctor``: the seed's troubleshooting cases, each a check with a verdict and a fix.

The seed's README lists three cases; each becomes checks that look at what the case names:

* **Can't connect to the network** ("verify your ``external_ip``"): the port can be listened on
  (:func:`check_port`); ``external_ip`` is an address of this machine, or a public one it may
  reach through NAT (:func:`check_external_ip`, against the local interfaces); the address and
  port we advertise are the ones the chain lists for us, which is where peers dial
  (:func:`check_advertised`).
* **Bootstrap fails** ("ensure the Lumera client is connected, or give bootstrap nodes"): the
  chain answers with our chain id (``preflight.check_chain``); it lists us, in a state peers
  admit (:func:`check_registration`); and the bootstrap nodes (``p2p.bootstrap_nodes``, or the
  registry's) accept a TCP connection, complete the secure handshake with our key and answer a
  Ping (:func:`check_peer`): a peer that does not list us closes the connection, which is how
  a refusal looks from outside.
* **Storage issues** ("check ``data_dir`` path and permissions"): ``preflight.check_data_dir``,
  which also judges the free space.

and, before all of them, the key (``preflight.check_keyring``). The checks ``config check``
runs are reused as they are; this module adds the ones that need the network or the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lumera_p2p.chain.registry import Supernode, bootstrap_candidates
from lumera_p2p.config import Config
from lumera_p2p.config_plain import BootstrapNode
from lumera_p2p.errors import (
    ChainError,
    ConfigError,
    DataDirLocked,
    IdentityError,
    KeyringError,
    LumeraP2PError,
    ProtocolError,
    StoreError,
)
from lumera_p2p.identity.keyring import Keyring, resolve_passphrase
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.net.interfaces import InterfaceAddress, local_addresses
from lumera_p2p.preflight import DEFAULT_CHAIN_TIMEOUT, Status, Verdict, run_preflight

__all__ = [
    "Facts",
    "check_advertised",
    "check_external_ip",
    "check_peer",
    "check_peers",
    "check_port",
    "check_registration",
    "gather_facts",
    "run_doctor",
]

#: Peers from the registry tried at most (a bootstrap needs one; a few show a pattern).
DEFAULT_MAX_PEERS = 8
_WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True)
class Facts:
    """What several checks need: our key, the registry's list, the machine's addresses."""

    key: PrivateKey | None
    #: The supernodes the registry (file or chain) lists; None if there is none or it failed.
    supernodes: list[Supernode] | None
    addresses: list[InterfaceAddress]

    def ours(self) -> Supernode | None:
        """Our own entry in the registry's list."""
        if self.key is None or self.supernodes is None:
            return None
        return next((n for n in self.supernodes if n.address == self.key.address), None)


def _open_key(config: Config, environ: Mapping[str, str]) -> PrivateKey | None:
    ring = config.keyring
    if ring.backend == "os":
        return None
    try:
        passphrase = resolve_passphrase(
            ring.passphrase_plain, ring.passphrase_env, ring.passphrase_file, environ
        )
        return Keyring(ring.dir, ring.backend, passphrase=passphrase).private_key(config.key_name)
    except (KeyringError, IdentityError):
        return None  # check_keyring says why


async def _list_supernodes(config: Config, timeout: float) -> list[Supernode] | None:
    # Imported here, as in preflight: gRPC loads only when a check needs it.
    from lumera_p2p.chain.grpc_registry import GrpcRegistry  # noqa: PLC0415
    from lumera_p2p.chain.static_registry import StaticRegistry  # noqa: PLC0415

    lumera = config.lumera
    try:
        if lumera.registry_file is not None:
            return await StaticRegistry.from_file(lumera.registry_file).list_supernodes()
        if lumera.grpc_addr and lumera.chain_id:
            registry = GrpcRegistry(
                lumera.grpc_addr, lumera.chain_id, timeout=timeout, connect_timeout=timeout
            )
            try:
                return await registry.list_supernodes()
            finally:
                await registry.close()
    except (ChainError, ConfigError):
        return None  # check_chain and check_registry_file say why
    return None


async def gather_facts(config: Config, environ: Mapping[str, str], timeout: float) -> Facts:
    """Open the key, read the registry's list, enumerate the local addresses."""
    key = await asyncio.to_thread(_open_key, config, environ)
    supernodes = await _list_supernodes(config, timeout)
    addresses = await asyncio.to_thread(local_addresses)
    return Facts(key, supernodes, addresses)


def _has_registry(config: Config) -> bool:
    return config.lumera.registry_file is not None or bool(config.lumera.grpc_addr)


def _registry_name(config: Config) -> str:
    if config.lumera.registry_file is not None:
        return f"the registry file {config.lumera.registry_file}"
    return f"the chain at {config.lumera.grpc_addr}"


def _register_fix(config: Config, address: str) -> str:
    if config.lumera.registry_file is not None:
        return f"add {address} to {config.lumera.registry_file} (and to every peer's copy)"
    return (
        f"register {address} as a supernode on chain {config.lumera.chain_id!r}, or set "
        "key_name to the key that is registered"
    )


# --- the chain lists us ----------------------------------------------------------------------


def check_registration(config: Config, facts: Facts) -> Verdict:
    """The registry lists our address, in a state in which peers admit us (and store on us)."""
    name = "registration"
    if not _has_registry(config):
        return Verdict(name, Status.SKIP, "no registry: peers admit whom their own ones list")
    if facts.key is None:
        return Verdict(name, Status.SKIP, "needs the node's key (see keyring)")
    if facts.supernodes is None:
        return Verdict(name, Status.SKIP, f"{_registry_name(config)} did not answer (see above)")
    address = facts.key.address
    ours = facts.ours()
    where = _registry_name(config)
    if ours is None:
        return Verdict(
            name,
            Status.FAIL,
            f"{where} does not list {address} among its {len(facts.supernodes)} supernodes: "
            "peers refuse this node's handshake and never store on it",
            _register_fix(config, address),
        )
    state = ours.state.name
    at = ours.endpoint or "no address"
    if not ours.routing_eligible:
        return Verdict(
            name,
            Status.FAIL,
            f"{where} lists {address} as {state} ({at}): peers refuse it",
            "bring the supernode back to ACTIVE on the chain",
        )
    if not ours.store_eligible:
        return Verdict(
            name,
            Status.WARN,
            f"{where} lists {address} as {state} ({at}): peers route through it but store "
            "nothing on it",
            "bring the supernode back to ACTIVE on the chain",
        )
    return Verdict(name, Status.OK, f"{where} lists {address} as {state} at {at}")


# --- the machine's side ----------------------------------------------------------------------


def _listen_ips(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _lock_holder(data_dir: Path) -> int | None:
    """The PID of a node running on ``data_dir`` (0 if one runs and its PID is unknown)."""
    from lumera_p2p.store.lock import LOCK_FILE, DataDirLock  # noqa: PLC0415

    if not data_dir.is_dir():
        return None
    try:
        DataDirLock.acquire(data_dir).release()
    except DataDirLocked:
        with contextlib.suppress(OSError, ValueError):
            return int((data_dir / LOCK_FILE).read_text()[:16].strip())
        return 0
    except StoreError:
        return None
    return None


def check_port(config: Config) -> Verdict:
    """``p2p.listen_address:p2p.port`` can be listened on (or the node of this config does)."""
    name = "port"
    p2p = config.p2p
    where = f"{p2p.listen_address}:{p2p.port}"
    ips = _listen_ips(p2p.listen_address)
    if not ips:
        return Verdict(
            name,
            Status.FAIL,
            f"listen_address {p2p.listen_address!r} does not resolve",
            "set p2p.listen_address to an address of this machine, or 0.0.0.0",
        )
    family = socket.AF_INET6 if ":" in ips[0] else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # As the server does (asyncio's default on Unix): a port in TIME_WAIT is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ips[0], p2p.port))
            sock.listen(1)
    except OSError as exc:
        return _port_problem(config, where, exc)
    return Verdict(name, Status.OK, f"{where} can be listened on")


def _port_problem(config: Config, where: str, exc: OSError) -> Verdict:
    name = "port"
    if exc.errno == errno.EADDRINUSE:
        holder = _lock_holder(config.p2p.data_dir)
        if holder is not None:
            pid = f" (process {holder})" if holder else ""
            return Verdict(
                name, Status.OK, f"{where} is in use by the node running on this data_dir{pid}"
            )
        return Verdict(
            name,
            Status.FAIL,
            f"{where} is in use by another program",
            "stop that program, or set p2p.port to a free port (and register that port)",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Verdict(
            name,
            Status.FAIL,
            f"{where}: permission denied (ports below 1024 need privileges)",
            "set p2p.port to 1024 or above, e.g. 4445",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return Verdict(
            name,
            Status.FAIL,
            f"{where}: {config.p2p.listen_address} is not an address of this machine",
            "set p2p.listen_address to an address of this machine, or 0.0.0.0",
        )
    return Verdict(name, Status.FAIL, f"{where} cannot be listened on: {exc.strerror or exc}", "")


def _interfaces_text(addresses: Sequence[InterfaceAddress]) -> str:
    shown = [f"{a.interface} {a.address}" for a in addresses]
    return ", ".join(shown) if shown else "none found"


def check_external_ip(config: Config, addresses: Sequence[InterfaceAddress]) -> Verdict:
    """``p2p.external_ip`` is on a local interface, or public (reachable only through NAT)."""
    name = "external_ip"
    ip = config.p2p.external_ip
    if ip is None:
        return Verdict(
            name,
            Status.OK,
            "not set: the node advertises the address the registry lists for it (or "
            "listen_address when that is a specific address)",
        )
    local = [a for a in addresses if a.address == ip]
    if local:
        return Verdict(name, Status.OK, f"{ip} is the address of {local[0].interface}")
    parsed = ipaddress.ip_address(ip)
    interfaces = _interfaces_text(addresses)
    if not parsed.is_global:
        return Verdict(
            name,
            Status.FAIL,
            f"{ip} is neither an address of this machine ({interfaces}) nor a public one: "
            "no peer can reach the node there",
            "set p2p.external_ip to this machine's public address, or remove it to advertise "
            "the address the registry lists",
        )
    return Verdict(
        name,
        Status.WARN,
        f"{ip} is not an address of this machine ({interfaces}): right only if a NAT in front "
        f"of it forwards port {config.p2p.port} here",
        f"check the port forward of {config.p2p.port}, or remove p2p.external_ip",
    )


def _advertised(config: Config, ours: Supernode | None) -> tuple[str, str]:
    """The address the node will advertise, and why (as ``P2P`` chooses it)."""
    p2p = config.p2p
    if p2p.external_ip:
        return p2p.external_ip, "p2p.external_ip"
    if p2p.listen_address not in _WILDCARDS:
        return p2p.listen_address, "p2p.listen_address"
    if ours is not None and ours.host:
        return ours.host, "the registry's address for it"
    return "127.0.0.1", "nothing (no external_ip, a wildcard listen_address, not registered)"


def check_advertised(config: Config, facts: Facts) -> Verdict:
    """The address and port we advertise are those the registry lists for us."""
    name = "advertised"
    ours = facts.ours()
    if ours is None or ours.host is None:
        reason = "not registered (see registration)" if facts.supernodes else "no registry list"
        return Verdict(name, Status.SKIP, f"nothing to compare with: {reason}")
    address, why = _advertised(config, ours)
    listed = ours.endpoint or ours.host
    resolved = set(_listen_ips(ours.host)) | {ours.host}
    if address not in resolved:
        fix = (
            f"set p2p.external_ip to {ours.host}, or remove it to advertise the registered "
            "address; or update the registration"
            if why == "p2p.external_ip"
            else f"set p2p.external_ip to {ours.host}, or listen on 0.0.0.0"
        )
        return Verdict(
            name,
            Status.FAIL,
            f"the node advertises {address} (from {why}) but {_registry_name(config)} lists it at "
            f"{listed}: peers dial the registered address and learn the other from it",
            fix,
        )
    if ours.port != config.p2p.port:
        return Verdict(
            name,
            Status.FAIL,
            f"{_registry_name(config)} lists port {ours.port}, the node listens on "
            f"{config.p2p.port}",
            f"set p2p.port: {ours.port}, or register port {config.p2p.port}",
        )
    return Verdict(name, Status.OK, f"advertising {address}:{config.p2p.port}, as registered")


# --- peers admit us --------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerTarget:
    """A node to try: the identity we expect and where it listens."""

    identity: str
    host: str
    port: int

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.identity[:16]}…@{host}:{self.port}"


async def check_peer(
    config: Config,
    key: PrivateKey,
    target: PeerTarget,
    timeout: float,
    advertised: str = "127.0.0.1",
) -> Verdict:
    """Connect to ``target``, run the secure handshake with our key, and Ping it (the Ping
    carries ``advertised``, the address the node would give, since the peer may note it)."""
    from lumera_p2p.dht.contacts import wire_node  # noqa: PLC0415
    from lumera_p2p.kademlia import Contact  # noqa: PLC0415
    from lumera_p2p.net.frames import encode_frame, read_message, write_frame  # noqa: PLC0415
    from lumera_p2p.secure import StaticPeerVerifier, secure_connect  # noqa: PLC0415
    from lumera_p2p.wire.messages import Message, MessageType  # noqa: PLC0415

    name = f"peer {target.label}"
    endpoint = f"{target.host}:{target.port}"
    if _has_registry(config):
        register = _register_fix(config, key.address)
    else:
        register = f"have {endpoint} admit {key.address} (it must be in that node's registry)"
    started = time.perf_counter()
    try:
        stream = await secure_connect(
            target.host,
            target.port,
            key,
            target.identity,
            StaticPeerVerifier([target.identity]),
            timeout=timeout,
        )
    except (TimeoutError, OSError) as exc:
        if isinstance(exc, TimeoutError):
            reason = "timed out"
        elif exc.errno:
            reason = os.strerror(exc.errno).lower()  # asyncio says only "Connect call failed"
        else:
            reason = str(exc)
        return Verdict(
            name,
            Status.FAIL,
            f"{endpoint} does not accept connections: {reason}",
            "check that the node runs and that no firewall blocks the port; correct its "
            "address in p2p.bootstrap_nodes or in the registry",
        )
    except ProtocolError as exc:
        text = str(exc)
        if "address mismatch" in text:
            return Verdict(
                name,
                Status.FAIL,
                f"{endpoint} is another node: {text}",
                "correct the identity in p2p.bootstrap_nodes (or the registry)",
            )
        return Verdict(
            name,
            Status.FAIL,
            f"{endpoint} dropped the secure handshake ({text}): it does not admit {key.address}",
            register,
        )
    p2p = config.p2p
    me = Contact(key.address.encode(), advertised, p2p.port, p2p.version)
    peer = Contact(target.identity.encode(), target.host, target.port)
    ping = Message(sender=wire_node(me), receiver=wire_node(peer), message_type=MessageType.PING)
    try:
        await write_frame(stream, await encode_frame(ping), timeout)
        async with asyncio.timeout(timeout):
            reply = await read_message(stream)
    except (TimeoutError, OSError, ProtocolError, LumeraP2PError):
        reply = None
    finally:
        stream.close()
    if reply is None or reply.message_type != MessageType.PING:
        return Verdict(
            name,
            Status.FAIL,
            f"{endpoint} completed the handshake but closed the connection without answering "
            f"our Ping: it does not admit {key.address}",
            register,
        )
    ms = (time.perf_counter() - started) * 1000
    version = reply.sender.version if reply.sender is not None else ""
    seen = f", version {version}" if version else ""
    return Verdict(name, Status.OK, f"handshake and Ping answered in {ms:,.0f} ms{seen}")


def _targets(config: Config, facts: Facts, limit: int) -> tuple[list[PeerTarget], str]:
    mine = facts.key.address if facts.key is not None else ""
    nodes: list[BootstrapNode] | list[Supernode]
    if config.p2p.bootstrap_nodes:
        nodes = [b for b in config.p2p.bootstrap_nodes if b.identity != mine]
        return [PeerTarget(b.identity, b.host, b.port) for b in nodes], "p2p.bootstrap_nodes"
    candidates = bootstrap_candidates(
        facts.supernodes or [], allow_private=config.p2p.allow_private_peers
    )
    targets = [
        PeerTarget(n.address, n.host, n.port)
        for n in candidates
        if n.address != mine and n.host is not None
    ]
    return targets[:limit], _registry_name(config)


async def check_peers(
    config: Config, facts: Facts, *, timeout: float, limit: int = DEFAULT_MAX_PEERS
) -> list[Verdict]:
    """:func:`check_peer` for each bootstrap node (at most ``limit`` from the registry), then
    one verdict for them all: bootstrap works if one admits us."""
    name = "bootstrap"
    if facts.key is None:
        return [Verdict(name, Status.SKIP, "needs the node's key (see keyring)")]
    targets, source = _targets(config, facts, limit)
    if not targets:
        if not config.p2p.bootstrap_nodes and facts.supernodes is None:
            detail = "no peers to try: no bootstrap nodes, and no registry list (see above)"
        else:
            detail = f"{source} names no other node this one may dial"
        return [
            Verdict(
                name,
                Status.FAIL,
                detail,
                "set p2p.bootstrap_nodes, or make the registry reachable (lumera.grpc_addr); "
                "a local network also needs p2p.allow_private_peers",
            )
        ]
    gate = asyncio.Semaphore(16)
    advertised, _ = _advertised(config, facts.ours())

    async def one(target: PeerTarget) -> Verdict:
        assert facts.key is not None
        async with gate:
            return await check_peer(config, facts.key, target, timeout, advertised)

    verdicts = list(await asyncio.gather(*(one(t) for t in targets)))
    admitted = sum(v.status is Status.OK for v in verdicts)
    if admitted:
        summary = Verdict(name, Status.OK, f"{admitted} of {len(targets)} from {source} admit us")
    else:
        summary = Verdict(
            name,
            Status.FAIL,
            f"none of {len(targets)} from {source} admits us: the node would run alone",
            "see the peer lines above",
        )
    return [*verdicts, summary]


async def run_doctor(
    config: Config,
    environ: Mapping[str, str],
    *,
    timeout: float = DEFAULT_CHAIN_TIMEOUT,
    max_peers: int = DEFAULT_MAX_PEERS,
) -> list[Verdict]:
    """Every check, grouped by the seed's cases: the key and storage (``config check``'s),
    the chain and our registration, the address and port, then the peers."""
    verdicts = await run_preflight(config, environ, chain_timeout=timeout)
    facts = await gather_facts(config, environ, timeout)
    verdicts.append(check_registration(config, facts))
    verdicts.append(await asyncio.to_thread(check_port, config))
    verdicts.append(check_external_ip(config, facts.addresses))
    verdicts.append(await asyncio.to_thread(check_advertised, config, facts))
    verdicts.extend(await check_peers(config, facts, timeout=timeout, limit=max_peers))
    return verdicts
