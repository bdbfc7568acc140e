"""Pre-flight checks: what ``lumera-p2p run`` needs beyond a valid config, each a verdict.

A config can be valid and still not run: the key is missing or the passphrase does not open
it, ``data_dir`` cannot be written, the registry file is broken, nothing names a single peer,
or the chain is down or is another chain. Each function here checks one of those the way the
node will meet it at start-up and returns a :class:`Verdict` with the fix; none raises for
what it checks. ``lumera-p2p config check`` prints them; ``doctor`` builds on them.

The environment is passed in (``environ``), as everywhere in this package: only the CLI reads
the process environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from lumera_p2p.config import Config
from lumera_p2p.errors import (
    ChainError,
    ConfigError,
    IdentityError,
    KeyNotFound,
    KeyringError,
    WrongPassphrase,
)
from lumera_p2p.identity.keyring import (
    BACKEND_DIRS,
    Keyring,
    os_backend_advice,
    resolve_passphrase,
)

__all__ = [
    "Status",
    "Verdict",
    "check_chain",
    "check_data_dir",
    "check_keyring",
    "check_log_file",
    "check_peers_source",
    "check_registry_file",
    "run_preflight",
]

DEFAULT_CHAIN_TIMEOUT = 5.0


class Status(Enum):
    """How one check came out."""

    OK = "ok"
    #: ``run`` may still work, or this program cannot tell; read the detail.
    WARN = "warn"
    #: ``run`` will refuse to start, or start useless.
    FAIL = "fail"
    #: Not applicable to this config, or not asked for (``--offline``).
    SKIP = "skip"


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: which check, its status, what was found and how to fix it."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        """True for :attr:`Status.FAIL`."""
        return self.status is Status.FAIL

    def line(self) -> str:
        """``fail  keyring: no key named 'x' in … (fix: …)``, one line."""
        text = f"{self.check}: {self.detail}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return f"{self.status.value:<4}  " + " ".join(text.split())


def _ok(check: str, detail: str) -> Verdict:
    return Verdict(check, Status.OK, detail)


def _fail(check: str, detail: str, fix: str) -> Verdict:
    return Verdict(check, Status.FAIL, detail, fix)


# --- keyring ---------------------------------------------------------------------------------


def check_keyring(config: Config, environ: Mapping[str, str]) -> Verdict:
    """The key ``key_name`` is in the keyring, opens with the configured passphrase, and is
    ``identity`` when that is set: what ``run`` does first."""
    ring_cfg = config.keyring
    name = "keyring"
    if ring_cfg.backend == "os":
        advice = os_backend_advice(config.key_name, str(ring_cfg.dir))
        return Verdict(name, Status.WARN, f"'run' refuses this config: {advice}")
    add_key = (
        f"create it with 'lumera-p2p keys add {config.key_name} --keyring-dir {ring_cfg.dir} "
        f"--keyring-backend {ring_cfg.backend}' (add --recover to use a mnemonic), or import "
        "a 'lumerad keys export' file with 'lumera-p2p keys import'"
    )
    try:
        passphrase = resolve_passphrase(
            ring_cfg.passphrase_plain,
            ring_cfg.passphrase_env,
            ring_cfg.passphrase_file,
            environ,
        )
    except KeyringError as exc:
        return _fail(
            name, str(exc), "set the variable or write the file that keyring.passphrase_* names"
        )
    if ring_cfg.backend == "file" and passphrase is None:
        return _fail(
            name,
            "the file backend needs a passphrase and none is configured",
            "set keyring.passphrase_file, keyring.passphrase_env or keyring.passphrase_plain",
        )
    where = ring_cfg.dir / BACKEND_DIRS[ring_cfg.backend]
    try:
        ring = Keyring(ring_cfg.dir, ring_cfg.backend, passphrase=passphrase)
        key = ring.private_key(config.key_name)
    except WrongPassphrase as exc:
        return _fail(name, str(exc), "configure the passphrase this keyring was created with")
    except KeyNotFound as exc:
        return _fail(name, str(exc), add_key)
    except (KeyringError, IdentityError) as exc:
        return _fail(name, str(exc), add_key)
    if config.identity and key.address != config.identity:
        return _fail(
            name,
            f"key {config.key_name!r} is {key.address} but identity is {config.identity}",
            f"set identity: {key.address}, or key_name to the key of {config.identity}",
        )
    unlocked = ", unlocked with the configured passphrase" if ring_cfg.backend == "file" else ""
    return _ok(name, f"key {config.key_name!r} ({key.address}) in {where}{unlocked}")


# --- files and directories -------------------------------------------------------------------


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


#: Free space under ``data_dir`` below which the node cannot be expected to work: SQLite needs
#: room for its WAL and checkpoints (tens of MiB) and a single batch from a peer may be hundreds.
MIN_FREE_BYTES = 1 << 30
#: Below this a warning: a node stores what its neighbours send it, and a few of today's
#: file transfers (each chunk on 6 replicas) fill a few gigabytes quickly.
LOW_FREE_BYTES = 10 << 30


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _space_verdict(
    config: Config, where: Path, detail: str, min_free: int, low_free: int
) -> Verdict:
    """``detail`` (the directory is fine) with the free space under ``where`` judged."""
    name = "data_dir"
    free = _free_bytes(where)
    if free is None:
        return _ok(name, detail)
    text = f"{detail}, {free / 1e9:,.1f} GB free"
    fix = (
        "free space on that filesystem, move p2p.data_dir to a larger one, or set "
        "store.max_storage_bytes below the free space"
    )
    if free < min_free:
        return _fail(name, f"{text}: below {min_free / 1e9:,.1f} GB, writes will fail", fix)
    cap = config.store.max_storage_bytes
    if cap and free < cap:
        return Verdict(
            name,
            Status.WARN,
            f"{text}: less than store.max_storage_bytes ({cap / 1e9:,.1f} GB)",
            fix,
        )
    if not cap and free < low_free:
        return Verdict(name, Status.WARN, f"{text}: below {low_free / 1e9:,.1f} GB", fix)
    return _ok(name, text)


def _probe_create(path: Path, parent: Path) -> OSError | None:
    """Create the missing directories from ``parent`` down to ``path``, then remove them:
    what opening the store will do, leaving nothing behind. The error, if creating failed."""
    made: list[Path] = []
    missing = [p for p in (path, *path.parents) if p != parent and parent in p.parents]
    try:
        for directory in reversed(missing):
            directory.mkdir()
            made.append(directory)
    except OSError as exc:
        return exc
    finally:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
    return None


def check_data_dir(
    config: Config, *, min_free: int = MIN_FREE_BYTES, low_free: int = LOW_FREE_BYTES
) -> Verdict:
    """``p2p.data_dir`` is a directory this process can write, or can create, with free space
    (fail below ``min_free`` bytes; warn below ``low_free``, or below
    ``store.max_storage_bytes`` when that is set)."""
    name = "data_dir"
    path = config.p2p.data_dir
    fix = "choose another p2p.data_dir, or give this user write access to it"
    if path.exists():
        if not path.is_dir():
            return _fail(name, f"{path} exists and is not a directory", fix)
        try:
            fd, probe = tempfile.mkstemp(prefix=".lumera-p2p-check-", dir=path)
        except OSError as exc:
            return _fail(name, f"{path} is not writable: {exc.strerror or exc}", fix)
        os.close(fd)
        Path(probe).unlink(missing_ok=True)
        return _space_verdict(config, path, f"{path} is writable", min_free, low_free)
    parent = _existing_ancestor(path)
    if not parent.is_dir():
        return _fail(name, f"{path} cannot be created: {parent} is not a directory", fix)
    if not os.access(parent, os.W_OK | os.X_OK):
        return _fail(name, f"{path} cannot be created: {parent} is not writable", fix)
    refused = _probe_create(path, parent)
    if refused is not None:
        return _fail(
            name, f"{path} cannot be created in {parent}: {refused.strerror or refused}", fix
        )
    return _space_verdict(
        config, parent, f"{path} does not exist yet and will be created", min_free, low_free
    )


def check_log_file(config: Config) -> Verdict:
    """``log.file``, when set, can be appended to (or created)."""
    name = "log.file"
    path = config.log.file
    if path is None:
        return Verdict(name, Status.SKIP, "not set: logs go to stderr")
    fix = "choose another log.file, or give this user write access to it"
    if path.exists():
        if not path.is_file():
            return _fail(name, f"{path} exists and is not a file", fix)
        if not os.access(path, os.W_OK):
            return _fail(name, f"{path} is not writable", fix)
        return _ok(name, f"{path} is writable")
    parent = _existing_ancestor(path.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return _fail(name, f"{path} cannot be created in {parent}", fix)
    return _ok(name, f"{path} will be created")


def check_registry_file(config: Config) -> Verdict:
    """``lumera.registry_file``, when set, is readable and valid."""
    # Imported here: the chain package loads gRPC, which `config check --offline` never needs.
    from lumera_p2p.chain.static_registry import StaticRegistry  # noqa: PLC0415

    name = "registry_file"
    path = config.lumera.registry_file
    if path is None:
        return Verdict(name, Status.SKIP, "not set")
    try:
        registry = StaticRegistry.from_file(path)
    except ConfigError as exc:
        return _fail(
            name,
            "; ".join(exc.lines()),
            "fix the file (its format is in the README), or unset lumera.registry_file",
        )
    data = registry.to_data()
    supernodes = len(data["supernodes"])
    accounts = len(data.get("accounts", []))
    return _ok(name, f"{path}: {supernodes} supernodes, {accounts} more accounts")


# --- peers and chain -------------------------------------------------------------------------


def check_peers_source(config: Config) -> Verdict:
    """Something names peers: ``p2p.bootstrap_nodes``, ``lumera.registry_file`` or the chain."""
    name = "peers"
    sources = []
    if config.p2p.bootstrap_nodes:
        sources.append(f"{len(config.p2p.bootstrap_nodes)} bootstrap nodes")
    if config.lumera.registry_file is not None:
        sources.append("the registry file")
    elif config.lumera.grpc_addr:
        sources.append(f"the chain at {config.lumera.grpc_addr}")
    if not sources:
        return _fail(
            name,
            "no peers source: the node would start alone and admit nobody",
            "set p2p.bootstrap_nodes, lumera.registry_file or lumera.grpc_addr",
        )
    return _ok(name, "from " + " and ".join(sources))


async def check_chain(
    config: Config, *, offline: bool = False, timeout: float = DEFAULT_CHAIN_TIMEOUT
) -> Verdict:
    """The chain at ``lumera.grpc_addr`` answers and is ``lumera.chain_id``."""
    from lumera_p2p.chain.grpc_registry import GrpcRegistry  # noqa: PLC0415

    name = "chain"
    lumera = config.lumera
    if not lumera.grpc_addr:
        return Verdict(name, Status.SKIP, "lumera.grpc_addr is not set")
    if lumera.registry_file is not None:
        return Verdict(name, Status.SKIP, "lumera.registry_file is used instead of the chain")
    if offline:
        return Verdict(name, Status.SKIP, f"--offline: {lumera.grpc_addr} not contacted")
    fix = (
        f"start or reach the Lumera node's gRPC endpoint at {lumera.grpc_addr}, or correct "
        "lumera.grpc_addr and lumera.chain_id"
    )
    try:
        registry = GrpcRegistry(
            lumera.grpc_addr, lumera.chain_id or "", timeout=timeout, connect_timeout=timeout
        )
    except ConfigError as exc:
        return _fail(name, "; ".join(exc.lines()), fix)
    try:
        await registry.connect()
    except ChainError as exc:
        return _fail(name, str(exc), fix)
    finally:
        await registry.close()
    return _ok(name, f"chain {lumera.chain_id!r} answers at {registry.target or lumera.grpc_addr}")


async def run_preflight(
    config: Config,
    environ: Mapping[str, str],
    *,
    offline: bool = False,
    chain_timeout: float = DEFAULT_CHAIN_TIMEOUT,
) -> list[Verdict]:
    """Every check above, in the order ``run`` meets them (file checks off the event loop)."""
    verdicts = [
        await asyncio.to_thread(check_keyring, config, environ),
        await asyncio.to_thread(check_data_dir, config),
        await asyncio.to_thread(check_log_file, config),
        await asyncio.to_thread(check_registry_file, config),
        check_peers_source(config),
        await check_chain(config, offline=offline, timeout=chain_timeout),
    ]
    return verdicts
