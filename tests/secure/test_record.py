"""Record layer: known-answer vectors (wire-protocol.md §9.2, §9.5, A.3), framing and failures.

The AES-GCM vectors of Appendix A.1/A.2 are not here on purpose: the handshaker hard-codes the
XChaCha suite, whose code path uses neither AES-GCM nor the AES rekey KDF. What that suite
shares with them (frame parsing, counters, ``maskNonce``) is pinned by the vectors below.
"""

from __future__ import annotations

import os

import pytest
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

from lumera_p2p.errors import ProtocolError
from lumera_p2p.secure import record
from lumera_p2p.secure.record import (
    FAST_PATH_MIN,
    FRAME_OVERHEAD,
    GO_PAYLOAD,
    HIGH_WATER,
    MAX_BUFFER,
    MAX_FRAME_LEN,
    MAX_PAYLOAD,
    Counter,
    CounterExhaustedError,
    RecordCrypto,
    RecordReader,
    RecordWriter,
    Side,
    counter_side,
    hchacha20,
    mask_nonce,
    payload_sizes,
    xchacha_seal,
)

# record_test.go: RecordProtocolXChaCha20Poly1305ReKey key (Appendix A.4).
RECORD_TEST_KEY = bytes.fromhex(
    "36dbf350ab70b2dbe69295dee1390a90ad78e6001ab8361613c2c591f140252f"
    "dbb63dc0d345010e12d9e3110bc8bd2a66a583bded6d13b4"
)
# §9.2 end-to-end key schedule output.
K56 = bytes.fromhex(
    "0a35c39b550cefeddead2bb88eee392b844af1eed6a68f32bb7c6b6fbfadbc27"
    "8330cb1f153667386ea79eb3dc3e520155c1f9f5cfbe2a70"
)


def drain(reader: RecordReader, n: int = 1 << 22) -> bytes:
    """Everything the reader can return now."""
    out = bytearray()
    while (chunk := reader.read(n)) is not None:
        out += chunk
    return bytes(out)


