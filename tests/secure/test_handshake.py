"""Handshake: §9.2 / A.5 vectors, HandshakeInfo parsing, and the receiver's checks in Go's order."""

from __future__ import annotations

import asyncio
import hashlib

import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from lumera_p2p.errors import ProtocolError
from lumera_p2p.identity import protowire
from lumera_p2p.identity.keys import SECP256K1_N, KeyType, PrivateKey, PublicKey
from lumera_p2p.secure.handshake import (
    MAX_HANDSHAKE_INFO,
    MAX_SIGNATURE,
    HandshakeInfo,
    PeerType,
    PeerVerifier,
    StaticPeerVerifier,
    VerifiedPeer,
    create_request,
    encode_message,
    ephemeral_public_bytes,
    expand_key,
    hkdf_info,
    read_message,
    shared_secret,
    verify_peer,
)
from lumera_p2p.secure.p256 import EphemeralKey, PeerPublicKey
from lumera_p2p.secure.record import RecordCrypto, Side

from .conftest import make_key

TEST_ADDRESS_1 = "lumera1zvnc27832srgxa207y5hu2agy83wazfzurufyp"
TEST_ADDRESS_2 = "lumera1evlkjnp072q8u0yftk65ualx49j6mdz66p2073"
CLIENT_EPH = EphemeralKey.from_scalar(int("00" + "11" * 31, 16))
SERVER_EPH = EphemeralKey.from_scalar(int("00" + "22" * 31, 16))
ONE = PrivateKey((1).to_bytes(32, "big"))  # secp256k1 G: a well-known address

INFO_TYPE0 = bytes.fromhex(
    "0a2d6c756d65726131306530353235736672663533796832616c6a6d6d33736e396a71356e6a6b376c75"
    "6c766177721a4104149c58d7b80fe7510afd51a3bb09ce8d1aaa337404467e076d29ac865ff9d42a41fa"
    "6f24e4b6898a0bec839e9c5de6840570ed963aff341f89ddfd7daf6c9ce322500a292f636f736d6f732e"
    "65766d2e63727970746f2e76312e657468736563703235366b312e5075624b657912230a210279be667e"
    "f9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f817982a0450323536"
)


