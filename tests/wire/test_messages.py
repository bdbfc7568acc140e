"""Message round trips (hypothesis), framing and limits (reading from streams: tests/net)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire import (
    MAX_MESSAGE_SIZE,
    MAX_PAYLOAD_SIZE,
    REGISTRY,
    FindNodeRequest,
    FindNodeResponse,
    GobDecodeCache,
    GobEncodeError,
    Message,
    MessageData,
    MessageType,
    Node,
    ResponseStatus,
    TypeTable,
    decode_body,
    decode_message,
    encode_message,
    frame_header,
    parse_header,
)
from lumera_p2p.wire.messages import encode_frame_joined, encode_message_parts, go_type_of

from .strategies import DATA, MESSAGES

SHARED_CACHE = GobDecodeCache(max_entries=64)


@settings(max_examples=300, deadline=None)
@given(MESSAGES)
def test_every_message_round_trips(msg: Message) -> None:
    frame = encode_message(msg)
    assert decode_message(frame) == msg
    assert decode_message(frame, cache=SHARED_CACHE) == msg


@settings(max_examples=300, deadline=None)
@given(MESSAGES, st.sampled_from([0, 64, 1024, 64 * 1024]))
def test_a_joined_frame_is_the_frame(msg: Message, join_below: int) -> None:
    # The small messages' one-buffer encoding is the same bytes as the parts joined; a frame
    # over the limit comes back as the parts themselves.
    reference = encode_message(msg)
    encoded = encode_frame_joined(msg, join_below)
    if isinstance(encoded, bytes):
        assert encoded == reference and len(encoded) <= join_below
    else:
        parts, size = encoded
        assert b"".join(parts) == reference and size == len(reference)
        assert (parts, size) == encode_message_parts(msg)


def test_a_joined_frame_refused_as_the_general_encoder_refuses_it() -> None:
    # A value the generated codec declines goes to the general encoder, whose verdict stands.
    msg = Message(sender=Node(id=b"x", port=1 << 40), message_type=1)
    with pytest.raises(GobEncodeError, match="out of range"):
        encode_message(msg)
    with pytest.raises(GobEncodeError, match="out of range"):
        encode_frame_joined(msg, 64 * 1024)


@settings(max_examples=200, deadline=None)
@given(DATA)
def test_every_data_type_round_trips_with_history(data: MessageData) -> None:
    """Whatever ids a long-running process has reached, frames stay self-contained."""
    table = TypeTable(200)
    encode_message(Message(data=FindNodeResponse()), types=table)
    msg = Message(sender=Node(id=b"x"), message_type=MessageType.FIND_NODE, data=data)
    assert decode_message(encode_message(msg, types=table)) == msg


def test_registry_has_the_sixteen_go_names() -> None:
    names = REGISTRY.names()
    assert len(names) == 16
    assert names[0] == "*kademlia.ResponseStatus"
    assert "*kademlia.BatchGetValuesResponse" in names
    assert all(n.startswith("*kademlia.") for n in names)


def test_go_field_names_and_order() -> None:
    node = go_type_of(Node)
    assert [f.name for f in node.fields] == ["ID", "IP", "Port", "Version", "HashedID"]
    msg = go_type_of(Message)
    assert [f.name for f in msg.fields] == [
        "Sender",
        "Receiver",
        "MessageType",
        "Data",
        "CorrelationID",
        "Origin",
    ]


@pytest.mark.parametrize(
    ("length", "header"),
    [(127, "7f00000000000000"), (128, "8001000000000000"), (300, "ac02000000000000")],
)
def test_frame_header(length: int, header: str) -> None:
    assert frame_header(length).hex() == header
    assert parse_header(bytes.fromhex(header)) == length


def _uvarint_header(length: int) -> bytes:
    """binary.PutUvarint, padded: the reference for the header's short cuts."""
    out = bytearray()
    while length >= 0x80:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out.ljust(8, b"\0"))


@given(st.one_of(st.integers(0, 0x210000), st.integers(0, MAX_MESSAGE_SIZE + 10)))
def test_header_short_cuts_agree_with_the_uvarint(length: int) -> None:
    assert frame_header(length) == _uvarint_header(length)
    if length <= MAX_PAYLOAD_SIZE:
        assert parse_header(_uvarint_header(length)) == length


@given(st.binary(min_size=8, max_size=8))
def test_any_header_is_read_as_the_uvarint_loop_reads_it(header: bytes) -> None:
    length, shift = 0, 0
    for b in header:
        length |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    else:
        with pytest.raises(ProtocolError, match="unexpected EOF"):
            parse_header(header)
        return
    if length > MAX_PAYLOAD_SIZE:
        with pytest.raises(ProtocolError):
            parse_header(header)
    else:
        assert parse_header(header) == length


def test_header_limits() -> None:
    assert parse_header(frame_header(MAX_PAYLOAD_SIZE)) == MAX_PAYLOAD_SIZE
    with pytest.raises(ProtocolError, match="payload too big"):
        parse_header(frame_header(MAX_PAYLOAD_SIZE + 1))
    with pytest.raises(ProtocolError, match="absolute maximum"):
        parse_header(frame_header(MAX_MESSAGE_SIZE + 1))


def test_worked_example_of_the_spec() -> None:
    """wire-protocol.md 5.5: the FindNode request in Go's split layout (423-byte body)."""
    sender = Node(b"lumera1zvnc27832srgxa207y5hu2agy83wazfzurufyp", "203.0.113.10", 4445, "v2.4.0")
    receiver = Node(b"lumera1evlkjnp072q8u0yftk65ualx49j6mdz66p2073", "203.0.113.20", 4445)
    msg = Message(sender, receiver, MessageType.FIND_NODE, FindNodeRequest(bytes(range(32))))
    frame = encode_message(msg)
    assert frame[:8] == frame_header(423)
    assert frame[8:].hex() == (
        "647f030101074d65737361676501ff80000106010653656e64657201ff82000108526563656976657201ff82"
        "00010b4d65737361676554797065010400010444617461011000010d436f7272656c6174696f6e4944010c00"
        "01064f726967696e010c00000042ff81030101044e6f646501ff8200010501024944010a0001024950010c00"
        "0104506f7274010600010756657273696f6e010c0001084861736865644944010a000000ffd5ff8001012d6c"
        "756d657261317a766e63323738333273726778613230377935687532616779383377617a667a757275667970"
        "010c3230332e302e3131332e313001fe115d010676322e342e300001012d6c756d6572613165766c6b6a6e70"
        "303732713875307966746b363575616c7834396a366d647a36367032303733010c3230332e302e3131332e32"
        "3001fe115d00010401192a6b6164656d6c69612e46696e644e6f646552657175657374ff830301010f46696e"
        "644e6f64655265717565737401ff840001010106546172676574010a00000027ff8423012000010203040506"
        "0708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0000"
    )


def test_encoder_refuses_bad_values() -> None:
    with pytest.raises(GobEncodeError, match="uint16"):
        encode_message(Message(sender=Node(port=70000)))
    with pytest.raises(GobEncodeError, match="nil element"):
        encode_message(Message(data=FindNodeResponse(closest=[None])))  # type: ignore[list-item]
    with pytest.raises(GobEncodeError, match="not registered"):
        encode_message(Message(data=Node()))  # type: ignore[arg-type]


def test_decode_message_wants_exactly_one_frame() -> None:
    frame = encode_message(Message(data=ResponseStatus()))
    with pytest.raises(ProtocolError, match="after the frame"):
        decode_message(frame + b"\0")
    assert decode_body(frame[8:]) == Message(data=ResponseStatus())