@pytest.fixture(params=[True, False], ids=["openssl+libsodium", "libsodium-only"])
def both_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with the OpenSSL fast path on, then with libsodium for every frame."""
    if not request.param:
        monkeypatch.setattr(record, "_HAVE_INTO", False)
    return bool(request.param)


# --- §9.2 derived frames and nonces -------------------------------------------------------


def test_record_test_key_frames(both_paths: bool) -> None:
    client = RecordCrypto(RECORD_TEST_KEY, Side.CLIENT)
    server = RecordCrypto(RECORD_TEST_KEY, Side.SERVER)
    assert client.seal(b"Client Message").hex() == (
        "2200000006000000eaf56490b2c769afaecd717f38d1d7477ee4a9607f159602270b84adac96"
    )
    assert client.seal(b"Very Important Message").hex() == (
        "2a000000060000008d0ee39954be4457d076171b3ed29dc1dc1d19331e21f76ea3a7476e710ab939"
        "086914bd7e4f"
    )
    assert server.seal(b"Server Message").hex() == (
        "22000000060000003f4891ff9454af72145dec7df2001fedaf30f198069450412d56ffab1fa7"
    )
    empty = RecordCrypto(RECORD_TEST_KEY, Side.CLIENT).seal(b"")
    assert empty.hex() == "1400000006000000d4d1c906eda93d38da4452e0d0084039"


def test_nonce_construction() -> None:
    mask = RECORD_TEST_KEY[32:56]
    assert mask[:12].hex() == "dbb63dc0d345010e12d9e311"
    client = Counter.outgoing(Side.CLIENT)
    assert mask_nonce(client.value(), mask).hex() == "dbb63dc0d345010e12d9e311" + "00" * 12
    client.inc()
    assert mask_nonce(client.value(), mask).hex() == "dab63dc0d345010e12d9e311" + "00" * 12
    server = Counter.outgoing(Side.SERVER)
    assert mask_nonce(server.value(), mask).hex() == "dbb63dc0d345010e12d9e391" + "00" * 12
    # mask[12:24] never reaches the nonce.
    other_tail = mask[:12] + bytes(12)
    assert mask_nonce(server.value(), other_tail) == mask_nonce(server.value(), mask)


def test_key_schedule_ping_frame(both_paths: bool) -> None:
    frame = RecordCrypto(K56, Side.CLIENT).seal(b"ping")
    assert frame.hex() == "1800000006000000f7aee963b551a2f305366b0c9d5f585681500974"
    assert RecordCrypto(K56, Side.SERVER).open(frame) == b"ping"


def test_frames_match_libsodium_wrappers() -> None:
    """Our frame = header ‖ the PyNaCl AEAD output under the §3.3 nonce, for both paths."""
    crypto = RecordCrypto(RECORD_TEST_KEY, Side.SERVER)
    for size in (0, 1, 4072, FAST_PATH_MIN - 1, FAST_PATH_MIN, 300_000, MAX_PAYLOAD):
        counter = crypto.out_counter.value()
        plaintext = os.urandom(size)
        frame = crypto.seal(plaintext)
        nonce = mask_nonce(counter, RECORD_TEST_KEY[32:])
        sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, None, nonce, RECORD_TEST_KEY[:32]
        )
        assert frame[8:] == sealed, size
        assert frame[:8] == (size + 20).to_bytes(4, "little") + b"\x06\x00\x00\x00"
        assert (
            crypto_aead_xchacha20poly1305_ietf_decrypt(sealed, None, nonce, RECORD_TEST_KEY[:32])
            == plaintext
        )


# --- §9.5 standard vectors ------------------------------------------------------------------


def test_hchacha20_vector() -> None:
    key = bytes(range(32))
    nonce16 = bytes.fromhex("000000090000004a0000000031415927")
    assert hchacha20(key, nonce16).hex() == (
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    )


def test_xchacha20poly1305_vector() -> None:
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
        b"the future, sunscreen would be it."
    )
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    key = bytes(range(0x80, 0xA0))
    nonce = bytes(range(0x40, 0x58))
    expected = bytes.fromhex(
        "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa644"
        "0bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e"
        "3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e"
        "c0875924c1c7987947deafd8780acf49"
    )
    assert xchacha_seal(key, nonce, plaintext, aad) == expected
    assert crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key) == expected


def test_fast_and_libsodium_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = [0, 1, FAST_PATH_MIN - 1, FAST_PATH_MIN, FAST_PATH_MIN + 1, 200_000, MAX_PAYLOAD]
    data = [os.urandom(n) for n in sizes]
    fast = RecordCrypto(K56, Side.CLIENT)
    fast_frames = [fast.seal(d) for d in data]
    monkeypatch.setattr(record, "_HAVE_INTO", False)
    slow = RecordCrypto(K56, Side.CLIENT)
    assert [slow.seal(d) for d in data] == fast_frames
    opener = RecordCrypto(K56, Side.SERVER)
    assert [opener.open(f) for f in fast_frames] == data
    monkeypatch.setattr(record, "_HAVE_INTO", True)
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    for frame in fast_frames:
        reader.feed(frame)
        assert drain(reader) == data[fast_frames.index(frame)]


# --- A.3 counters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("000000000000000000000000", "010000000000000000000000"),
        ("000000000000000000000080", "010000000000000000000080"),
        ("ff0000000000000000000000", "000100000000000000000000"),
        ("42ff00000000000000000000", "43ff00000000000000000000"),
        ("ffffffff0000000000000000", "000000000100000000000000"),
        ("ffffffff0000000000000080", "000000000100000000000080"),
    ],
)
def test_counter_inc(before: str, after: str) -> None:
    counter = Counter(bytes.fromhex(before), overflow_len=5)
    counter.inc()
    assert counter.value().hex() == after


@pytest.mark.parametrize(
    ("value", "overflow_len"),
    [
        ("feffffffff00000000000080", 5),
        ("feffffffff00000000000000", 5),
        ("feffffffffffffff00000080", 8),  # our suite's real overflow length
        ("feffffffffffffff00000000", 8),
    ],
)
def test_counter_rollover(value: str, overflow_len: int) -> None:
    counter = Counter(bytes.fromhex(value), overflow_len=overflow_len)
    counter.inc()
    counter.value()  # still valid
    counter.inc()
    with pytest.raises(CounterExhaustedError):
        counter.value()
    counter.inc()  # stays invalid, no wrap-around
    assert counter.invalid
    with pytest.raises(ProtocolError):
        counter.value()


def test_counter_sides() -> None:
    for side in (Side.CLIENT, Side.SERVER):
        out, into = Counter.outgoing(side), Counter.incoming(side)
        for _ in range(1024):
            assert counter_side(out.value()) is side
            assert counter_side(into.value()) is not side
            out.inc()
            into.inc()


def test_counter_exhaustion_stops_sealing_and_opening(both_paths: bool) -> None:
    near_wrap = bytes.fromhex("feffffffffffffff00000000")
    sender = RecordCrypto(K56, Side.CLIENT)
    receiver = RecordCrypto(K56, Side.SERVER)
    sender.out_counter = Counter(near_wrap)
    receiver.in_counter = Counter(near_wrap)
    for message in (b"one", b"two"):
        assert receiver.open(sender.seal(message)) == message
    with pytest.raises(CounterExhaustedError):
        sender.seal(b"three")
    # A frame made by a sender whose counter really wrapped to zero cannot open either.
    wrapped = RecordCrypto(K56, Side.CLIENT).seal(b"three")
    with pytest.raises(CounterExhaustedError):
        receiver.open(wrapped)


def test_key_material_too_short() -> None:
    with pytest.raises(ValueError, match="56"):
        RecordCrypto(bytes(32), Side.CLIENT)


# --- framing through the reader -------------------------------------------------------------


def test_round_trip_split_reads(both_paths: bool) -> None:
    """record_test.go: ping-pong, and "Very Important Message" read as 2 + 20 bytes."""
    client = RecordCrypto(bytes(56), Side.CLIENT)
    server_reader = RecordReader(RecordCrypto(bytes(56), Side.SERVER))
    server_reader.feed(client.seal(b"Very Important Message"))
    assert server_reader.read(2) == b"Ve"
    assert server_reader.read(20) == b"ry Important Message"
    assert server_reader.read(1) is None
    reply = RecordCrypto(bytes(56), Side.SERVER).seal(b"hello world 2")
    client_reader = RecordReader(RecordCrypto(bytes(56), Side.CLIENT))
    client_reader.feed(reply)
    assert drain(client_reader) == b"hello world 2"


def test_go_sized_frames_and_large_message(both_paths: bool) -> None:
    """Go's 4 KiB frames: the 4073-byte message and 512 KiB + 100 KiB of 0xAA."""
    writer = RecordWriter(RecordCrypto(RECORD_TEST_KEY, Side.CLIENT), max_payload=GO_PAYLOAD)
    reader = RecordReader(RecordCrypto(RECORD_TEST_KEY, Side.SERVER))
    big = b"\xaa" * (512 * 1024 + 100 * 1024)
    message = os.urandom(4096 - 4 - 4 - 16 + 1)
    for payload in (message, big):
        frames = list(writer.frames(payload))
        assert all(len(f) <= 4096 for f in frames)
        for frame in frames:
            reader.feed(bytes(frame))
            assert not reader.should_pause
        assert drain(reader) == payload


