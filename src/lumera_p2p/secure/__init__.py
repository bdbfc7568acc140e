"""The Lumera secure channel: signed P-256 handshake, then XChaCha20-Poly1305 record frames.

Byte-compatible with supernode ``pkg/net/credentials/alts`` and lumera ``securekeyx``
(wire-protocol.md §2-§3). ``handshake`` and ``record`` are sans-I/O; ``channel`` is the
asyncio glue.
"""

from lumera_p2p.errors import CounterExhaustedError, HandshakeTimeoutError
from lumera_p2p.secure.channel import (
    IncomingConnection,
    SecureStream,
    secure_connect,
    start_secure_server,
)
from lumera_p2p.secure.handshake import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    HandshakeResult,
    PeerType,
    PeerVerifier,
    StaticPeerVerifier,
)

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "CounterExhaustedError",
    "HandshakeResult",
    "HandshakeTimeoutError",
    "IncomingConnection",
    "PeerType",
    "PeerVerifier",
    "SecureStream",
    "StaticPeerVerifier",
    "secure_connect",
    "start_secure_server",
]
