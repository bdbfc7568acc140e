"""lumera-p2p: a Python peer of the Lumera supernode P2P network.

The public surface::

    from lumera_p2p import P2P, Config, load_config, content_key, LumeraP2PError, ...

Everything but the error classes and ``content_key`` is imported on first use: ``P2P`` brings
the secure channel, SQLite and the codec, ``Config`` pydantic and the key machinery, and a tool
that only catches an error or computes a key should pay for none of that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lumera_p2p.content import content_key
from lumera_p2p.errors import (
    ApiError,
    ChainError,
    ConfigError,
    CounterExhaustedError,
    DataDirLocked,
    GobEncodeError,
    HandshakeTimeoutError,
    IdentityError,
    InvalidContentKey,
    JWEAuthError,
    JWEError,
    JWEUnwrapError,
    KeyDisabled,
    KeyNotFound,
    KeyringError,
    LumeraP2PError,
    ManifestError,
    NoStorePeers,
    NotEnoughValues,
    NotFound,
    NotRunning,
    OverBudget,
    PeerRejected,
    PoisonedValue,
    ProtobufDecodeError,
    ProtocolError,
    RangeRefused,
    RequestTooLarge,
    RpcTimeout,
    SignatureError,
    StorageFull,
    StoreError,
    StoreFailed,
    SymbolDirError,
    TooFewReplicas,
    TransportError,
    ValueMismatch,
    ValueTooLarge,
    WrongPassphrase,
)

if TYPE_CHECKING:
    from lumera_p2p.config import Config, load_config
    from lumera_p2p.dht.plans.batch_store import BatchStoreReport
    from lumera_p2p.dht.reports import StoreReport
    from lumera_p2p.service import P2P
    from lumera_p2p.stats import P2PStats

__version__ = "0.1.0"

#: Names loaded on first use, and the module each comes from.
_LAZY = {
    "Config": "lumera_p2p.config",
    "load_config": "lumera_p2p.config",
    "P2P": "lumera_p2p.service",
    "P2PStats": "lumera_p2p.stats",
    "BatchStoreReport": "lumera_p2p.dht.plans.batch_store",
    "StoreReport": "lumera_p2p.dht.reports",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = [
    "P2P",
    "ApiError",
    "BatchStoreReport",
    "ChainError",
    "Config",
    "ConfigError",
    "CounterExhaustedError",
    "DataDirLocked",
    "GobEncodeError",
    "HandshakeTimeoutError",
    "IdentityError",
    "InvalidContentKey",
    "JWEAuthError",
    "JWEError",
    "JWEUnwrapError",
    "KeyDisabled",
    "KeyNotFound",
    "KeyringError",
    "LumeraP2PError",
    "ManifestError",
    "NoStorePeers",
    "NotEnoughValues",
    "NotFound",
    "NotRunning",
    "OverBudget",
    "P2PStats",
    "PeerRejected",
    "PoisonedValue",
    "ProtobufDecodeError",
    "ProtocolError",
    "RangeRefused",
    "RequestTooLarge",
    "RpcTimeout",
    "SignatureError",
    "StorageFull",
    "StoreError",
    "StoreFailed",
    "StoreReport",
    "SymbolDirError",
    "TooFewReplicas",
    "TransportError",
    "ValueMismatch",
    "ValueTooLarge",
    "WrongPassphrase",
    "content_key",
    "load_config",
]
