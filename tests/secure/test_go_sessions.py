"""Replay every secure session recorded from the Go supernode, byte for byte, offline.

For each file of ``shared/vectors/secure`` (the folder is listed, so new files join by
themselves): both handshake messages parse to the recorded fields and their signatures check;
our own handshake drivers, given the recorded identities and ephemeral keys, write Go's exact
bytes and derive Go's exact key material; every record frame decrypts in both directions and
re-encrypts to the same bytes when cut as Go cuts (4,072-byte plaintexts); every Kademlia
message decodes to what Go decoded. Sessions Go refused are refused by our receiver for the
reason Go gave, after answering with the same HS2 (Go answers before it verifies, and so do we).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lumera_p2p.errors import ProtocolError
from lumera_p2p.identity.keys import PublicKey
from lumera_p2p.kademlia.node import hash_id
from lumera_p2p.secure.handshake import (
    HandshakeInfo,
    PeerType,
    client_handshake,
    create_request,
    encode_message,
    ephemeral_public_bytes,
    expand_key,
    hkdf_info,
    read_message,
    server_handshake,
    shared_secret,
    verify_peer,
)
from lumera_p2p.secure.record import (
    FRAME_OVERHEAD,
    GO_PAYLOAD,
    KEY_SIZE,
    RecordCrypto,
    RecordReader,
    Side,
    mask_nonce,
)
from lumera_p2p.wire import messages as kademlia_wire
from lumera_p2p.wire.gob import TypeTable
from lumera_p2p.wire.messages import GO_MESSAGE, Message, decode_message

from .go_sessions import (
    Session,
    SplitVerifier,
    assert_as_go_decoded,
    go_writes,
    session_files,
    session_params,
)

DIRECTIONS = ("client_to_server", "server_to_client")
#: Which side seals the frames of a direction.
SENDER = {"client_to_server": Side.CLIENT, "server_to_client": Side.SERVER}
RECEIVER = {"client_to_server": Side.SERVER, "server_to_client": Side.CLIENT}


@pytest.fixture(params=session_params())
def session(request: pytest.FixtureRequest) -> Session:
    path: Path = request.param
    return Session(path)


def feed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


class Capture:
    """A writer that keeps every write, to compare with Go's socket writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))


# --- identities and handshake messages ---------------------------------------------------------


def test_identities_and_ephemeral_keys(session: Session) -> None:
    for party in (session.client, session.server):
        assert party.key.address == party.address
        assert (
            party.key.public_key.compressed.hex() == party.raw["account_public_key_compressed_hex"]
        )
        assert party.scalar_matches_derivation()
        assert (
            ephemeral_public_bytes(party.ephemeral).hex() == party.raw["ephemeral_public_key_hex"]
        )


@pytest.mark.parametrize("side", ["client", "server"])
async def test_handshake_message_parses_to_the_recorded_fields(session: Session, side: str) -> None:
    party = session.client if side == "client" else session.server
    wire = session.hs1 if side == "client" else session.hs2
    hello = session.hello[f"{side}_hello"]
    reader = feed(wire)
    info, signature = await read_message(reader)
    assert await reader.read() == b""  # one Write, exactly one message
    assert encode_message(info, signature) == wire
    assert info.hex() == hello["handshake_info_hex"]
    assert signature.hex() == hello["signature_hex"]
    assert len(signature) == 65
    parsed = HandshakeInfo.decode(info)
    go = hello["parsed"]
    assert parsed.address == go["address"] == party.address
    assert parsed.peer_type == go["peer_type"] == party.peer_type_on_wire
    assert parsed.public_key.hex() == go["public_key_hex"] == party.raw["ephemeral_public_key_hex"]
    assert parsed.account_public_key.hex() == go["account_public_key_any_hex"]
    assert parsed.curve == go["curve"]
    account = PublicKey.from_any(parsed.account_public_key)
    assert account.compressed.hex() == party.raw["account_public_key_compressed_hex"]
    # proto3 omits a zero peer_type: 204 bytes with the field, 202 without (README, step 1).
    assert len(info) == (204 if parsed.peer_type else 202)


@pytest.mark.parametrize("side", ["client", "server"])
async def test_signature_checks_as_go_decided(session: Session, side: str) -> None:
    party = session.client if side == "client" else session.server
    hello = session.hello[f"{side}_hello"]
    info, signature = (
        bytes.fromhex(hello["handshake_info_hex"]),
        bytes.fromhex(hello["signature_hex"]),
    )
    account = PublicKey.from_any(HandshakeInfo.decode(info).account_public_key)
    if "signature" in session.refusal_of_hello(side):
        with pytest.raises(Exception, match="signature"):
            account.verify(info, signature)
        return
    account.verify(info, signature)
    # RFC 6979: our signature over the same bytes is Go's, all 65 bytes (v included).
    assert party.key.sign(info) == signature


