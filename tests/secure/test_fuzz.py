"""Fuzzing the two parsers that read attacker bytes: the record decoder and the handshake.

Properties: random or mutated input yields only ``ProtocolError`` (never another exception),
never a hang (no await is left waiting: input ends with EOF), memory stays bounded, and a
mutated record stream never yields plaintext that was not sent.
"""

from __future__ import annotations

import asyncio
import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import ProtocolError
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.secure.handshake import (
    HandshakeInfo,
    PeerType,
    StaticPeerVerifier,
    create_request,
    encode_message,
    generate_ephemeral,
    read_message,
    verify_peer,
)
from lumera_p2p.secure.record import (
    FAST_PATH_MIN,
    MAX_BUFFER,
    RecordCrypto,
    RecordReader,
    RecordWriter,
    Side,
)

from .conftest import make_key

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = bytes(range(56))
PEER: PrivateKey = make_key("fuzz peer")
MESSAGES = [b"", b"hello", bytes(5000), bytes(range(256)) * 80]  # last one takes the fast path
assert len(MESSAGES[-1]) >= FAST_PATH_MIN


def valid_stream() -> tuple[bytes, bytes]:
    writer = RecordWriter(RecordCrypto(KEY, Side.CLIENT))
    return b"".join(writer.seal_all(m) for m in MESSAGES), b"".join(MESSAGES)


VALID_STREAM, VALID_PLAINTEXT = valid_stream()


def run_reader(data: bytes, splits: list[int]) -> bytes:
    """Feed ``data`` in pieces, reading after each; return the plaintext obtained."""
    reader = RecordReader(RecordCrypto(KEY, Side.SERVER))
    out = bytearray()
    cuts = sorted({min(s, len(data)) for s in splits} | {len(data)})
    start = 0
    try:
        for cut in cuts:
            reader.feed(data[start:cut])
            start = cut
            while (chunk := reader.read(1 << 20)) is not None:
                out += chunk
            assert reader.capacity <= MAX_BUFFER
    except ProtocolError:
        pass
    return bytes(out)


@FUZZ
@given(data=st.binary(max_size=4096), splits=st.lists(st.integers(0, 4096), max_size=8))
def test_record_decoder_random_bytes(data: bytes, splits: list[int]) -> None:
    run_reader(data, splits)


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[pos:]
    return bytes(data)


@FUZZ
@given(data=mutated(VALID_STREAM), splits=st.lists(st.integers(0, 30_000), max_size=6))
def test_record_decoder_mutated_stream(data: bytes, splits: list[int]) -> None:
    plaintext = run_reader(data, splits)
    # Whatever got through is a prefix of what was really sent: nothing forged, nothing reordered.
    assert VALID_PLAINTEXT.startswith(plaintext)


@FUZZ
@given(data=st.binary(max_size=600))
def test_handshake_info_parser(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        HandshakeInfo.decode(data)


async def read_and_verify(data: bytes, verifier: StaticPeerVerifier) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    async with asyncio.timeout(5):  # EOF is fed, so nothing may wait
        info, sig = await read_message(reader)
        await verify_peer(HandshakeInfo.decode(info), info, sig, verifier)


def handshake_outcome(data: bytes) -> str:
    verifier = StaticPeerVerifier([PEER.address])
    try:
        asyncio.run(read_and_verify(data, verifier))
    except ProtocolError:
        return "rejected"
    return "accepted"


VALID_HANDSHAKE = encode_message(*create_request(PEER, PeerType.SUPERNODE, generate_ephemeral()))


@FUZZ
@given(data=st.binary(max_size=400))
def test_handshake_random_bytes(data: bytes) -> None:
    assert handshake_outcome(data) == "rejected"


@FUZZ
@given(data=mutated(VALID_HANDSHAKE))
def test_handshake_mutated_message(data: bytes) -> None:
    # Only ProtocolError escapes; a mutation may be harmless (the signature's v byte, say).
    handshake_outcome(data)


def test_unmutated_handshake_is_accepted() -> None:
    assert handshake_outcome(VALID_HANDSHAKE) == "accepted"
