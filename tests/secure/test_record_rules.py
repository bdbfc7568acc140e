"""The record layer's edges: the handshake-to-records hand-over, the receive buffer's
compaction, growth and shrinking, gathering of small frames, and each error's wording."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from lumera_p2p.errors import ProtocolError
from lumera_p2p.secure import record
from lumera_p2p.secure.record import (
    FAST_PATH_MIN,
    FRAME_OVERHEAD,
    GO_PAYLOAD,
    HEADER_SIZE,
    HIGH_WATER,
    INITIAL_BUFFER,
    MAX_BUFFER,
    MAX_FRAME_LEN,
    MAX_PAYLOAD,
    MIN_FRAME_LEN,
    MIN_READ,
    TAG_SIZE,
    Counter,
    CounterExhaustedError,
    RecordCrypto,
    RecordReader,
    RecordWriter,
    Side,
    counter_side,
    xchacha_seal,
)

K56 = bytes(range(56))


def pair() -> tuple[RecordCrypto, RecordReader]:
    return RecordCrypto(K56, Side.CLIENT), RecordReader(RecordCrypto(K56, Side.SERVER))


def drain(reader: RecordReader, n: int = 1 << 22) -> bytes:
    out = bytearray()
    while (chunk := reader.read(n)) is not None:
        out += chunk
    return bytes(out)


@pytest.fixture(params=[True, False], ids=["openssl+libsodium", "libsodium-only"])
def both_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    if not request.param:
        monkeypatch.setattr(record, "_HAVE_INTO", False)
    return bool(request.param)


# --- constants Go fixes ---------------------------------------------------------------------


def test_frame_geometry() -> None:
    assert (HEADER_SIZE, TAG_SIZE, FRAME_OVERHEAD) == (8, 16, 24)
    assert MIN_FRAME_LEN == 20
    assert MAX_FRAME_LEN == 1 << 20
    assert MAX_PAYLOAD == (1 << 20) - 20
    assert GO_PAYLOAD == 4096 - 24


# --- counters -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 11, 13])
def test_counter_needs_twelve_bytes(size: int) -> None:
    with pytest.raises(ValueError, match=f"a counter has 12 bytes, got {size}"):
        Counter(bytes(size))


@pytest.mark.parametrize("overflow_len", [0, 13])
def test_counter_overflow_length_is_bounded(overflow_len: int) -> None:
    with pytest.raises(ValueError, match=r"overflow_len must be 1\.\.12"):
        Counter(bytes(12), overflow_len)


def test_counter_extreme_overflow_lengths() -> None:
    one = Counter(bytes.fromhex("fe" + "00" * 10 + "80"), overflow_len=1)
    one.inc()
    assert one.value().hex() == "ff" + "00" * 10 + "80"
    one.inc()
    assert one.invalid
    whole = Counter(bytes.fromhex("ff" * 11 + "7f"), overflow_len=12)
    whole.inc()
    assert whole.value().hex() == "00" * 11 + "80"  # carries through all twelve bytes
    assert whole.as_int() == 0x80 << 88


def test_counter_values_and_sides() -> None:
    assert Counter.outgoing(Side.SERVER).value() == bytes(11) + b"\x80"
    assert Counter.outgoing(Side.CLIENT).value() == bytes(12)
    assert Counter.incoming(Side.CLIENT).value() == bytes(11) + b"\x80"
    assert Counter.incoming(Side.SERVER).value() == bytes(12)
    assert counter_side(bytes(11) + b"\x7f") is Side.CLIENT
    assert counter_side(bytes(11) + b"\x80") is Side.SERVER
    assert counter_side(b"\xff" * 11 + b"\x00") is Side.CLIENT
    exhausted = Counter(bytes.fromhex("ff" * 8 + "00" * 4))
    exhausted.inc()
    with pytest.raises(CounterExhaustedError, match=r"exhausted \(2\*\*64 frames"):
        exhausted.as_int()
    assert isinstance(CounterExhaustedError("x"), ProtocolError)


# --- the AEAD -------------------------------------------------------------------------------


def test_xchacha_seal_without_aad_matches_libsodium() -> None:
    key, nonce = os.urandom(32), os.urandom(24)
    for size in (0, 1, 100):
        plaintext = os.urandom(size)
        expected = crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, None, nonce, key)
        assert xchacha_seal(key, nonce, plaintext) == expected


def test_key_material_longer_than_needed_uses_its_first_44_bytes() -> None:
    def first_frame(material: bytes) -> bytes:
        return RecordCrypto(material, Side.CLIENT).seal(b"x")

    reference = first_frame(K56)
    assert first_frame(K56 + b"extra") == reference
    assert first_frame(K56[:44] + bytes(12)) == reference  # mask bytes 12..23 are unused
    assert first_frame(K56[:43] + b"\xff" + K56[44:]) != reference  # mask byte 11 is used
    assert first_frame(K56[:31] + b"\xff" + K56[32:]) != reference  # and the key's last byte
    with pytest.raises(ValueError, match="key material must be 56 bytes"):
        RecordCrypto(K56[:55], Side.CLIENT)


def test_frames_open_only_in_order(both_paths: bool) -> None:
    for size in (10, FAST_PATH_MIN):
        payload = os.urandom(size)
        sender = RecordCrypto(K56, Side.CLIENT)
        a, b = sender.seal(payload), sender.seal(payload)
        assert a != b  # a new nonce each frame
        opener = RecordCrypto(K56, Side.SERVER)
        with pytest.raises(ProtocolError, match="failed authentication"):
            opener.open(b)
        # The refused frame did not move the counter on: a, then b, still open.
        assert opener.open(a) == payload
        assert opener.open(b) == payload


# --- RecordCrypto.open ----------------------------------------------------------------------


def test_open_checks_the_frame_before_the_crypto() -> None:
    sender = RecordCrypto(K56, Side.CLIENT)
    opener = RecordCrypto(K56, Side.SERVER)
    with pytest.raises(ProtocolError) as info:
        opener.open(bytes(HEADER_SIZE + TAG_SIZE - 1))
    assert str(info.value) == "record frame shorter than its header and tag"
    frame = sender.seal(b"abc")
    with pytest.raises(ProtocolError) as info:
        opener.open(frame + b"\x00")
    assert str(info.value) == "record frame length does not match its length field"
    with pytest.raises(ProtocolError, match="does not match its length field"):
        opener.open(frame[:-1] + b"")
    short = (MIN_FRAME_LEN - 1).to_bytes(4, "little") + b"\x06\x00\x00\x00" + bytes(16)
    with pytest.raises(ProtocolError, match="is shorter than type field and tag"):
        opener.open(short)
    wrong_type = frame[:4] + b"\x07" + frame[5:]
    with pytest.raises(ProtocolError, match=r"message type 0x7, expected low byte 0x06"):
        opener.open(wrong_type)
    assert opener.open(frame) == b"abc"  # none of the refusals used up a counter value
    empty = sender.seal(b"")
    assert len(empty) == HEADER_SIZE + TAG_SIZE
    assert opener.open(empty) == b""


def test_open_returns_large_frames_whole(both_paths: bool) -> None:
    sender = RecordCrypto(K56, Side.CLIENT)
    opener = RecordCrypto(K56, Side.SERVER)
    for size in (FAST_PATH_MIN - 1, FAST_PATH_MIN, 100_000):
        data = os.urandom(size)
        assert opener.open(sender.seal(data)) == data


def test_seal_refuses_more_than_a_frame_holds() -> None:
    sender = RecordCrypto(K56, Side.CLIENT)
    with pytest.raises(ValueError, match=f"a frame carries at most {MAX_PAYLOAD} bytes"):
        sender.seal_into(bytearray(MAX_PAYLOAD + 100), 0, bytes(MAX_PAYLOAD + 1), MAX_PAYLOAD + 1)
    # The refused frame did not use a counter value.
    assert RecordCrypto(K56, Side.SERVER).open(sender.seal(b"next")) == b"next"


def test_seal_into_writes_at_the_offset(both_paths: bool) -> None:
    for size in (7, FAST_PATH_MIN + 7):
        data = os.urandom(size)
        expected = RecordCrypto(K56, Side.CLIENT).seal(data)
        out = bytearray(b"\xee" * (size + FRAME_OVERHEAD + 10))
        n = RecordCrypto(K56, Side.CLIENT).seal_into(out, 3, data + b"ignored", size)
        assert n == size + FRAME_OVERHEAD
        assert out[3 : 3 + n] == expected
        assert out[:3] == b"\xee" * 3 and out[3 + n :] == b"\xee" * 7


# --- RecordWriter ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, MAX_PAYLOAD + 1])
def test_writer_payload_bound(bad: int) -> None:
    with pytest.raises(ValueError, match=f"max_payload must be 1..{MAX_PAYLOAD}"):
        RecordWriter(RecordCrypto(K56, Side.CLIENT), max_payload=bad)


def test_writer_seal_into_and_smallest_frames() -> None:
    writer = RecordWriter(RecordCrypto(K56, Side.CLIENT), max_payload=1)
    assert writer.max_payload == 1
    assert [len(f) for f in writer.frames(b"abc")] == [1 + FRAME_OVERHEAD] * 3
    out = bytearray(2 + FRAME_OVERHEAD + 5)
    assert writer.seal_into(out, b"xyz", 2) == 2 + FRAME_OVERHEAD
    opener = RecordCrypto(K56, Side.SERVER)
    for _ in range(3):  # the three frames of frames() came first
        opener.in_counter.inc()
    assert opener.open(bytes(out[: 2 + FRAME_OVERHEAD])) == b"xy"


def test_writer_frames_carry_the_data_in_order(both_paths: bool) -> None:
    writer = RecordWriter(RecordCrypto(K56, Side.CLIENT), max_payload=1000)
    data = os.urandom(2500)
    frames = list(writer.frames(memoryview(data)))
    assert [len(f) - FRAME_OVERHEAD for f in frames] == [834, 833, 833]
    opener = RecordCrypto(K56, Side.SERVER)
    assert b"".join(opener.open(bytes(f)) for f in frames) == data
    assert RecordWriter(RecordCrypto(K56, Side.CLIENT)).seal_all(b"") == b""


# --- the reader: handshake phase ------------------------------------------------------------


def test_raw_bytes_then_records() -> None:
    sender = RecordCrypto(K56, Side.CLIENT)
    reader = RecordReader()
    hello = b"handshake bytes"
    reader.feed(hello + sender.seal(b"first record"))
    assert reader.take_raw(len(hello) + 1000) is None  # not all here: nothing taken
    assert reader.buffered == len(hello) + len(b"first record") + FRAME_OVERHEAD
    assert reader.take_raw(9) == b"handshake"
    assert reader.take_raw(6) == b" bytes"
    assert reader.take_raw(0) == b""
    exact = RecordReader()
    exact.feed(b"12345")
    assert exact.take_raw(5) == b"12345"  # exactly what is buffered
    assert exact.take_raw(1) is None
    with pytest.raises(RuntimeError, match="record layer not started"):
        reader.read(10)
    reader.start_records(RecordCrypto(K56, Side.SERVER))
    assert reader.read(100) == b"first record"
    assert reader.at_frame_boundary()


def test_before_records_a_frame_length_is_not_used_to_reserve_room() -> None:
    reader = RecordReader()
    reader.feed((MAX_FRAME_LEN).to_bytes(4, "little"))
    assert reader.capacity == INITIAL_BUFFER  # raw bytes: no frame to make room for


# --- the reader: buffer management ----------------------------------------------------------


def test_room_is_made_for_a_whole_announced_frame() -> None:
    sender, reader = pair()
    frame = sender.seal(os.urandom(300_000))
    reader.feed(frame[:10])
    view = reader.get_buffer()
    assert len(view) >= len(frame) - 10  # the rest of the frame fits in one receive
    assert reader.capacity <= MAX_BUFFER
    reader.feed(frame[10:])
    assert len(drain(reader)) == 300_000


def test_an_oversized_length_never_reserves_room() -> None:
    _, reader = pair()
    reader.feed((MAX_FRAME_LEN + 1).to_bytes(4, "little") + bytes(4))
    assert reader.capacity == INITIAL_BUFFER
    with pytest.raises(ProtocolError, match=f"exceeds the limit {MAX_FRAME_LEN}"):
        reader.read(1)


def test_unread_bytes_move_to_the_front_when_room_runs_out(both_paths: bool) -> None:
    sender, reader = pair()
    small = [os.urandom(GO_PAYLOAD) for _ in range(15)]
    stream = b"".join(sender.seal(p) for p in small)
    tail = sender.seal(b"t" * 30_000)
    # Fifteen frames and the start of a sixteenth fill most of the first buffer.
    reader.feed(stream + tail[:100])
    assert reader.capacity == INITIAL_BUFFER
    got = reader.read(GO_PAYLOAD * 14 + 5)  # leaves part of frame 15 unread
    assert got == b"".join(small)[: GO_PAYLOAD * 14 + 5]
    assert reader.plaintext_ready == GO_PAYLOAD - 5
    reader.feed(tail[100:])  # needs room: the unread plaintext and the partial frame move
    assert reader.read(GO_PAYLOAD - 5) == small[14][5:]
    assert drain(reader) == b"t" * 30_000
    assert reader.at_frame_boundary()


def test_compaction_keeps_a_partial_frame(both_paths: bool) -> None:
    sender, reader = pair()
    first = sender.seal(os.urandom(40_000))
    second = sender.seal(b"s" * 20_000)
    reader.feed(first + second[:5000])
    assert len(drain(reader)) == 40_000
    assert reader.buffered == 5000
    reader.feed(second[5000:])  # the partial frame moves to the front before the buffer grows
    assert drain(reader) == b"s" * 20_000


def test_buffer_shrinks_after_a_run_of_small_frames() -> None:
    sender, reader = pair()
    reader.feed(sender.seal(os.urandom(500_000)))
    assert len(drain(reader)) == 500_000
    grown = reader.capacity
    assert grown > INITIAL_BUFFER
    for i in range(64):
        reader.feed(sender.seal(b"m%d" % i))
        assert drain(reader) == b"m%d" % i
        if i < 63:
            assert reader.capacity == grown, i
    reader.feed(sender.seal(b"after"))  # the 64th small frame allows the shrink
    assert reader.capacity == INITIAL_BUFFER
    assert drain(reader) == b"after"


def test_a_large_frame_restarts_the_small_run() -> None:
    sender, reader = pair()
    reader.feed(sender.seal(os.urandom(500_000)))
    drain(reader)
    grown = reader.capacity
    for i in range(40):
        reader.feed(sender.seal(b"m%d" % i))
        drain(reader)
    reader.feed(sender.seal(os.urandom(20_000)))  # above the small-frame size
    drain(reader)
    for i in range(40):
        reader.feed(sender.seal(b"n%d" % i))
        drain(reader)
    assert reader.capacity == grown


def test_small_frames_are_gathered_up_to_the_limit() -> None:
    sender, reader = pair()
    frames = [os.urandom(GO_PAYLOAD) for _ in range(20)]
    reader.feed(b"".join(sender.seal(p) for p in frames))
    first = reader.read(1 << 22)
    # 16 frames hold 65 152 bytes, under the 64 KiB gathering limit: a 17th is added.
    assert first == b"".join(frames[:17])
    assert reader.read(1 << 22) == b"".join(frames[17:])
    assert reader.read(1 << 22) is None


def test_read_sizes(both_paths: bool) -> None:
    sender, reader = pair()
    big = os.urandom(FAST_PATH_MIN + 100)
    reader.feed(sender.seal(b"small") + sender.seal(big))
    assert reader.read(0) == b""
    assert reader.read(-5) == b""
    assert reader.read(3) == b"sma"
    assert reader.plaintext_ready == 2
    assert reader.read(2) == b"ll"
    assert reader.read(10) == big[:10]
    assert reader.plaintext_ready == len(big) - 10
    assert reader.read(len(big)) == big[10:]
    assert reader.plaintext_ready == 0
    assert reader.at_frame_boundary()
    reader.feed(sender.seal(big))
    whole = reader.read(len(big))  # a large frame read whole comes back as it was opened
    assert whole == big
    assert reader.read(1) is None


def test_reads_span_frames() -> None:
    sender, reader = pair()
    reader.feed(sender.seal(b"abc") + sender.seal(b"defg") + sender.seal(b"h"))
    assert reader.read(5) == b"abcde"
    assert reader.read(100) == b"fgh"
    assert reader.read(100) is None


def test_pause_at_the_high_water_mark() -> None:
    sender, reader = pair()
    frame = sender.seal(os.urandom(MAX_PAYLOAD))
    reader.feed(frame)
    assert not reader.should_pause
    reader.feed(frame[: HIGH_WATER - len(frame) - 1])
    assert reader.buffered == HIGH_WATER - 1
    assert not reader.should_pause
    reader.feed(b"\x00")
    assert reader.should_pause  # exactly at the mark
    with pytest.raises(RuntimeError, match="read before feeding more"):
        reader.feed(b"\x00")
    # Glue that ignores should_pause runs into the hard bound, never past it.
    with pytest.raises(RuntimeError, match="ignored should_pause"):
        while True:
            view = reader.get_buffer()
            reader.buffer_updated(len(view))
    assert reader.capacity == MAX_BUFFER


def test_an_error_sticks() -> None:
    sender, reader = pair()
    bad = bytearray(sender.seal(b"bad"))
    bad[9] ^= 1
    reader.feed(bytes(bad))
    with pytest.raises(ProtocolError) as info:
        reader.read(10)
    assert str(info.value) == (
        "record frame failed authentication (tampered, replayed or reordered)"
    )
    assert isinstance(reader.error, ProtocolError)
    with pytest.raises(ProtocolError, match="failed authentication"):
        reader.frame_ready()
    with pytest.raises(ProtocolError, match="failed authentication"):
        reader.read(10)


def test_a_bad_length_sticks_from_frame_ready() -> None:
    _, reader = pair()
    reader.feed((MIN_FRAME_LEN - 1).to_bytes(4, "little"))
    assert reader.error is None
    with pytest.raises(ProtocolError, match="shorter than type field and tag"):
        reader.frame_ready()
    assert reader.error is not None
    with pytest.raises(ProtocolError):
        reader.read(1)


def test_frame_ready_needs_the_whole_frame() -> None:
    sender, reader = pair()
    frame = sender.seal(b"whole")
    assert not reader.frame_ready()
    reader.feed(frame[:3])
    assert not reader.frame_ready()  # not even a length yet
    reader.feed(frame[3:-1])
    assert not reader.frame_ready()
    assert not reader.at_frame_boundary()
    reader.feed(frame[-1:])
    assert reader.frame_ready()
    assert reader.buffered == len(frame)


# --- the reader against random chunking ----------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), fast=st.booleans())
def test_any_chunking_and_read_sizes_give_back_the_stream(seed: int, fast: bool) -> None:
    rng = random.Random(seed)
    old = record._HAVE_INTO
    record._HAVE_INTO = old and fast
    try:
        sender, reader = pair()
        sizes = [rng.choice([0, 1, 100, GO_PAYLOAD, 20_000, 70_000]) for _ in range(12)]
        payloads = [rng.randbytes(n) for n in sizes]
        stream = b"".join(sender.seal(p) for p in payloads)
        expected = b"".join(payloads)
        out = bytearray()
        pos = 0
        while pos < len(stream):
            n = rng.choice([1, 7, 4096, 30_000, 100_000])
            reader.feed(stream[pos : pos + n])
            pos += n
            for _ in range(rng.randrange(3)):
                chunk = reader.read(rng.choice([1, 13, 5000, 1 << 20]))
                if chunk is None:
                    break
                out += chunk
            assert reader.capacity <= MAX_BUFFER
            assert reader.plaintext_ready + len(out) <= len(expected)
        out += drain(reader)
        assert bytes(out) == expected
        assert reader.at_frame_boundary()
        assert reader.capacity >= MIN_READ
    finally:
        record._HAVE_INTO = old