def test_byte_by_byte_feed(both_paths: bool) -> None:
    writer = RecordWriter(RecordCrypto(K56, Side.SERVER))
    data = os.urandom(70_000)
    stream = writer.seal_all(data) + writer.seal_all(b"tail")
    reader = RecordReader(RecordCrypto(K56, Side.CLIENT))
    out = bytearray()
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        out += drain(reader, 997)
    assert bytes(out) == data + b"tail"
    assert reader.at_frame_boundary()


def test_max_frame_accepted_and_one_more_refused() -> None:
    crypto = RecordCrypto(K56, Side.CLIENT)
    frame = crypto.seal(os.urandom(MAX_PAYLOAD))
    assert int.from_bytes(frame[:4], "little") == MAX_FRAME_LEN
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(frame)
    assert len(drain(reader)) == MAX_PAYLOAD
    with pytest.raises(ValueError):
        crypto.seal(bytes(MAX_PAYLOAD + 1))
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed((MAX_FRAME_LEN + 1).to_bytes(4, "little"))  # no body needed to refuse it
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        reader.read(1)
    assert reader.capacity < 2 * MAX_FRAME_LEN


def test_wrong_message_type() -> None:
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(bytes.fromhex("0400000022000000"))  # record_test.go: len=4, type=0x22
    with pytest.raises(ProtocolError):
        reader.read(1)
    frame = bytearray(RecordCrypto(K56, Side.CLIENT).seal(b"x"))
    frame[4] = 0x22
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(bytes(frame))
    with pytest.raises(ProtocolError, match="message type"):
        reader.read(1)


def test_type_upper_bytes_are_ignored_like_go() -> None:
    frame = bytearray(RecordCrypto(K56, Side.CLIENT).seal(b"x"))
    frame[5:8] = b"\xab\xcd\xef"
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(bytes(frame))
    assert reader.read(1) == b"x"