def feed(data: bytes) -> asyncio.StreamReader:
    """A StreamReader holding ``data`` then EOF (needs a running loop)."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def message_for(
    key: PrivateKey, peer_type: PeerType = PeerType.SUPERNODE
) -> tuple[bytes, bytes, EphemeralKey]:
    eph = EphemeralKey.generate()
    info, sig = create_request(key, peer_type, eph)
    return info, sig, eph


# --- vectors --------------------------------------------------------------------------------


def test_handshake_info_layout_vector() -> None:
    """§9.2: peer_type 0 omits field 2 (202 bytes); 1 and 2 insert ``10 01`` / ``10 02``."""
    assert ONE.address == "lumera10e0525sfrf53yh2aljmm3sn9jq5njk7lulvawr"
    eph, account = ephemeral_public_bytes(CLIENT_EPH), ONE.public_key.to_any()
    info = HandshakeInfo(ONE.address, 0, eph, account).encode()
    assert len(info) == 202
    assert info == INFO_TYPE0
    for peer_type, field in ((PeerType.SIMPLENODE, "1001"), (PeerType.SUPERNODE, "1002")):
        encoded = HandshakeInfo(ONE.address, peer_type, eph, account).encode()
        assert len(encoded) == 204
        assert encoded == INFO_TYPE0[:47] + bytes.fromhex(field) + INFO_TYPE0[47:]
        assert create_request(ONE, peer_type, CLIENT_EPH)[0] == encoded


def test_peer_type_values_are_gos() -> None:
    """Go: ``Simplenode PeerType = iota`` after another constant of the block, so 1 and 2."""
    assert int(PeerType.SIMPLENODE) == 1
    assert int(PeerType.SUPERNODE) == 2
    assert {int(t) for t in PeerType} == {1, 2}


def test_legacy_any_vector() -> None:
    legacy = PublicKey(ONE.public_key.compressed, KeyType.SECP256K1)
    assert legacy.to_any().hex() == (
        "0a1f2f636f736d6f732e63727970746f2e736563703235366b312e5075624b657912230a210279be667e"
        "f9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    )


def test_message_framing_vector() -> None:
    framed = encode_message(b"handshake-data", b"signature-data")
    assert framed.hex() == (
        "0000000e68616e647368616b652d646174610000000e7369676e61747572652d64617461"
    )
    info, sig = create_request(ONE, PeerType.SUPERNODE, CLIENT_EPH)
    wire = encode_message(info, sig)
    assert wire[:4].hex() == "000000cc" and wire[208:212].hex() == "00000041"
    assert len(wire) == 277  # every Go session's HS (secure vectors README)


def test_key_schedule_vector() -> None:
    assert ephemeral_public_bytes(CLIENT_EPH).hex() == (
        "04149c58d7b80fe7510afd51a3bb09ce8d1aaa337404467e076d29ac865ff9d42a41fa6f24e4b689"
        "8a0bec839e9c5de6840570ed963aff341f89ddfd7daf6c9ce3"
    )
    assert ephemeral_public_bytes(SERVER_EPH).hex() == (
        "049352cff3b5e19b13bba05bf563654119765ebd59397bcd4095cfe45bba9de8165abf89c2c81153"
        "998d7e680dbace4162598fc1f0da132d9561aeebb7517e94a6"
    )
    z = shared_secret(CLIENT_EPH, SERVER_EPH.public_key())
    assert z == shared_secret(SERVER_EPH, CLIENT_EPH.public_key())
    assert z.hex() == "8673ce556edb5dc75f3ea31702693490bf8d382912f960f2725c44545c4f5e7c"
    info = hkdf_info(TEST_ADDRESS_1, TEST_ADDRESS_2)
    assert info == (
        b"ALTSRP_XCHACHA20_POLY1305_REKEY-lumera1zvnc27832srgxa207y5hu2agy83wazfzurufyp"
        b"-lumera1evlkjnp072q8u0yftk65ualx49j6mdz66p2073"
    )
    key = expand_key(z, info)
    assert key.hex() == (
        "0a35c39b550cefeddead2bb88eee392b844af1eed6a68f32bb7c6b6fbfadbc27"
        "8330cb1f153667386ea79eb3dc3e520155c1f9f5cfbe2a70"
    )
    assert RecordCrypto(key, Side.CLIENT).seal(b"ping").hex() == (
        "1800000006000000f7aee963b551a2f305366b0c9d5f585681500974"
    )


def test_expand_key_truncation_branch() -> None:
    # Go returns the secret itself when it is long enough (never with P-256).
    secret = bytes(range(60))
    assert expand_key(secret, b"info") == secret[:56]


def test_signature_is_eth_style_over_exact_bytes() -> None:
    info, sig = create_request(ONE, PeerType.SIMPLENODE, CLIENT_EPH)
    assert len(sig) == 65 and sig[64] in (0, 1)
    ONE.public_key.verify(info, sig)


# --- parsing --------------------------------------------------------------------------------


def test_parse_round_trip_go_test_case() -> None:
    info = HandshakeInfo("127.0.0.1:8080", 1, b"public-key", b"", "curve-name")
    assert HandshakeInfo.decode(info.encode()) == info


@pytest.mark.parametrize("raw", [b"", b"invalid-handshake", b"\x0a\x05abc", b"\x80"])
def test_parse_rejects_garbage(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        HandshakeInfo.decode(raw)


def test_parse_follows_go_semantics() -> None:
    base = HandshakeInfo("a", 1, b"pk", b"acc", "P256").encode()
    # Unknown fields (varint, fixed, length-delimited) are skipped.
    extra = protowire.field_varint(9, 7) + b"\x61" + bytes(8) + protowire.field_bytes(15, b"x")
    assert HandshakeInfo.decode(base + extra) == HandshakeInfo.decode(base)
    # The last occurrence wins.
    assert HandshakeInfo.decode(base + protowire.field_bytes(1, b"b")).address == "b"
    # A known field with the wrong wire type is an error, wherever it appears.
    with pytest.raises(ProtocolError, match="wire type"):
        HandshakeInfo.decode(protowire.field_bytes(2, b"1") + base)
    with pytest.raises(ProtocolError, match="wire type"):
        HandshakeInfo.decode(base + protowire.field_varint(3, 1))
    # int32 peer_type: -1 (10-byte varint) and values truncated to 32 bits, as Go decodes.
    minus_one = protowire.field_varint(2, (1 << 64) - 1)
    assert HandshakeInfo.decode(base + minus_one).peer_type == -1
    assert HandshakeInfo.decode(base + protowire.field_varint(2, (1 << 32) + 1)).peer_type == 1
    # Strings are not UTF-8 checked by gogoproto; an invalid one just never matches.
    assert HandshakeInfo.decode(protowire.field_bytes(1, b"\xff")).address != "\xff"


async def test_read_message_round_trip() -> None:
    framed = encode_message(b"info-bytes", b"sig")
    assert await read_message(feed(framed)) == (b"info-bytes", b"sig")


async def test_read_message_truncated_at_every_offset() -> None:
    info, sig, _ = message_for(ONE)
    framed = encode_message(info, sig)
    for cut in range(len(framed)):
        with pytest.raises(ProtocolError, match="truncated handshake"):
            await read_message(feed(framed[:cut]))


@pytest.mark.parametrize(
    ("framed", "match"),
    [
        (b"\x00\x00\x00\x00", "length 0"),
        (b"\xff\xff\xff\xff", "exceeds our limit"),
        ((MAX_HANDSHAKE_INFO + 1).to_bytes(4, "big"), "exceeds our limit"),
        (b"\x00\x00\x00\x01x\x00\x00\x00\x00", "signature \\(length 0\\)"),
        (b"\x00\x00\x00\x01x" + (MAX_SIGNATURE + 1).to_bytes(4, "big"), "exceeds our limit"),
    ],
)
async def test_read_message_bounds(framed: bytes, match: str) -> None:
    # No body follows the bad length: the check happens before any read or allocation.
    with pytest.raises(ProtocolError, match=match):
        await read_message(feed(framed))


async def test_read_message_accepts_the_bounds() -> None:
    framed = encode_message(b"i" * MAX_HANDSHAKE_INFO, b"s" * MAX_SIGNATURE)
    info, sig = await read_message(feed(framed))
    assert len(info) == MAX_HANDSHAKE_INFO and len(sig) == MAX_SIGNATURE


# --- verification, in Go's order ------------------------------------------------------------


class SplitVerifier:
    """Separate supernode and account lists, to see which check a peer type selects."""

    def __init__(self, supernodes: set[str], accounts: set[str], fail: bool = False) -> None:
        self.supernodes, self.accounts, self.fail = supernodes, accounts, fail
        self.calls: list[tuple[str, str]] = []

    async def is_registered_supernode(self, address: str) -> bool:
        self.calls.append(("supernode", address))
        if self.fail:
            raise ConnectionRefusedError("chain unreachable")
        return address in self.supernodes

    async def account_exists(self, address: str) -> bool:
        self.calls.append(("account", address))
        if self.fail:
            raise ConnectionRefusedError("chain unreachable")
        return address in self.accounts


async def verify(info: bytes, sig: bytes, verifier: PeerVerifier) -> VerifiedPeer:
    return await verify_peer(HandshakeInfo.decode(info), info, sig, verifier)


async def test_verify_accepts_a_good_message() -> None:
    key = make_key("peer")
    info, sig, eph = message_for(key)
    peer = await verify_peer(
        HandshakeInfo.decode(info), info, sig, StaticPeerVerifier([key.address])
    )
    assert peer.address == key.address
    assert peer.peer_type is PeerType.SUPERNODE
    assert peer.account_key == key.public_key
    assert ephemeral_public_point(peer.ephemeral_public) == ephemeral_public_bytes(eph)


def ephemeral_public_point(key: PeerPublicKey) -> bytes:
    return key.encoded()


async def test_peer_type_selects_the_chain_check() -> None:
    key = make_key("peer")
    only_account = SplitVerifier(supernodes=set(), accounts={key.address})
    info, sig, _ = message_for(key, PeerType.SIMPLENODE)
    await verify(info, sig, only_account)
    assert only_account.calls == [("account", key.address)]
    info, sig, _ = message_for(key, PeerType.SUPERNODE)
    with pytest.raises(ProtocolError, match="not a registered supernode"):
        await verify(info, sig, only_account)


async def test_unregistered_peer() -> None:
    key = make_key("stranger")
    info, sig, _ = message_for(key)
    with pytest.raises(ProtocolError, match="not a registered supernode"):
        await verify(info, sig, StaticPeerVerifier([]))
    info, sig, _ = message_for(key, PeerType.SIMPLENODE)
    with pytest.raises(ProtocolError, match="not an existing account"):
        await verify(info, sig, StaticPeerVerifier([]))


async def test_chain_failure_rejects() -> None:
    key = make_key("peer")
    info, sig, _ = message_for(key)
    with pytest.raises(ProtocolError, match="could not verify"):
        await verify(info, sig, SplitVerifier(set(), set(), fail=True))


async def test_chain_query_timeout_rejects() -> None:
    class Hanging:
        async def is_registered_supernode(self, address: str) -> bool:
            await asyncio.sleep(10)
            return True

        async def account_exists(self, address: str) -> bool:
            return True

    key = make_key("peer")
    info, sig, _ = message_for(key)
    with pytest.raises(ProtocolError, match="could not verify"):
        await verify_peer(HandshakeInfo.decode(info), info, sig, Hanging(), chain_timeout=0.05)


async def test_account_key_not_matching_claimed_address() -> None:
    claimed, actual = make_key("claimed"), make_key("actual")
    info = HandshakeInfo(
        claimed.address,
        PeerType.SUPERNODE,
        ephemeral_public_bytes(CLIENT_EPH),
        actual.public_key.to_any(),
    ).encode()
    verifier = SplitVerifier({claimed.address, actual.address}, set())
    with pytest.raises(ProtocolError, match="address mismatch"):
        await verify(info, actual.sign(info), verifier)
    assert verifier.calls == []  # rejected before any chain query


async def test_bad_signatures() -> None:
    key, other = make_key("peer"), make_key("other")
    verifier = SplitVerifier({key.address}, set())
    info, sig, _ = message_for(key)
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    for bad in (flipped, other.sign(info), sig[:63], sig + b"\x00", b"\x00" * 65):
        with pytest.raises(ProtocolError, match="signature"):
            await verify(info, bad, verifier)
    # Same signature over different bytes (one field re-encoded) fails too.
    with pytest.raises(ProtocolError, match="signature"):
        await verify(info + protowire.field_bytes(9, b""), sig, verifier)
    # High-S form of a valid signature: Go (libsecp256k1) refuses it.
    s = int.from_bytes(sig[32:64], "big")
    high_s = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    with pytest.raises(ProtocolError, match="high S"):
        await verify(info, high_s, verifier)
    assert verifier.calls == []
    # v is ignored (Go drops it), and 64-byte r‖s is accepted.
    await verify(info, sig[:64], verifier)
    await verify(info, sig[:64] + b"\x07", verifier)


async def test_legacy_secp256k1_account_accepted() -> None:
    secret = hashlib.sha256(b"legacy").digest()
    legacy_pub = PublicKey(coincurve.PrivateKey(secret).public_key.format(), KeyType.SECP256K1)
    info = HandshakeInfo(
        legacy_pub.address,
        PeerType.SUPERNODE,
        ephemeral_public_bytes(CLIENT_EPH),
        legacy_pub.to_any(),
    ).encode()
    der = coincurve.PrivateKey(secret).sign(hashlib.sha256(info).digest(), hasher=None)
    r, s = decode_dss_signature(der)
    s = min(s, SECP256K1_N - s)
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    peer = await verify(info, sig, StaticPeerVerifier([legacy_pub.address]))
    assert peer.address == legacy_pub.address


@pytest.mark.parametrize("peer_type", [0, 3, -1, 0x7FFFFFFF])
async def test_invalid_peer_type(peer_type: int) -> None:
    key = make_key("peer")
    raw = HandshakeInfo(
        key.address, peer_type, ephemeral_public_bytes(CLIENT_EPH), key.public_key.to_any()
    ).encode()
    verifier = SplitVerifier({key.address}, {key.address})
    with pytest.raises(ProtocolError, match=f"^invalid remote peer type: {peer_type}$"):
        await verify(raw, key.sign(raw), verifier)
    assert verifier.calls == []


@pytest.mark.parametrize(
    ("public_key", "match"),
    [
        (b"", "uncompressed"),
        (b"\x02" + bytes(32), "uncompressed"),  # compressed form: Go's NewPublicKey refuses it
        (b"\x04" + bytes(64), "not a point"),
        (b"\x05" + bytes(64), "uncompressed"),
        (b"\x04" + b"\xff" * 64, "not a point"),
    ],
)
async def test_bad_ephemeral_key(public_key: bytes, match: str) -> None:
    key = make_key("peer")
    raw = HandshakeInfo(
        key.address, PeerType.SUPERNODE, public_key, key.public_key.to_any()
    ).encode()
    with pytest.raises(ProtocolError, match=match):
        await verify(raw, key.sign(raw), StaticPeerVerifier([key.address]))


async def test_compressed_ephemeral_of_a_real_point_refused() -> None:
    key = make_key("peer")
    point = ephemeral_public_bytes(CLIENT_EPH)
    compressed = bytes([2 + (point[-1] & 1)]) + point[1:33]
    raw = HandshakeInfo(
        key.address, PeerType.SUPERNODE, compressed, key.public_key.to_any()
    ).encode()
    with pytest.raises(ProtocolError, match="uncompressed"):
        await verify(raw, key.sign(raw), StaticPeerVerifier([key.address]))


@pytest.mark.parametrize(
    ("account_any", "match"),
    [
        (b"", "no account public key"),
        (b"\x0a\x03abc", "account public key"),
        (protowire.encode_any("/cosmos.crypto.ed25519.PubKey", b"\x0a\x20" + bytes(32)), "key"),
        (b"\xff", "account public key"),
    ],
)
async def test_bad_account_key(account_any: bytes, match: str) -> None:
    key = make_key("peer")
    raw = HandshakeInfo(
        key.address, PeerType.SUPERNODE, ephemeral_public_bytes(CLIENT_EPH), account_any
    ).encode()
    with pytest.raises(ProtocolError, match=match):
        await verify(raw, key.sign(raw), StaticPeerVerifier([key.address]))


async def test_go_order_chain_check_before_ephemeral_key() -> None:
    """An unregistered peer with a broken ephemeral key is refused for being unregistered."""
    key = make_key("peer")
    raw = HandshakeInfo(
        key.address, PeerType.SUPERNODE, b"\x04" + bytes(64), key.public_key.to_any()
    ).encode()
    with pytest.raises(ProtocolError, match="not a registered supernode"):
        await verify(raw, key.sign(raw), StaticPeerVerifier([]))


def test_static_verifier_refuses_a_single_string() -> None:
    with pytest.raises(TypeError):
        StaticPeerVerifier("lumera1abc")
