"""The chain registry: who the supernodes are, where they listen, who may connect.

:class:`Registry` is the interface; :class:`GrpcRegistry` asks a Lumera node over gRPC and
:class:`StaticRegistry` reads a YAML file for private networks. The protobuf modules under
``_generated`` are compiled from ``proto/`` at build time by ``hatch_build.py``.

:class:`GrpcRegistry` is imported on first use: gRPC is the largest import a node could make,
and a node on a static registry never needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lumera_p2p.chain.registry import (
    ROUTING_STATES,
    STORE_STATES,
    Registry,
    Supernode,
    SupernodeState,
    bootstrap_candidates,
    endpoint_rejection,
    format_endpoint,
    supernode_from_record,
)
from lumera_p2p.chain.static_registry import StaticRegistry

if TYPE_CHECKING:
    from lumera_p2p.chain.grpc_registry import GrpcRegistry

__all__ = [
    "ROUTING_STATES",
    "STORE_STATES",
    "GrpcRegistry",
    "Registry",
    "StaticRegistry",
    "Supernode",
    "SupernodeState",
    "bootstrap_candidates",
    "endpoint_rejection",
    "format_endpoint",
    "supernode_from_record",
]


def __getattr__(name: str) -> Any:
    if name == "GrpcRegistry":
        from lumera_p2p.chain.grpc_registry import GrpcRegistry  # noqa: PLC0415

        return GrpcRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