@pytest.mark.parametrize("size", [5, FAST_PATH_MIN + 5])
@pytest.mark.parametrize("where", ["length", "ciphertext", "tag"])
def test_tampered_frame(size: int, where: str) -> None:
    frame = bytearray(RecordCrypto(K56, Side.CLIENT).seal(os.urandom(size)))
    index = {"length": 0, "ciphertext": 8, "tag": len(frame) - 1}[where]
    frame[index] ^= 0x01
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(bytes(frame) + bytes(64))
    with pytest.raises(ProtocolError):
        reader.read(size)
    with pytest.raises(ProtocolError):  # and for ever after
        reader.read(1)


@pytest.mark.parametrize("size", [5, FAST_PATH_MIN + 5])
def test_replayed_and_reordered_frames(size: int) -> None:
    sender = RecordCrypto(K56, Side.CLIENT)
    first, second = sender.seal(os.urandom(size)), sender.seal(os.urandom(size))
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(first + first)
    assert len(reader.read(size) or b"") == size
    with pytest.raises(ProtocolError, match="authentication"):
        reader.read(size)
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(second)
    with pytest.raises(ProtocolError, match="authentication"):
        reader.read(size)


def test_own_direction_frame_refused() -> None:
    """A client frame reflected back at the client fails: the direction bit differs."""
    frame = RecordCrypto(K56, Side.CLIENT).seal(b"reflected")
    reader = RecordReader(RecordCrypto(K56, Side.CLIENT))
    reader.feed(frame)
    with pytest.raises(ProtocolError):
        reader.read(100)


def test_data_before_a_bad_frame_is_delivered_first() -> None:
    sender = RecordCrypto(K56, Side.CLIENT)
    good = sender.seal(b"good")
    bad = bytearray(sender.seal(b"bad"))
    bad[-1] ^= 1
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(good + bytes(bad))
    assert reader.read(100) == b"good"
    with pytest.raises(ProtocolError):
        reader.read(100)


def test_truncated_frame_is_not_a_boundary() -> None:
    frame = RecordCrypto(K56, Side.CLIENT).seal(b"truncated")
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(frame[:-3])
    assert reader.read(100) is None
    assert not reader.at_frame_boundary()


def test_buffer_stays_bounded_and_asks_to_pause() -> None:
    writer = RecordWriter(RecordCrypto(K56, Side.CLIENT))
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    frame_data = os.urandom(MAX_PAYLOAD)
    fed = 0
    while not reader.should_pause:
        for frame in writer.frames(frame_data):
            reader.feed(bytes(frame))
            fed += 1
    assert reader.buffered >= HIGH_WATER
    assert reader.capacity <= MAX_BUFFER
    with pytest.raises(RuntimeError):
        reader.feed(b"more")
    assert drain(reader) == frame_data * fed
    assert reader.at_frame_boundary()


def test_payload_sizes_split_evenly() -> None:
    assert list(payload_sizes(0)) == []
    assert list(payload_sizes(MAX_PAYLOAD)) == [MAX_PAYLOAD]
    assert list(payload_sizes(1 << 20)) == [1 << 19, 1 << 19]
    for total in (1, 4071, 4072, 4073, 3 * MAX_PAYLOAD + 7):
        sizes = list(payload_sizes(total, GO_PAYLOAD))
        assert sum(sizes) == total
        assert max(sizes) - min(sizes) <= 1
        assert max(sizes) <= GO_PAYLOAD


def test_writer_frame_sizes() -> None:
    writer = RecordWriter(RecordCrypto(K56, Side.CLIENT))
    frames = list(writer.frames(bytes(3 * MAX_PAYLOAD)))
    assert [len(f) for f in frames] == [MAX_PAYLOAD + FRAME_OVERHEAD] * 3
    assert list(writer.frames(b"")) == []


# --- how much room a receive gets -----------------------------------------------------------

LEN = 4  # the frame's length field


def test_a_receive_has_room_for_the_whole_frame_from_its_length_field_on() -> None:
    frame = RecordCrypto(K56, Side.CLIENT).seal(os.urandom(300_000))
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(frame[:LEN])  # the length alone already says how much is coming
    assert len(reader.get_buffer()) >= len(frame) - LEN
    # The buffer grows to the frame, not to a multiple of it.
    assert reader.capacity <= len(frame) + record.MIN_READ
    reader.feed(frame[LEN:])
    assert len(drain(reader)) == 300_000


