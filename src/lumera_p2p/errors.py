"""One error hierarchy for the whole package.

Every error this package raises on purpose is a :class:`LumeraP2PError`, so a caller can catch the
family without catching programming errors (``TypeError``, ``KeyError``...) by accident.
"""

from __future__ import annotations

from collections.abc import Sequence


class LumeraP2PError(Exception):
    """Base class of every error lumera-p2p raises deliberately."""


class ConfigError(LumeraP2PError):
    """A configuration file or value is invalid: one or more ``(field, problem)`` pairs.

    ``field`` is the dotted path of the offending field (``p2p.port``), or ``""`` when the problem
    is the file as a whole (unreadable, not YAML, not a mapping). ``field`` and ``problem`` are
    those of the first problem; ``problems`` holds them all, in the order found, and ``str()``
    gives one line per problem (newlines inside a field or problem are flattened, so each problem
    stays one line in a terminal and in a log).
    """

    def __init__(self, field: str, problem: str, *, more: Sequence[tuple[str, str]] = ()) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(
            (_one_line(f), _one_line(p)) for f, p in ((field, problem), *more)
        )
        self.field, self.problem = self.problems[0]
        super().__init__("\n".join(self.lines()))

    @classmethod
    def of(cls, problems: Sequence[tuple[str, str]]) -> ConfigError:
        """One error carrying every problem (at least one)."""
        if not problems:
            raise ValueError("a ConfigError needs at least one problem")
        (field, problem), *more = problems
        return cls(field, problem, more=more)

    def lines(self) -> list[str]:
        """``field: problem`` (or just ``problem`` for the file as a whole), one per problem."""
        return [f"{f}: {p}" if f else p for f, p in self.problems]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class IdentityError(LumeraP2PError):
    """A key, address or signature is malformed or does not check out."""


class SignatureError(IdentityError):
    """A signature failed verification (wrong key, malformed, or high-S)."""


class KeyringError(LumeraP2PError):
    """A keyring directory or file cannot be read or written."""


class KeyNotFound(KeyringError):
    """The named key (or address) is not in the keyring."""


class WrongPassphrase(KeyringError):
    """The passphrase does not open the keyring file."""


class InvalidContentKey(LumeraP2PError, ValueError):
    """A content key is not base58 or hex of a 32-byte BLAKE3 digest."""


class ProtocolError(LumeraP2PError):
    """A peer sent bytes that break the wire protocol; the connection must be closed."""


class StoreError(LumeraP2PError):
    """The local database cannot be opened, read or written (disk full, read-only, corrupt)."""


class StorageFull(StoreError):
    """A write would take the stored values past ``store.max_storage_bytes``; nothing was stored."""


class DataDirLocked(StoreError):
    """Another process (or another store in this one) holds the lock on ``data_dir``."""


class ValueTooLarge(LumeraP2PError, ValueError):
    """A value is over the largest storable size (``MAX_VALUE_SIZE``: it must fit one frame
    with its envelope); nothing was stored or sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"a value of {size} bytes is over the limit of {limit} bytes "
            "(the 400 MiB frame minus its envelope)"
        )
        self.size = size
        self.limit = limit


class ValueMismatch(LumeraP2PError, ValueError):
    """A value does not hash to the key it was stored or served under."""


class TransportError(LumeraP2PError):
    """An RPC got no usable answer: refused, timed out, connection lost, or malformed."""


class RpcTimeout(TransportError):
    """An RPC got no answer within its timeout."""


class ChainError(LumeraP2PError):
    """The chain cannot answer: unreachable, timed out, wrong chain id, or a malformed reply."""


class NotFound(LumeraP2PError):
    """A value is not stored locally or could not be found in the network."""


class KeyDisabled(NotFound):
    """The key was disabled on this node (``disable_key``)."""


class NotEnoughValues(NotFound):
    """A local-only batch retrieve found fewer values than required; ``found`` has them."""

    def __init__(self, message: str, found: dict[str, bytes]) -> None:
        super().__init__(message)
        self.found = found


class RequestTooLarge(LumeraP2PError):
    """A request to the node's API is over one of its limits (``api.max_value_bytes``, ...)."""


class ApiError(LumeraP2PError):
    """A node's API could not be reached from the client commands, or answered an error."""


class RangeRefused(ApiError):
    """A download asked a node's API to resume past the end of what the key names (416)."""


class StoreFailed(LumeraP2PError):
    """A network store did not reach enough nodes (the value is committed locally).

    ``key`` is the base58 key of a single store (None for a batch); ``report`` the
    :class:`~lumera_p2p.reports.StoreReport` (or ``BatchStoreReport``) of what was achieved.
    """

    def __init__(self, message: str, *, key: str | None = None, report: object = None) -> None:
        super().__init__(message)
        self.key = key
        self.report = report


class NoStorePeers(StoreFailed):
    """No peer to store on: the routing table is empty, or no peer in it is store-eligible."""


class TooFewReplicas(StoreFailed):
    """Fewer peers acknowledged than ``dht.min_replicas`` (they refused, failed or timed out)."""


class ManifestError(LumeraP2PError, ValueError):
    """Bytes that are not a valid file manifest, or a manifest tree that does not add up."""


class PoisonedValue(TransportError):
    """A peer served a value that does not hash to its key; the peer is banned."""


class SymbolDirError(LumeraP2PError, ValueError):
    """A symbol directory cannot be registered: a malformed txid, or no such directory."""


class NotRunning(LumeraP2PError):
    """The service has not been started (or has stopped)."""


class ProtobufDecodeError(LumeraP2PError):
    """Bytes that are not a well-formed protobuf message."""


class JWEError(KeyringError):
    """A token is not a well-formed PBES2-HS256+A128KW / A256GCM JWE."""


class JWEUnwrapError(JWEError):
    """The key-encryption key did not unwrap the content key: wrong password, or corrupt."""


class JWEAuthError(JWEError):
    """The content key unwrapped but AES-GCM authentication failed: the token was altered."""


class PeerRejected(ProtocolError):
    """The handshake is well formed but the peer may not connect (unknown to the registry, or
    the registry could not be asked)."""


class HandshakeTimeoutError(ProtocolError):
    """The peer did not complete the handshake in time."""


class CounterExhaustedError(ProtocolError):
    """A direction's frame counter wrapped; Go fails every later frame the same way."""


class GobEncodeError(LumeraP2PError, ValueError):
    """A value cannot be encoded (out of range for its Go type, unregistered, nil element...)."""


class OverBudget(LumeraP2PError):
    """A request needs more memory than the node's budget can give it (now, or within the
    wait allowed): it is refused instead of taking the node past ``server.memory_budget``."""
