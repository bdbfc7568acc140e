"""The Lumera secure handshake (lumera ``x/lumeraid/securekeyx`` + supernode ``alts/handshake``).

Each side sends one message, ``u32be len ‖ HandshakeInfo ‖ u32be len ‖ signature``
(wire-protocol.md §2): its bech32 address, its peer type, a fresh P-256 ECDH public key and its
account public key, signed by the account key. The client speaks first; the server parses the
client's message, answers with its own and only then verifies the client. Both derive
``HKDF-SHA256(Z, salt=∅, "ALTSRP_XCHACHA20_POLY1305_REKEY-<client>-<server>", 56)`` for the
record layer. There is no transcript, no key confirmation and no error message on the wire.

The pure pieces (encode, parse, verify, derive) are separate from the two async drivers,
which need only something with ``readexactly`` and ``write``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Protocol

from lumera_p2p.errors import (
    HandshakeTimeoutError,  # noqa: F401  (its old import path)
    IdentityError,
    LumeraP2PError,
    PeerRejected,
    ProtobufDecodeError,
    ProtocolError,
)
from lumera_p2p.identity import protowire
from lumera_p2p.identity.keys import PrivateKey, PublicKey
from lumera_p2p.secure.p256 import EphemeralKey, PeerPublicKey, hkdf_sha256
from lumera_p2p.secure.record import KEY_MATERIAL_SIZE, RECORD_PROTOCOL, Side

#: The only curve any Go path uses; the receiver ignores the field and assumes it.
CURVE_P256: Final = "P256"
#: Our bounds on the two length prefixes. Go has none and allocates what it is told; a real
#: HandshakeInfo is about 200 bytes and a signature 64 or 65, so these leave ample room
#: while making a hostile length cost nothing.
MAX_HANDSHAKE_INFO: Final = 64 * 1024
MAX_SIGNATURE: Final = 1024
#: Go's handshake timeout when the context has none (always the case on a Go server).
DEFAULT_HANDSHAKE_TIMEOUT: Final = 30.0
#: Go's ``accountValidationTimeout``: each chain query of the handshake gets this long.
CHAIN_QUERY_TIMEOUT: Final = 5.0

_U32BE = struct.Struct(">I")
_P256_POINT_SIZE: Final = 65


class PeerType(IntEnum):
    """``securekeyx.PeerType``: what a peer claims to be, and so which chain check applies.

    Go declares both with ``iota`` after another constant of the same ``const`` block, so
    they are 1 and 2; 0 is not a peer type and is refused (wire-protocol.md §2.2).
    """

    SIMPLENODE = 1
    SUPERNODE = 2


class PeerVerifier(Protocol):
    """Who may connect: the chain checks Go makes in ``securekeyx.checkAccount``."""

    async def is_registered_supernode(self, address: str) -> bool:
        """True if ``address`` is the account of a registered supernode (any state)."""
        ...

    async def account_exists(self, address: str) -> bool:
        """True if ``address`` is an existing (funded) account on chain."""
        ...


class StaticPeerVerifier:
    """A fixed allow-list, for tests and private networks: both checks pass for its addresses."""

    def __init__(self, addresses: Iterable[str]) -> None:
        if isinstance(addresses, str):
            raise TypeError("addresses must be an iterable of addresses, not one string")
        self._addresses = frozenset(addresses)

    async def is_registered_supernode(self, address: str) -> bool:
        """True if ``address`` is in the list."""
        return address in self._addresses

    async def account_exists(self, address: str) -> bool:
        """True if ``address`` is in the list."""
        return address in self._addresses


class _ExactReader(Protocol):
    async def readexactly(self, n: int) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...


# --- HandshakeInfo ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeInfo:
    """``lumera.lumeraid.HandshakeInfo`` (proto3)."""

    address: str
    peer_type: int
    public_key: bytes
    account_public_key: bytes
    curve: str = CURVE_P256

    def encode(self) -> bytes:
        """Serialize as gogoproto does: ascending field numbers, proto3 defaults omitted."""
        out = bytearray()
        if self.address:
            out += protowire.field_bytes(1, self.address.encode())
        if self.peer_type:
            out += protowire.field_varint(2, self.peer_type & 0xFFFFFFFFFFFFFFFF)
        if self.public_key:
            out += protowire.field_bytes(3, self.public_key)
        if self.account_public_key:
            out += protowire.field_bytes(4, self.account_public_key)
        if self.curve:
            out += protowire.field_bytes(5, self.curve.encode())
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> HandshakeInfo:
        """Parse as Go's generated ``Unmarshal``; raise ``ProtocolError`` on anything malformed.

        Like Go: last occurrence wins, a known field with the wrong wire type is an error,
        unknown fields are skipped, strings are not checked for UTF-8 (an invalid address
        just never matches). ``peer_type`` keeps the low 32 bits, as Go's int32 decode does.
        """
        if not data:
            raise ProtocolError("empty handshake bytes")
        values: dict[int, int | bytes] = {}
        expected = {1: protowire.WIRE_LEN, 2: protowire.WIRE_VARINT, 3: protowire.WIRE_LEN}
        expected |= {4: protowire.WIRE_LEN, 5: protowire.WIRE_LEN}
        try:
            for number, wire, value in protowire.iter_fields(data):
                want = expected.get(number)
                if want is None:
                    continue
                if wire != want:
                    raise ProtocolError(f"handshake info field {number} has wire type {wire}")
                values[number] = value
        except ProtobufDecodeError as exc:
            raise ProtocolError(f"malformed handshake info: {exc}") from exc
        raw_type = values.get(2, 0)
        assert isinstance(raw_type, int)
        low = raw_type & 0xFFFFFFFF
        return cls(
            address=_as_bytes(values.get(1)).decode("utf-8", "surrogateescape"),
            peer_type=low - (1 << 32) if low >= 1 << 31 else low,
            public_key=_as_bytes(values.get(3)),
            account_public_key=_as_bytes(values.get(4)),
            curve=_as_bytes(values.get(5)).decode("utf-8", "surrogateescape"),
        )


def _as_bytes(value: int | bytes | None) -> bytes:
    return value if isinstance(value, bytes) else b""


# --- one side's message ---------------------------------------------------------------------


def generate_ephemeral() -> EphemeralKey:
    """A fresh P-256 key for one handshake."""
    return EphemeralKey.generate()


def ephemeral_public_bytes(key: EphemeralKey) -> bytes:
    """SEC1 uncompressed ``04 ‖ X ‖ Y`` (Go ``ecdh.PublicKey.Bytes()``)."""
    return key.public_bytes()


def create_request(
    local_key: PrivateKey, peer_type: PeerType, ephemeral: EphemeralKey
) -> tuple[bytes, bytes]:
    """Our HandshakeInfo bytes and their signature (Go ``CreateRequest``)."""
    info = HandshakeInfo(
        address=local_key.address,
        peer_type=int(peer_type),
        public_key=ephemeral_public_bytes(ephemeral),
        account_public_key=local_key.public_key.to_any(),
    ).encode()
    return info, local_key.sign(info)


def encode_message(info: bytes, signature: bytes) -> bytes:
    """The framing: ``u32be(len) ‖ info ‖ u32be(len) ‖ signature``, sent in one write."""
    return _U32BE.pack(len(info)) + info + _U32BE.pack(len(signature)) + signature


async def read_message(reader: _ExactReader) -> tuple[bytes, bytes]:
    """Read one handshake message; each length is checked before anything is allocated.

    Raises ``ProtocolError`` for a zero or oversized length and for input that ends early.
    """
    info_len = _U32BE.unpack(await _read(reader, 4, "handshake length"))[0]
    if info_len == 0:
        raise ProtocolError("empty handshake message (length 0)")
    if info_len > MAX_HANDSHAKE_INFO:
        raise ProtocolError(f"handshake length {info_len} exceeds our limit {MAX_HANDSHAKE_INFO}")
    info = await _read(reader, info_len, "handshake bytes")
    sig_len = _U32BE.unpack(await _read(reader, 4, "signature length"))[0]
    if sig_len == 0:
        raise ProtocolError("empty handshake signature (length 0)")
    if sig_len > MAX_SIGNATURE:
        raise ProtocolError(f"signature length {sig_len} exceeds our limit {MAX_SIGNATURE}")
    signature = await _read(reader, sig_len, "signature")
    return info, signature


async def _read(reader: _ExactReader, n: int, what: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(
            f"truncated handshake: failed to read {what} ({len(exc.partial)} of {n} bytes)"
        ) from exc


# --- verification and key schedule ----------------------------------------------------------


@dataclass(frozen=True)
class VerifiedPeer:
    """What a verified handshake message tells us about the peer."""

    address: str
    peer_type: PeerType
    account_key: PublicKey
    ephemeral_public: PeerPublicKey


async def verify_peer(
    info: HandshakeInfo,
    raw_info: bytes,
    signature: bytes,
    verifier: PeerVerifier,
    chain_timeout: float = CHAIN_QUERY_TIMEOUT,
) -> VerifiedPeer:
    """The checks of Go ``ComputeSharedSecret``, in its order; ``ProtocolError`` on any failure.

    1. the account key is present and decodes; 2. it hashes to ``info.address``; 3. the
    signature over the exact received bytes checks; 4. the peer type is 1 or 2 and the chain
    (``verifier``) knows the peer as that; 5. the ephemeral key is an uncompressed P-256 point.
    Each message starts with Go's wording for the same failure, then says more.
    """
    if not info.account_public_key:
        raise ProtocolError("account public key is nil: handshake carries no account public key")
    try:
        account_key = PublicKey.from_any(info.account_public_key)
    except IdentityError as exc:
        raise ProtocolError(
            f"failed to unmarshal remote account's public key: handshake account public key: {exc}"
        ) from exc
    derived = account_key.address
    if derived != info.address:
        raise ProtocolError(f"address mismatch: expected {derived}, got {info.address!r}")
    try:
        account_key.verify(raw_info, signature)
    except IdentityError as exc:
        raise ProtocolError(
            f"signature validation failed: invalid signature (handshake of {info.address}: {exc})"
        ) from exc
    if info.peer_type not in (PeerType.SIMPLENODE, PeerType.SUPERNODE):
        raise ProtocolError(f"invalid remote peer type: {info.peer_type}")
    peer_type = PeerType(info.peer_type)
    if peer_type is PeerType.SUPERNODE:
        go_reason, what = "supernode peer cannot be verified", "a registered supernode"
    else:
        go_reason, what = "account cannot be verified", "an existing account"
    try:
        async with asyncio.timeout(chain_timeout):
            if peer_type is PeerType.SUPERNODE:
                known = await verifier.is_registered_supernode(info.address)
            else:
                known = await verifier.account_exists(info.address)
    except ProtocolError:
        raise
    except (LumeraP2PError, OSError) as exc:  # TimeoutError is an OSError
        # Go refuses the peer when the chain query fails or times out; so do we.
        reason = str(exc) or type(exc).__name__
        raise PeerRejected(
            f"invalid remote peer: {go_reason}: could not verify peer {info.address}: {reason}"
        ) from exc
    if not known:
        raise PeerRejected(f"invalid remote peer: {go_reason}: peer {info.address} is not {what}")
    if len(info.public_key) != _P256_POINT_SIZE or info.public_key[0] != 0x04:
        raise ProtocolError(
            "failed to parse remote public key: "
            "ephemeral key is not an uncompressed P-256 point (65 bytes, 04…)"
        )
    try:
        ephemeral_public = PeerPublicKey.from_encoded_point(info.public_key)
    except ValueError as exc:
        raise ProtocolError(
            "failed to parse remote public key: ephemeral key is not a point on P-256"
        ) from exc
    return VerifiedPeer(info.address, peer_type, account_key, ephemeral_public)


def shared_secret(ephemeral: EphemeralKey, peer_public: PeerPublicKey) -> bytes:
    """ECDH on P-256: the 32-byte big-endian x-coordinate (Go ``ecdh.PrivateKey.ECDH``)."""
    return ephemeral.exchange(peer_public)


def hkdf_info(client_address: str, server_address: str) -> bytes:
    """``"ALTSRP_XCHACHA20_POLY1305_REKEY-<client>-<server>"``: the client always comes first."""
    return f"{RECORD_PROTOCOL}-{client_address}-{server_address}".encode()


def expand_key(secret: bytes, info: bytes) -> bytes:
    """Go ``ExpandKey`` for the XChaCha suite: 56 bytes of key ‖ nonce mask.

    Go returns the secret itself, truncated, when it is already long enough; with P-256
    (32 bytes) that never happens and HKDF-SHA256 with an empty salt is used.
    """
    if len(secret) >= KEY_MATERIAL_SIZE:
        return secret[:KEY_MATERIAL_SIZE]
    return hkdf_sha256(secret, info, KEY_MATERIAL_SIZE)


# --- the two drivers ------------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeResult:
    """A completed handshake: who the peer is and the record-layer key material."""

    side: Side
    local_address: str
    peer_address: str
    peer_type: PeerType
    peer_account_key: PublicKey
    key_material: bytes


async def client_handshake(
    reader: _ExactReader,
    writer: _Writer,
    local_key: PrivateKey,
    expected_peer: str,
    verifier: PeerVerifier,
    *,
    peer_type: PeerType = PeerType.SUPERNODE,
    ephemeral: EphemeralKey | None = None,
) -> HandshakeResult:
    """Go ``ClientHandshake``: send ours, read theirs, check it is who we dialled, verify."""
    eph = ephemeral or generate_ephemeral()
    info, signature = create_request(local_key, peer_type, eph)
    writer.write(encode_message(info, signature))
    raw, peer_sig = await read_message(reader)
    peer_info = HandshakeInfo.decode(raw)
    if peer_info.address != expected_peer:
        raise ProtocolError(
            f"remote address mismatch: {peer_info.address!r} != {expected_peer!r}"
            " (the server is not the peer we dialled)"
        )
    peer = await verify_peer(peer_info, raw, peer_sig, verifier)
    secret = shared_secret(eph, peer.ephemeral_public)
    key = expand_key(secret, hkdf_info(local_key.address, peer.address))
    return HandshakeResult(
        Side.CLIENT, local_key.address, peer.address, peer.peer_type, peer.account_key, key
    )


async def server_handshake(
    reader: _ExactReader,
    writer: _Writer,
    local_key: PrivateKey,
    verifier: PeerVerifier,
    *,
    peer_type: PeerType = PeerType.SUPERNODE,
    ephemeral: EphemeralKey | None = None,
) -> HandshakeResult:
    """Go ``ServerHandshake``: read and parse theirs, answer with ours, then verify theirs."""
    raw, peer_sig = await read_message(reader)
    peer_info = HandshakeInfo.decode(raw)
    eph = ephemeral or generate_ephemeral()
    info, signature = create_request(local_key, peer_type, eph)
    writer.write(encode_message(info, signature))
    peer = await verify_peer(peer_info, raw, peer_sig, verifier)
    secret = shared_secret(eph, peer.ephemeral_public)
    key = expand_key(secret, hkdf_info(peer.address, local_key.address))
    return HandshakeResult(
        Side.SERVER, local_key.address, peer.address, peer.peer_type, peer.account_key, key
    )