def test_the_room_is_for_the_frame_at_the_read_position() -> None:
    crypto = RecordCrypto(K56, Side.CLIENT)
    small, large = crypto.seal(b"small"), crypto.seal(os.urandom(300_000))
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(small + large[:10])
    assert drain(reader) == b"small"
    assert len(reader.get_buffer()) >= len(large) - 10


def test_a_grown_buffer_is_no_larger_than_the_frame_needs() -> None:
    frame = RecordCrypto(K56, Side.CLIENT).seal(os.urandom(MAX_PAYLOAD))
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(frame[: 64 * 1024])
    reader.get_buffer()
    assert len(frame) <= reader.capacity <= len(frame) + record.MIN_READ


def test_handshake_bytes_are_not_read_as_a_frame_length() -> None:
    reader = RecordReader()  # no keys yet: raw handshake bytes
    reader.feed((MAX_FRAME_LEN).to_bytes(4, "little") + bytes(100))
    reader.get_buffer()
    assert reader.capacity <= 2 * record.INITIAL_BUFFER
    assert reader.take_raw(104) == MAX_FRAME_LEN.to_bytes(4, "little") + bytes(100)


def test_small_frames_are_gathered_up_to_the_limit() -> None:
    writer = RecordWriter(RecordCrypto(K56, Side.CLIENT), max_payload=4096)
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    data = os.urandom(40 * 4096)
    for frame in writer.frames(data):
        reader.feed(bytes(frame))
    first = reader.read(1 << 20)
    assert first is not None and len(first) == record._GATHER_LIMIT
    assert first + drain(reader) == data


def test_seal_all_joins_frames_that_open_in_order() -> None:
    writer = RecordWriter(RecordCrypto(K56, Side.CLIENT), max_payload=1000)
    data = os.urandom(3500)
    stream = writer.seal_all(data)
    assert len(stream) == len(data) + 4 * FRAME_OVERHEAD
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(stream)
    assert drain(reader) == data
    assert reader.at_frame_boundary()


def test_misuse_of_the_reader_is_named() -> None:
    reader = RecordReader()
    reader.feed(RecordCrypto(K56, Side.CLIENT).seal(b"early"))
    with pytest.raises(RuntimeError, match=r"^record layer not started$"):
        reader.read(10)
    writer = RecordWriter(RecordCrypto(K56, Side.CLIENT))
    full = RecordReader(RecordCrypto(K56, Side.SERVER))
    while not full.should_pause:
        full.feed(bytes(next(iter(writer.frames(bytes(MAX_PAYLOAD))))))
    with pytest.raises(RuntimeError, match=r"^receive buffer full: read before feeding more$"):
        full.feed(b"more")
    # Glue that ignores should_pause and keeps receiving fills the buffer to its bound.
    with pytest.raises(
        RuntimeError, match=r"^receive buffer full: the reader ignored should_pause$"
    ):
        for _ in range(1000):
            full.buffer_updated(len(full.get_buffer()))
    assert full.capacity <= MAX_BUFFER


def test_an_exhausted_counter_says_so() -> None:
    counter = Counter(bytes.fromhex("ffffffffffffffff00000000"))
    counter.inc()
    with pytest.raises(
        CounterExhaustedError,
        match=r"^record counter exhausted \(2\*\*64 frames in one direction\)$",
    ):
        counter.value()


def test_a_fresh_reader_has_nothing_to_read() -> None:
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    assert reader.plaintext_ready == 0 and reader.buffered == 0
    assert reader.read(10) is None
    assert reader.at_frame_boundary()


def test_a_grown_buffer_does_not_grow_again_for_small_frames() -> None:
    writer = RecordWriter(RecordCrypto(K56, Side.CLIENT))
    reader = RecordReader(RecordCrypto(K56, Side.SERVER))
    reader.feed(writer.seal_all(os.urandom(MAX_PAYLOAD)))
    assert len(drain(reader)) == MAX_PAYLOAD
    grown = reader.capacity
    # Small frames arriving split across receives: each receive leaves part of a frame
    # behind, so the data creeps to the end of the buffer, where compaction moves it to the
    # front; the room is then ample and the buffer must not grow.
    stream = b"".join(writer.seal_all(os.urandom(3000)) for _ in range(400))
    for i in range(0, len(stream), 5000):
        reader.feed(stream[i : i + 5000])
        drain(reader)
    assert reader.capacity <= grown
