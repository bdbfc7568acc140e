"""A minimal protobuf wire-format reader and writer.

The identity code needs only a handful of tiny messages (``google.protobuf.Any``, the key
messages ``{key = 1 : bytes}``, the keyring ``Record``), and the handshake one more. Generated
classes would pull third-party ``.proto`` text into the tree for four fields, so these few
messages are encoded and parsed by hand here, with every length checked against the buffer.
"""

from __future__ import annotations

from collections.abc import Iterator

from lumera_p2p.errors import ProtobufDecodeError

WIRE_VARINT = 0
WIRE_I64 = 1
WIRE_LEN = 2
WIRE_I32 = 5

_MAX_VARINT_BYTES = 10


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer (< 2**64) as a protobuf varint."""
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; return ``(value, new_pos)``."""
    result = 0
    shift = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise ProtobufDecodeError("truncated varint")
        b = buf[pos + i]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result >= 1 << 64:
                raise ProtobufDecodeError("varint overflows 64 bits")
            return result, pos + i + 1
        shift += 7
    raise ProtobufDecodeError("varint longer than 10 bytes")


def field_bytes(number: int, value: bytes) -> bytes:
    """A length-delimited field (string, bytes or embedded message)."""
    return encode_varint(number << 3 | WIRE_LEN) + encode_varint(len(value)) + value


def field_varint(number: int, value: int) -> bytes:
    """A varint field (int32 values must already be non-negative here)."""
    return encode_varint(number << 3 | WIRE_VARINT) + encode_varint(value)


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)`` for each field of a message.

    Varints come back as ``int``, length-delimited fields as ``bytes``; fixed-width fields as
    their raw bytes. Groups (wire types 3 and 4) are refused: nothing we parse uses them.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        tag, pos = decode_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ProtobufDecodeError("field number 0")
        if wire == WIRE_VARINT:
            value, pos = decode_varint(buf, pos)
            yield number, wire, value
        elif wire == WIRE_LEN:
            length, pos = decode_varint(buf, pos)
            if length > end - pos:
                raise ProtobufDecodeError(f"field {number}: length {length} exceeds message")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire in (WIRE_I64, WIRE_I32):
            width = 8 if wire == WIRE_I64 else 4
            if width > end - pos:
                raise ProtobufDecodeError(f"field {number}: truncated fixed-width value")
            yield number, wire, buf[pos : pos + width]
            pos += width
        else:
            raise ProtobufDecodeError(f"field {number}: unsupported wire type {wire}")


def parse_fields(buf: bytes) -> dict[int, list[int | bytes]]:
    """All fields of a message, by number, in order of appearance."""
    out: dict[int, list[int | bytes]] = {}
    for number, _wire, value in iter_fields(buf):
        out.setdefault(number, []).append(value)
    return out


def get_bytes(fields: dict[int, list[int | bytes]], number: int) -> bytes | None:
    """The last occurrence of a length-delimited field (protobuf's last-wins rule), or None."""
    values = fields.get(number)
    if not values:
        return None
    value = values[-1]
    if not isinstance(value, bytes):
        raise ProtobufDecodeError(f"field {number}: expected length-delimited, got varint")
    return value


def get_varint(fields: dict[int, list[int | bytes]], number: int) -> int:
    """The last occurrence of a varint field, or 0 (the proto3 default)."""
    values = fields.get(number)
    if not values:
        return 0
    value = values[-1]
    if not isinstance(value, int):
        raise ProtobufDecodeError(f"field {number}: expected varint, got length-delimited")
    return value


def encode_any(type_url: str, value: bytes) -> bytes:
    """Serialize ``google.protobuf.Any{type_url, value}`` as gogoproto does.

    Fields go in ascending order and, as proto3 requires, an empty field is left out.
    """
    url = type_url.encode()
    return (field_bytes(1, url) if url else b"") + (field_bytes(2, value) if value else b"")


def decode_any(buf: bytes) -> tuple[str, bytes]:
    """Parse a ``google.protobuf.Any``; return ``(type_url, value)``."""
    fields = parse_fields(buf)
    raw_url = get_bytes(fields, 1) or b""
    try:
        type_url = raw_url.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtobufDecodeError("Any type_url is not UTF-8") from exc
    return type_url, get_bytes(fields, 2) or b""