@pytest.mark.parametrize("side", ["client", "server"])
def test_we_build_gos_handshake_message(session: Session, side: str) -> None:
    """From the recorded account and ephemeral key, ``create_request`` writes Go's bytes."""
    party = session.client if side == "client" else session.server
    hello = session.hello[f"{side}_hello"]
    if "mutation" in hello:
        # Go's own message is the one from before the mutation; ours must be that one.
        want = encode_message(
            bytes.fromhex(hello["original_handshake_info_hex_before_mutation"]),
            bytes.fromhex(hello["original_signature_hex_before_mutation"]),
        )
        peer_type = PeerType(party.peer_type_configured)
    else:
        want = session.hs1 if side == "client" else session.hs2
        peer_type = PeerType(party.peer_type_on_wire)
    assert encode_message(*create_request(party.key, peer_type, party.ephemeral)) == want


# --- key schedule and our handshake drivers ----------------------------------------------------


def test_key_schedule(session: Session) -> None:
    keys = session.data["session_keys"]
    client, server = session.client, session.server
    z = shared_secret(client.ephemeral, server.ephemeral.public_key())
    assert z == shared_secret(server.ephemeral, client.ephemeral.public_key())
    assert z.hex() == keys["ecdh_shared_secret_hex"]
    info = hkdf_info(client.address, server.address)
    assert info.decode() == keys["hkdf_info_ascii"]
    material = expand_key(z, info)
    assert material == session.key_material
    assert material[:KEY_SIZE].hex() == keys["aead_key_hex"]
    assert material[KEY_SIZE:].hex() == keys["nonce_mask_24_hex"]


async def test_our_server_handshake_replays_go(session: Session) -> None:
    """Our server, fed Go's HS1, answers with Go's HS2 and then accepts or refuses as Go did."""
    server = session.server
    out = Capture()
    handshake = server_handshake(
        feed(session.hs1),
        out,
        server.key,
        session.verifier(),
        peer_type=PeerType(server.peer_type_on_wire),
        ephemeral=server.ephemeral,
    )
    if session.refused_by == "server":
        with pytest.raises(ProtocolError) as refused:
            await handshake
        assert session.refused_for_gos_reason(str(refused.value)), (
            session.go_reason,
            str(refused.value),
        )
    else:
        result = await handshake
        assert result.key_material == session.key_material
        assert result.peer_address == session.client.address
        assert int(result.peer_type) == session.client.peer_type_on_wire
    assert out.writes == [session.hs2]  # sent before verifying, in one write, as Go does


