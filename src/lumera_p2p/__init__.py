"""lumera-p2p: a Python peer of the Lumera supernode P2P network."""

from lumera_p2p.errors import ConfigError, LumeraP2PError, NotFound, ProtocolError

__all__ = ["ConfigError", "LumeraP2PError", "NotFound", "ProtocolError"]
__version__ = "0.1.0"
