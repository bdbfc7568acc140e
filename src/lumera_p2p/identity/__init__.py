"""Lumera identities: eth_secp256k1 keys, ``lumera1…`` addresses, signatures and keyrings."""

from lumera_p2p.identity.keys import (
    DEFAULT_HD_PATH,
    KeyType,
    PrivateKey,
    PublicKey,
    address_from_bytes,
    address_to_bytes,
    keccak256,
    node_id,
    routing_id,
    validate_address,
)

__all__ = [
    "DEFAULT_HD_PATH",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "address_from_bytes",
    "address_to_bytes",
    "keccak256",
    "node_id",
    "routing_id",
    "validate_address",
]
