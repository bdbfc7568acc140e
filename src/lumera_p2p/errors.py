"""One error hierarchy for the whole package.

Every error this package raises on purpose is a :class:`LumeraP2PError`, so a caller can catch the
family without catching programming errors (``TypeError``, ``KeyError``...) by accident.
"""

from __future__ import annotations


class LumeraP2PError(Exception):
    """Base class of every error lumera-p2p raises deliberately."""


class ConfigError(LumeraP2PError):
    """A configuration file or value is invalid.

    ``field`` is the dotted path of the offending field (``p2p.port``), or ``""`` when the problem
    is the file as a whole (unreadable, not YAML, not a mapping).
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


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


class ValueMismatch(LumeraP2PError, ValueError):
    """A value does not hash to the key it was stored or served under."""


class TransportError(LumeraP2PError):
    """An RPC got no usable answer: refused, timed out, connection lost, or malformed."""


class ChainError(LumeraP2PError):
    """The chain cannot answer: unreachable, timed out, wrong chain id, or a malformed reply."""


class NotFound(LumeraP2PError):
    """A value is not stored locally or could not be found in the network."""


class OverBudget(LumeraP2PError):
    """A request needs more memory than the node's budget can give it (now, or within the
    wait allowed): it is refused instead of taking the node past ``server.memory_budget``."""