async def test_our_client_handshake_replays_go(session: Session) -> None:
    """Our client, with the recorded keys, writes Go's (unmutated) HS1 and derives Go's key."""
    client = session.client
    out = Capture()
    handshake = client_handshake(
        feed(session.hs2),
        out,
        client.key,
        session.server.address,
        session.verifier(),
        peer_type=PeerType(client.peer_type_configured),
        ephemeral=client.ephemeral,
    )
    if session.refused_by == "client":
        with pytest.raises(ProtocolError) as refused:
            await handshake
        assert session.refused_for_gos_reason(str(refused.value)), (
            session.go_reason,
            str(refused.value),
        )
        return
    result = await handshake
    assert result.key_material == session.key_material
    assert result.peer_address == session.server.address
    hello = session.hello["client_hello"]
    original = hello.get("original_handshake_info_hex_before_mutation", hello["handshake_info_hex"])
    assert out.writes[0][4 : 4 + len(original) // 2].hex() == original
    if "mutation" not in hello:
        assert out.writes == [session.hs1]


async def test_simplenode_needs_only_an_account() -> None:
    """A peer_type 1 client is checked with ``AccountInfo`` alone (vector 03's point)."""
    simplenodes = [
        one
        for one in map(Session, session_files())
        if one.client.peer_type_on_wire == PeerType.SIMPLENODE
    ]
    if not simplenodes:
        pytest.skip("no recorded session with a Simplenode client")
    for one in simplenodes:
        info, signature = await read_message(feed(one.hs1))
        parsed = HandshakeInfo.decode(info)
        client = one.client.address
        account_only = SplitVerifier(supernodes=set(), accounts={client})
        peer = await verify_peer(parsed, info, signature, account_only)
        assert peer.peer_type is PeerType.SIMPLENODE
        supernode_only = SplitVerifier(supernodes={client}, accounts=set())
        with pytest.raises(ProtocolError, match="account cannot be verified"):
            await verify_peer(parsed, info, signature, supernode_only)


# --- record layer ------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_frames_match_the_recorded_layout(session: Session, direction: str) -> None:
    chunks = session.chunks(direction)[1:]
    recorded = session.data["record_frames"][direction] or []  # null: no frames
    mask = session.key_material[KEY_SIZE:]
    found: list[dict[str, Any]] = []
    for index, chunk in enumerate(chunks, start=1):
        offset = 0
        while offset < len(chunk):  # a chunk holds whole frames only
            length = int.from_bytes(chunk[offset : offset + 4], "little")
            assert int.from_bytes(chunk[offset + 4 : offset + 8], "little") == 6
            total = 4 + length
            assert offset + total <= len(chunk)
            found.append(
                {"chunk": index, "offset_in_chunk": offset, "frame_total_len": total}
                | {"plaintext_len": total - FRAME_OVERHEAD}
            )
            assert total - FRAME_OVERHEAD <= GO_PAYLOAD  # Go's 4,096-byte frames
            offset += total
    assert len(found) == len(recorded)
    side_bit = 0x80 if SENDER[direction] is Side.SERVER else 0
    for n, (ours, go) in enumerate(zip(found, recorded, strict=True)):
        assert ours == {k: go[k] for k in ours}
        counter = n.to_bytes(11, "little") + bytes([side_bit])
        assert go["counter_hex"] == counter.hex()
        assert go["nonce_hex"] == mask_nonce(counter, mask).hex()


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("piece", [1, 1000, 1 << 20])
def test_every_frame_decrypts(session: Session, direction: str, piece: int) -> None:
    """Our receiver opens the direction's frames, however the bytes arrive."""
    stream = b"".join(session.chunks(direction)[1:])
    reader = RecordReader(RecordCrypto(session.key_material, RECEIVER[direction]))
    plaintext = bytearray()
    for i in range(0, len(stream), piece):
        reader.feed(stream[i : i + piece])
        while (data := reader.read(1 << 20)) is not None:
            plaintext += data
    assert reader.at_frame_boundary()
    assert bytes(plaintext) == b"".join(m.plaintext for m in session.messages(direction))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_frames_re_encrypt_byte_exact(session: Session, direction: str) -> None:
    """Each application ``Write`` re-sealed as Go cuts it gives the recorded socket writes."""
    chunks = session.chunks(direction)[1:]
    crypto = RecordCrypto(session.key_material, SENDER[direction])
    for message in session.messages(direction):
        writes = go_writes(crypto, message.plaintext)
        assert chunks[: len(writes)] == writes, message.kind
        del chunks[: len(writes)]
    assert chunks == []  # nothing on the wire that no Write explains


# --- application layer -------------------------------------------------------------------------


def encode_with_history(sessions: list[Session]) -> dict[tuple[str, int], bytes]:
    """Our encoding of every Kademlia message, numbering gob types across ``sessions`` in order.

    Go assigns gob type ids once per process (the README's gob_note), so one table carried
    through the given sessions models one Go process that ran them in that order.
    """
    table = TypeTable()
    out: dict[tuple[str, int], bytes] = {}
    for one in sessions:
        for i, message in enumerate(one.messages()):
            if message.decoded_by_go is not None:
                out[one.name, i] = kademlia_wire.encode_message(
                    decode_message(message.plaintext), types=table
                )
    return out


@pytest.fixture(scope="module")
def one_go_process() -> dict[tuple[str, int], bytes]:
    """Every file's messages as one generator process wrote them: all files, in name order."""
    return encode_with_history([Session(path) for path in session_files()])


def test_kademlia_messages_decode_to_what_go_decoded(
    session: Session, one_go_process: dict[tuple[str, int], bytes]
) -> None:
    alone = encode_with_history([session])
    for i, message in enumerate(session.messages()):
        go = message.decoded_by_go
        if go is None:
            continue
        decoded = decode_message(message.plaintext)
        assert_as_go_decoded(go, decoded, GO_MESSAGE, message.kind)
        # And our encoder writes Go's exact bytes once it numbers gob types as that Go process
        # did: either one process for all files in order (what the README says), or a fresh
        # process for this file. Nothing else about the history is known.
        assert message.plaintext in (one_go_process[session.name, i], alone[session.name, i]), (
            f"{message.kind}: our gob bytes differ from Go's under both type-id histories"
        )


def test_kademlia_senders_and_receivers(session: Session) -> None:
    """Who is who in the decoded messages: the handshake identities, advertised versions."""
    for message in session.messages():
        if message.decoded_by_go is None:
            continue
        decoded = decode_message(message.plaintext)
        assert isinstance(decoded, Message)
        assert decoded.sender is not None and decoded.receiver is not None
        client, server = session.client.address.encode(), session.server.address.encode()
        if message.direction == "client_to_server":
            assert (decoded.sender.id, decoded.receiver.id) == (client, server)
        else:
            assert (decoded.sender.id, decoded.receiver.id) == (server, client)
        assert decoded.sender.version  # Go always advertises one
        if decoded.receiver.hashed_id:
            assert decoded.receiver.hashed_id == hash_id(decoded.receiver.id)
