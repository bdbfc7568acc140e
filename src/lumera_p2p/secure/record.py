"""The ALTS record layer with the ``ALTSRP_XCHACHA20_POLY1305_REKEY`` suite, sans I/O.

Byte-compatible with supernode ``pkg/net/credentials/alts/conn`` (wire-protocol.md §3):

* frame = ``u32le L ‖ u32le 6 ‖ ciphertext ‖ 16-byte tag``, ``L = 4 + len(ciphertext) + 16``;
  a receiver refuses ``L > 1 MiB`` and checks only the low byte of the type;
* one 32-byte key for both directions; a 12-byte little-endian counter per direction, the
  server's with bit 95 set; only bytes 0-7 carry, and when they wrap the counter is dead
  for good (no rekey, whatever the suite's name says);
* nonce = ``(counter XOR mask[0:12]) ‖ 12 zero bytes``, AAD empty, standard
  XChaCha20-Poly1305 (libsodium ``crypto_aead_xchacha20poly1305_ietf``).

The AEAD is called through PyNaCl's cffi handle (``nacl._sodium``) rather than the
``nacl.bindings`` wrappers: those insist on ``bytes`` in, allocate a zeroed buffer and copy
the result out, three extra passes over every megabyte. Calling libsodium directly lets us
encrypt straight into the outgoing frame and decrypt in place in the receive buffer. Small
frames call the same two functions through ``ctypes.PyDLL`` instead (``secure.gil_aead``),
which keeps the GIL: cffi releases it around every call, and in a process whose SQLite writer
threads are busy each release costs the event loop far more than the call itself.

Large frames go through OpenSSL instead (``cryptography``'s ChaCha20-Poly1305, about three
times libsodium's speed here): XChaCha20-Poly1305 is ChaCha20-Poly1305 under the subkey
``HChaCha20(key, nonce[0:16])`` with the inner nonce ``0000 ‖ nonce[16:24]``, which in this
suite is always 12 zero bytes. HChaCha20 is read off one ChaCha20 block (keystream minus the
input state, words 0-3 and 12-15), a few microseconds, so small frames (Go sends 4 KiB ones)
stay on libsodium. Both paths produce the same bytes; the tests check one against the other.
``cryptography`` is imported on the first large frame, not before: its statically linked
OpenSSL maps about 7 MiB into the process, which a node that only sends small frames (most of
the DHT's traffic) does not need.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import Any, Final

from nacl._sodium import ffi, lib

from lumera_p2p.errors import CounterExhaustedError, ProtocolError
from lumera_p2p.secure import gil_aead

#: The record protocol name; also the prefix of the HKDF ``info`` (handshake §2.6).
RECORD_PROTOCOL: Final = "ALTSRP_XCHACHA20_POLY1305_REKEY"
#: Key material size: 32-byte XChaCha key ‖ 24-byte nonce mask (only 12 bytes used).
KEY_MATERIAL_SIZE: Final = 56
KEY_SIZE: Final = 32
TAG_SIZE: Final = 16
NONCE_SIZE: Final = 24
COUNTER_SIZE: Final = 12
#: Bytes of the counter that carry (Go ``overflowLenxChacha20Poly1305``): 2**64 frames.
OVERFLOW_LEN: Final = 8

MSG_TYPE: Final = 0x06
LEN_FIELD_SIZE: Final = 4
TYPE_FIELD_SIZE: Final = 4
HEADER_SIZE: Final = LEN_FIELD_SIZE + TYPE_FIELD_SIZE
#: Bytes a frame adds to its plaintext.
FRAME_OVERHEAD: Final = HEADER_SIZE + TAG_SIZE
#: Largest value of the length field Go accepts (``altsRecordLengthLimit``).
MAX_FRAME_LEN: Final = 1024 * 1024
#: Largest plaintext one frame can carry without Go refusing it: 1 048 556 bytes.
MAX_PAYLOAD: Final = MAX_FRAME_LEN - TYPE_FIELD_SIZE - TAG_SIZE
#: Plaintext per frame the Go sender uses (4096-byte frames).
GO_PAYLOAD: Final = 4096 - FRAME_OVERHEAD
#: Smallest legal frame length: type field and tag around an empty plaintext.
MIN_FRAME_LEN: Final = TYPE_FIELD_SIZE + TAG_SIZE

# libsodium picks its SIMD ChaCha20/Poly1305 code in sodium_init(); without it the portable
# reference code runs at half the speed. Called on the C library itself: ``nacl.bindings``
# would do it too, but loads every PyNaCl wrapper module (about 1 MiB in a node process).
if lib.sodium_init() == -1:  # pragma: no cover - only when libsodium cannot initialise
    raise ImportError("libsodium failed to initialise")

_HEADER = struct.Struct("<II")
_LEN = struct.Struct("<I")
_WORDS4 = struct.Struct("<4I")
_WORDS16 = struct.Struct("<16I")
_SIGMA = _WORDS4.unpack(b"expand 32-byte k")
_ZERO_BLOCK: Final = bytes(64)
#: Frames with at least this much plaintext use OpenSSL; below it libsodium's lower fixed
#: cost per call wins (crossover measured near 14 KiB).
FAST_PATH_MIN: Final = 16 * 1024
#: Whether large frames may use OpenSSL (tests turn it off to force libsodium). They do only
#: when this ``cryptography`` has ``encrypt_into``/``decrypt_into`` (a recent addition).
_HAVE_INTO = True
_ZERO12: Final = bytes(12)
_aead_encrypt = lib.crypto_aead_xchacha20poly1305_ietf_encrypt
_aead_decrypt = lib.crypto_aead_xchacha20poly1305_ietf_decrypt
_NULL = ffi.NULL
#: The same two entry points called with the GIL kept (``secure.gil_aead``), for small frames;
#: None where they cannot be loaded (then cffi does every frame). Tests set it to None to
#: check both bindings.
_GIL: gil_aead.GilAead | None = gil_aead.load()
_addressof = ctypes.addressof
_char_at = ctypes.c_char.from_buffer


class Side(IntEnum):
    """Which end of the connection we are; it picks the counter's direction bit."""

    CLIENT = 0
    SERVER = 1


class Counter:
    """Go's ``conn.Counter``: 96-bit little-endian, carrying only in its low ``overflow_len`` bytes.

    The value is kept as an int (bytes 0..overflow_len-1) plus the fixed high bytes, so that
    building a nonce costs one XOR and one ``to_bytes``.
    """

    __slots__ = ("_high", "_limit", "_low", "_shift", "invalid")

    def __init__(self, value: bytes = _ZERO12, overflow_len: int = OVERFLOW_LEN) -> None:
        if len(value) != COUNTER_SIZE:
            raise ValueError(f"a counter has {COUNTER_SIZE} bytes, got {len(value)}")
        if not 1 <= overflow_len <= COUNTER_SIZE:
            raise ValueError(f"overflow_len must be 1..{COUNTER_SIZE}")
        self._shift = 8 * overflow_len
        self._limit = 1 << self._shift
        whole = int.from_bytes(value, "little")
        self._low = whole & (self._limit - 1)
        self._high = whole >> self._shift
        self.invalid = False

    @classmethod
    def outgoing(cls, side: Side, overflow_len: int = OVERFLOW_LEN) -> Counter:
        """The counter a side seals with: the server's has the high bit of byte 11 set."""
        return cls(_side_start(side), overflow_len)

    @classmethod
    def incoming(cls, side: Side, overflow_len: int = OVERFLOW_LEN) -> Counter:
        """The counter a side opens with: the peer's outgoing one."""
        peer = Side.SERVER if side is Side.CLIENT else Side.CLIENT
        return cls(_side_start(peer), overflow_len)

    def as_int(self) -> int:
        """The 96-bit value as an int; raises once the counter has wrapped."""
        if self.invalid:
            raise CounterExhaustedError("record counter exhausted (2**64 frames in one direction)")
        return self._low | (self._high << self._shift)

    def value(self) -> bytes:
        """The 12 counter bytes (Go ``Value``); raises once the counter has wrapped."""
        return self.as_int().to_bytes(COUNTER_SIZE, "little")

    def inc(self) -> None:
        """Add one; a carry out of the low bytes leaves the counter invalid (Go ``Inc``)."""
        if self.invalid:
            return
        self._low += 1
        if self._low == self._limit:
            self._low = 0
            self.invalid = True


def _side_start(side: Side) -> bytes:
    return bytes(11) + (b"\x80" if side is Side.SERVER else b"\x00")


def counter_side(counter: bytes) -> Side:
    """The side a counter value belongs to (Go ``CounterSide``)."""
    return Side.SERVER if counter[COUNTER_SIZE - 1] & 0x80 else Side.CLIENT


def mask_nonce(counter: bytes, mask: bytes) -> bytes:
    """The 24-byte XChaCha nonce: ``(counter XOR mask[0:12]) ‖ 00 × 12`` (Go ``maskNonce``)."""
    value = int.from_bytes(counter[:COUNTER_SIZE], "little") ^ int.from_bytes(
        mask[:COUNTER_SIZE], "little"
    )
    return value.to_bytes(COUNTER_SIZE, "little") + _ZERO12


def _ptr(buf: Any) -> Any:
    """A C pointer into a bytes-like object (read-only ones too), without copying."""
    return ffi.from_buffer(buf)


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 (draft-irtf-cfrg-xchacha §2.2) from one ChaCha20 block computed by OpenSSL.

    A ChaCha20 block is ``rounds(state) + state``; HChaCha20 is ``rounds(state)`` at words
    0-3 and 12-15, whose input words (the constant and the 16-byte nonce) are known.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms  # noqa: PLC0415

    block = Cipher(algorithms.ChaCha20(key, nonce16), None).encryptor().update(_ZERO_BLOCK)
    w = _WORDS16.unpack(block)
    n = _WORDS4.unpack(nonce16)
    return struct.pack(
        "<8I",
        (w[0] - _SIGMA[0]) & 0xFFFFFFFF,
        (w[1] - _SIGMA[1]) & 0xFFFFFFFF,
        (w[2] - _SIGMA[2]) & 0xFFFFFFFF,
        (w[3] - _SIGMA[3]) & 0xFFFFFFFF,
        (w[12] - n[0]) & 0xFFFFFFFF,
        (w[13] - n[1]) & 0xFFFFFFFF,
        (w[14] - n[2]) & 0xFFFFFFFF,
        (w[15] - n[3]) & 0xFFFFFFFF,
    )


def xchacha_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Plain XChaCha20-Poly1305 encryption (``ciphertext ‖ tag``) through the same C entry point."""
    out = bytearray(len(plaintext) + TAG_SIZE)
    rc = _aead_encrypt(
        _ptr(out), _NULL, _ptr(plaintext), len(plaintext), aad or _NULL, len(aad), _NULL, nonce, key
    )
    if rc != 0:  # pragma: no cover - libsodium only fails on oversized input
        raise ProtocolError("XChaCha20-Poly1305 encryption failed")
    return bytes(out)


class RecordCrypto:
    """The XChaCha20-Poly1305 "REKEY" suite for one side: seals outgoing, opens incoming frames."""

    __slots__ = ("_key", "_mask", "in_counter", "out_counter", "side")

    def __init__(self, key_material: bytes, side: Side) -> None:
        if len(key_material) < KEY_MATERIAL_SIZE:
            # Go: "invalid keylength" for anything shorter than key ‖ 24-byte mask.
            raise ValueError(f"key material must be {KEY_MATERIAL_SIZE} bytes")
        self._key = bytes(key_material[:KEY_SIZE])
        self._mask = int.from_bytes(key_material[KEY_SIZE : KEY_SIZE + COUNTER_SIZE], "little")
        self.side = side
        #: The sealing and the opening counter (public so tests can start them near the wrap).
        self.out_counter = Counter.outgoing(side)
        self.in_counter = Counter.incoming(side)

    def _nonce12(self, counter: Counter) -> bytes:
        """The 12 meaningful nonce bytes: ``counter XOR mask[0:12]``."""
        return (counter.as_int() ^ self._mask).to_bytes(COUNTER_SIZE, "little")

    def seal_small(self, plaintext: bytes | bytearray | memoryview) -> bytearray:
        """One whole frame for ``plaintext`` (under :data:`FAST_PATH_MIN` bytes) in a new
        buffer: :meth:`seal_into` for the many small messages, with less in the way."""
        length = len(plaintext)
        if length >= FAST_PATH_MIN:
            raise ValueError(f"seal_small takes under {FAST_PATH_MIN} bytes")
        out = bytearray(length + FRAME_OVERHEAD)
        _HEADER.pack_into(out, 0, length + MIN_FRAME_LEN, MSG_TYPE)
        nonce = (self.out_counter.as_int() ^ self._mask).to_bytes(COUNTER_SIZE, "little")
        gil = _GIL
        if gil is not None and type(plaintext) is bytes:
            dst = _addressof(_char_at(out)) + HEADER_SIZE
            rc = gil.encrypt(
                dst, None, plaintext, length, None, 0, None, nonce + _ZERO12, self._key
            )
        else:
            src = plaintext if type(plaintext) is bytes else _ptr(plaintext)
            rc = _aead_encrypt(
                _ptr(out) + HEADER_SIZE,
                _NULL,
                src,
                length,
                _NULL,
                0,
                _NULL,
                nonce + _ZERO12,
                self._key,
            )
        if rc != 0:  # pragma: no cover - libsodium only fails on oversized input
            raise ProtocolError("XChaCha20-Poly1305 encryption failed")
        self.out_counter.inc()
        return out

    def _aead(self, nonce12: bytes) -> Any:
        """The OpenSSL AEAD equivalent to XChaCha under ``nonce12 ‖ 00 × 12``, or None when
        this ``cryptography`` cannot encrypt in place (then libsodium does every frame)."""
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: PLC0415

        if not hasattr(ChaCha20Poly1305, "encrypt_into"):
            return None
        return ChaCha20Poly1305(hchacha20(self._key, nonce12 + _ZERO12[:4]))

    def seal_into(self, out: Any, offset: int, plaintext: Any, length: int) -> int:
        """Write one whole frame for ``plaintext[:length]`` at ``out[offset:]``; return its size.

        ``out`` must be a writable buffer with ``length + FRAME_OVERHEAD`` bytes free at
        ``offset``; ``plaintext`` any contiguous byte buffer (it is not copied first).
        """
        if length > MAX_PAYLOAD:
            raise ValueError(f"a frame carries at most {MAX_PAYLOAD} bytes")
        nonce12 = self._nonce12(self.out_counter)
        _HEADER.pack_into(out, offset, length + MIN_FRAME_LEN, MSG_TYPE)
        start = offset + HEADER_SIZE
        aead = self._aead(nonce12) if _HAVE_INTO and length >= FAST_PATH_MIN else None
        if aead is not None:
            with memoryview(out) as dst, memoryview(plaintext) as src:
                aead.encrypt_into(
                    _ZERO12, src[:length], None, dst[start : start + length + TAG_SIZE]
                )
        else:
            rc = _aead_encrypt(
                _ptr(out) + start,
                _NULL,
                _ptr(plaintext),
                length,
                _NULL,
                0,
                _NULL,
                nonce12 + _ZERO12,
                self._key,
            )
            if rc != 0:  # pragma: no cover - libsodium only fails on oversized input
                raise ProtocolError("XChaCha20-Poly1305 encryption failed")
        self.out_counter.inc()
        return length + FRAME_OVERHEAD

    def seal(self, plaintext: bytes) -> bytes:
        """One frame for ``plaintext`` (at most ``MAX_PAYLOAD`` bytes), as bytes."""
        out = bytearray(len(plaintext) + FRAME_OVERHEAD)
        self.seal_into(out, 0, plaintext, len(plaintext))
        return bytes(out)

    def open_at(
        self, view: memoryview, cptr: Any, start: int, length: int, address: int = 0
    ) -> bytes | None:
        """Authenticate and decrypt ``view[start:start+length]`` (ciphertext ‖ tag).

        Small frames are decrypted in place (``cptr`` is a C pointer to the same buffer,
        made once by the caller, and ``address``, if not 0, its address as an int) and None
        is returned: the plaintext is ``view[start:start+length-16]``. Large ones come back
        as a new ``bytes``, which the reader can hand to the application without another copy.
        """
        nonce12 = self._nonce12(self.in_counter)
        small = length - TAG_SIZE < FAST_PATH_MIN
        gil = _GIL
        if small and address and gil is not None:
            p = address + start
            if gil.decrypt(p, None, None, p, length, None, 0, nonce12 + _ZERO12, self._key):
                raise _auth_error()
            self.in_counter.inc()
            return None
        aead = self._aead(nonce12) if _HAVE_INTO and not small else None
        if aead is not None:
            from cryptography.exceptions import InvalidTag  # noqa: PLC0415

            try:
                plain: bytes | None = aead.decrypt(_ZERO12, view[start : start + length], None)
            except InvalidTag:
                raise _auth_error() from None
        else:
            p = cptr + start
            if _aead_decrypt(p, _NULL, _NULL, p, length, _NULL, 0, nonce12 + _ZERO12, self._key):
                raise _auth_error()
            plain = None
        self.in_counter.inc()
        return plain

    def open(self, frame: bytes) -> bytes:
        """Check and decrypt one whole frame given as bytes (tests and tools; not the hot path)."""
        if len(frame) < HEADER_SIZE + TAG_SIZE:
            raise ProtocolError("record frame shorter than its header and tag")
        length, msg_type = _HEADER.unpack_from(frame, 0)
        _check_header(length, msg_type)
        if len(frame) != LEN_FIELD_SIZE + length:
            raise ProtocolError("record frame length does not match its length field")
        buf = bytearray(frame)
        plain = self.open_at(memoryview(buf), _ptr(buf), HEADER_SIZE, length - TYPE_FIELD_SIZE)
        if plain is not None:
            return plain
        return bytes(buf[HEADER_SIZE : LEN_FIELD_SIZE + length - TAG_SIZE])


def _auth_error() -> ProtocolError:
    # The same error for a forged, reordered, replayed or wrongly keyed frame: the counter is
    # part of the nonce, so each of them fails authentication.
    return ProtocolError("record frame failed authentication (tampered, replayed or reordered)")


def _check_length(length: int) -> None:
    if length > MAX_FRAME_LEN:
        raise ProtocolError(f"record frame length {length} exceeds the limit {MAX_FRAME_LEN}")
    if length < MIN_FRAME_LEN:
        raise ProtocolError(f"record frame length {length} is shorter than type field and tag")


def _check_header(length: int, msg_type: int) -> None:
    _check_length(length)
    # Go checks only the low byte; the upper 24 bits are unauthenticated and ignored.
    if msg_type & 0xFF != MSG_TYPE:
        raise ProtocolError(f"record frame has message type {msg_type:#x}, expected low byte 0x06")


def payload_sizes(total: int, max_payload: int = MAX_PAYLOAD) -> Iterator[int]:
    """Split ``total`` plaintext bytes into as few frames as fit, of near-equal size.

    Equal sizes avoid a tiny tail frame (1 MiB of plaintext would otherwise go out as
    1 048 556 + 20 bytes), which costs a whole frame's overhead for 20 bytes.
    """
    if total <= 0:
        return
    frames = -(-total // max_payload)
    base, extra = divmod(total, frames)
    for i in range(frames):
        yield base + (1 if i < extra else 0)


class RecordWriter:
    """Seals plaintext into frames, each in a fresh buffer ready for ``transport.write``.

    A fresh buffer per frame matters: some asyncio versions queue the caller's buffer object
    itself, so reusing one would corrupt frames still waiting to be sent.
    """

    __slots__ = ("_crypto", "max_payload")

    def __init__(self, crypto: RecordCrypto, max_payload: int = MAX_PAYLOAD) -> None:
        if not 1 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be 1..{MAX_PAYLOAD}")
        self._crypto = crypto
        self.max_payload = max_payload

    def seal_into(self, out: Any, plaintext: Any, length: int) -> int:
        """Seal one frame for ``plaintext[:length]`` at the start of ``out``; return its size."""
        return self._crypto.seal_into(out, 0, plaintext, length)

    def seal_small(self, plaintext: bytes | bytearray | memoryview) -> bytearray:
        """One frame for a small ``plaintext`` in a new buffer (``RecordCrypto.seal_small``)."""
        return self._crypto.seal_small(plaintext)

    def frames(self, data: Any) -> Iterator[bytearray]:
        """Yield the frames that carry ``data`` (any contiguous bytes-like object)."""
        view = memoryview(data).cast("B")
        pos = 0
        for size in payload_sizes(len(view), self.max_payload):
            out = bytearray(size + FRAME_OVERHEAD)
            self._crypto.seal_into(out, 0, view[pos : pos + size], size)
            pos += size
            yield out

    def seal_all(self, data: Any) -> bytes:
        """All frames for ``data`` joined (tests and small messages)."""
        return b"".join(self.frames(data))


#: Initial receive buffer: small, because a node keeps hundreds of idle pooled connections.
INITIAL_BUFFER: Final = 64 * 1024
#: Free space we want before a receive (fewer, larger ``recv`` calls).
MIN_READ: Final = 64 * 1024
#: Buffered, not yet opened ciphertext at which the I/O glue should stop reading.
HIGH_WATER: Final = 2 * 1024 * 1024
#: Hard upper bound of the receive buffer: one frame's unread plaintext, HIGH_WATER of
#: ciphertext behind it and one more receive. A peer cannot make us hold more.
MAX_BUFFER: Final = LEN_FIELD_SIZE + MAX_FRAME_LEN + HIGH_WATER + 2 * MIN_READ
#: Frames this small in a row let an empty, grown buffer shrink back.
_SMALL_FRAME: Final = 16 * 1024
_SHRINK_AFTER: Final = 64
#: ``read`` stops gathering further frames once it holds this much.
_GATHER_LIMIT: Final = 64 * 1024


def _fresh_buffer(size: int) -> mmap.mmap:
    """A zeroed receive buffer whose pages cost memory only once bytes land in them.

    An anonymous mapping, not a ``bytearray``: that one is zero-filled on creation, so every
    connection held its whole ``INITIAL_BUFFER`` resident even when only small frames ever
    arrived at its start (a node process of a 32-node network: 46 connections, 2.9 MiB).
    """
    return mmap.mmap(-1, size)


class RecordReader:
    """Receive side: ciphertext goes into one buffer, frames are opened in place, plaintext out.

    Glue code calls :meth:`get_buffer` / :meth:`buffer_updated` (``asyncio.BufferedProtocol``)
    or :meth:`feed`, then :meth:`read` for plaintext. The handshake runs before the record
    layer on the same bytes, so :meth:`take_raw` hands out unframed bytes until
    :meth:`start_records` installs the keys.

    Layout of ``_buf``: ``[_pt_pos, _pt_end)`` is unread plaintext of the frame last opened
    when it was opened in place, ``[_rpos, _rend)`` is ciphertext not yet opened, with
    ``_pt_end <= _rpos``. A large frame's plaintext is a separate ``bytes`` (``_chunk``).
    """

    def __init__(self, crypto: RecordCrypto | None = None) -> None:
        self._crypto = crypto
        self._set_buffer(_fresh_buffer(INITIAL_BUFFER))
        self._pt_pos = 0
        self._pt_end = 0
        self._chunk = b""
        self._chunk_pos = 0
        self._rpos = 0
        self._rend = 0
        self._small_run = 0
        self._error: ProtocolError | None = None

    def _set_buffer(self, buf: mmap.mmap) -> None:
        # The view and the C pointer are made once per buffer: both pin it (no resize), which
        # is fine because we only ever replace a buffer, never resize it.
        self._buf = buf
        self._view = memoryview(buf)
        self._cptr: Any = _ptr(buf)
        self._address = _addressof(_char_at(buf))

    # --- state ---------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Size of the receive buffer now (bounded by ``MAX_BUFFER``)."""
        return len(self._buf)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet opened (or, before records start, not yet taken)."""
        return self._rend - self._rpos

    @property
    def plaintext_ready(self) -> int:
        """Plaintext bytes that :meth:`read` can return without opening another frame."""
        return self._pt_end - self._pt_pos + len(self._chunk) - self._chunk_pos

    @property
    def should_pause(self) -> bool:
        """True when the glue should stop reading from the socket until the app reads."""
        return self.buffered >= HIGH_WATER

    @property
    def error(self) -> ProtocolError | None:
        """The protocol error that broke this reader, if any (every later call re-raises it)."""
        return self._error

    def start_records(self, crypto: RecordCrypto) -> None:
        """Switch from raw handshake bytes to record frames (bytes already buffered stay)."""
        self._crypto = crypto

    # --- input ---------------------------------------------------------------------------

    def get_buffer(self) -> memoryview:
        """Free space to receive into: ``MIN_READ`` bytes or more, the whole frame if it fits.

        Only valid while ``should_pause`` is false: that keeps the buffer under ``MAX_BUFFER``.
        """
        keep = self._pt_pos if self._pt_pos < self._pt_end else self._rpos
        if keep == self._rend:
            self._pt_pos = self._pt_end = self._rpos = self._rend = keep = 0
            if self._small_run >= _SHRINK_AFTER:
                self._maybe_shrink()
            return self._view  # everything was read: the whole buffer (>= MIN_READ) is free
        want = max(MIN_READ, self._frame_remaining())
        if len(self._buf) - self._rend < want:
            if keep:
                self._compact(keep)
            if len(self._buf) - self._rend < want and len(self._buf) < MAX_BUFFER:
                self._grow(min(max(self._rend + want, 2 * len(self._buf)), MAX_BUFFER))
        if self._rend == len(self._buf):
            raise RuntimeError("receive buffer full: the reader ignored should_pause")
        return self._view[self._rend :]

    def buffer_updated(self, nbytes: int) -> bool:
        """``nbytes`` were written into the view :meth:`get_buffer` returned; returns
        :attr:`should_pause`."""
        self._rend += nbytes
        return self._rend - self._rpos >= HIGH_WATER

    def feed(self, data: bytes) -> None:
        """Copy ``data`` in (for tests, fuzzing and leftovers handed over from another reader)."""
        view = memoryview(data)
        while view:
            if self.should_pause:
                raise RuntimeError("receive buffer full: read before feeding more")
            room = self.get_buffer()
            n = min(len(room), len(view))
            room[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    def _frame_remaining(self) -> int:
        """Bytes still missing from the frame at ``_rpos`` (0 if its header is incomplete)."""
        if self._crypto is None or self.buffered < LEN_FIELD_SIZE:
            return 0
        length: int = _LEN.unpack_from(self._buf, self._rpos)[0]
        if length > MAX_FRAME_LEN:
            return 0  # refused by the next read; never allocate for it
        return max(0, LEN_FIELD_SIZE + length - self.buffered)

    def _compact(self, keep: int) -> None:
        size = self._rend - keep
        self._view[0:size] = self._view[keep : self._rend]  # memoryview assignment memmoves
        self._pt_pos = max(0, self._pt_pos - keep)
        self._pt_end = max(0, self._pt_end - keep)
        self._rpos -= keep
        self._rend -= keep

    def _grow(self, size: int) -> None:
        # A new buffer rather than a resize: the live view and cffi pointer pin the old one.
        new = _fresh_buffer(size)
        new[0 : self._rend] = self._view[0 : self._rend]
        self._set_buffer(new)
        self._small_run = 0

    def _maybe_shrink(self) -> None:
        # Give memory back once a connection that moved big frames goes quiet.
        if len(self._buf) > INITIAL_BUFFER and self._small_run >= _SHRINK_AFTER:
            self._set_buffer(_fresh_buffer(INITIAL_BUFFER))
            self._small_run = 0

    # --- output --------------------------------------------------------------------------

    def take_raw(self, n: int) -> bytes | None:
        """Exactly ``n`` unframed bytes (handshake phase), or None if not all are here yet."""
        if self.buffered < n:
            return None
        start = self._rpos
        self._rpos += n
        return bytes(self._view[start : start + n])

    def frame_ready(self) -> bool:
        """True if a complete frame is buffered; raises ``ProtocolError`` for a bad header."""
        if self._error is not None:
            raise self._error
        if self.buffered < LEN_FIELD_SIZE:
            return False
        length: int = _LEN.unpack_from(self._buf, self._rpos)[0]
        try:
            _check_length(length)
        except ProtocolError as exc:
            self._error = exc
            raise
        return self.buffered >= LEN_FIELD_SIZE + length

    def _open_next(self) -> bool:
        """Open the next complete frame; False if none is complete yet.

        :meth:`frame_ready` and :func:`_check_header` inlined: this runs for every frame.
        """
        if self._error is not None:
            raise self._error
        start = self._rpos
        buffered = self._rend - start
        if buffered < LEN_FIELD_SIZE:
            return False
        length: int = _LEN.unpack_from(self._buf, start)[0]
        if not MIN_FRAME_LEN <= length <= MAX_FRAME_LEN:
            return self.frame_ready()  # raises (and remembers) the length's error
        if buffered < LEN_FIELD_SIZE + length:
            return False
        crypto = self._crypto
        if crypto is None:
            raise RuntimeError("record layer not started")
        try:
            msg_type: int = _LEN.unpack_from(self._buf, start + LEN_FIELD_SIZE)[0]
            if msg_type & 0xFF != MSG_TYPE:
                _check_header(length, msg_type)
            plain = crypto.open_at(
                self._view, self._cptr, start + HEADER_SIZE, length - TYPE_FIELD_SIZE, self._address
            )
        except ProtocolError as exc:
            self._error = exc
            raise
        if plain is None:
            self._pt_pos = start + HEADER_SIZE
            self._pt_end = start + LEN_FIELD_SIZE + length - TAG_SIZE
        else:
            self._chunk, self._chunk_pos = plain, 0
        self._rpos = start + LEN_FIELD_SIZE + length
        self._small_run = self._small_run + 1 if length <= _SMALL_FRAME else 0
        return True

    def read(self, n: int) -> bytes | None:
        """Up to ``n`` bytes of plaintext, opening frames as needed; None if none is available.

        Never waits: what is here is returned. Small frames (Go sends 4 KiB ones) are gathered
        up to ``_GATHER_LIMIT``; a large frame's plaintext is returned whole, without a copy,
        when ``n`` allows. A bad frame raises ``ProtocolError``, then every later call does;
        plaintext opened before it is returned first.
        """
        if self._error is not None:
            raise self._error
        if n <= 0:
            return b""
        parts: list[bytes] = []
        got = 0
        while got < n and got < _GATHER_LIMIT:
            if self._chunk_pos == len(self._chunk) and self._pt_pos == self._pt_end:
                try:
                    if not self._open_next():
                        break
                except ProtocolError:
                    if parts:
                        break  # remembered in self._error; raised by the next call
                    raise
                continue
            part = self._take(n - got)
            parts.append(part)
            got += len(part)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _take(self, n: int) -> bytes:
        chunk = self._chunk
        if self._chunk_pos < len(chunk):
            if self._chunk_pos == 0 and n >= len(chunk):
                self._chunk = b""
                return chunk
            end = min(self._chunk_pos + n, len(chunk))
            data = chunk[self._chunk_pos : end]
            if end == len(chunk):
                self._chunk, self._chunk_pos = b"", 0
            else:
                self._chunk_pos = end
            return data
        end = min(self._pt_pos + n, self._pt_end)
        data = bytes(self._view[self._pt_pos : end])
        self._pt_pos = end
        return data

    def take_whole(self, framer: Callable[[memoryview], int]) -> bytes | bool:
        """The whole message that ``framer`` finds at the start of the plaintext (opening the
        next complete frame if all is read), consumed; ``True`` if no plaintext is here yet,
        ``False`` if there is some that ``framer`` does not take (or the stream is broken):
        :meth:`read` it then, from the same byte.

        ``framer(plaintext)`` returns the size of the message at its start, or -1. This is
        :meth:`peek`, the framer and :meth:`skip` in one step, for the many small messages.
        """
        if self._error is not None:
            return False
        pos = self._pt_pos
        if pos == self._pt_end and self._chunk_pos == len(self._chunk):
            try:
                if not self._open_next():
                    return True
            except ProtocolError:
                return False  # remembered: read() raises it
            pos = self._pt_pos
        if self._chunk:  # a large frame's plaintext: the general way
            view = self.peek()
            if view is None:  # pragma: no cover - there is a chunk
                return True
            size = framer(view)
            if size < 0:
                return False
            data = bytes(view[:size])
            del view
            self.skip(size)
            return data
        size = framer(self._view[pos : self._pt_end])
        if size < 0:
            return False
        self._pt_pos = end = pos + size
        return self._buf[pos:end]  # the mmap's slice: a copy, as bytes

    def peek(self) -> memoryview | None:
        """The unread plaintext of the frame opened last, opening the next complete frame if
        it is all read; None if no plaintext is ready. Nothing is consumed (see :meth:`skip`).

        For a caller that takes whole messages when they lie within one frame (the transport's
        fast path for small messages) and otherwise reads with :meth:`read`, which starts
        exactly where this leaves off. The view is only valid until the next call on the
        reader. A bad frame raises ``ProtocolError`` as :meth:`read` does.
        """
        if self._error is not None:
            raise self._error
        if self._chunk_pos < len(self._chunk):
            return memoryview(self._chunk)[self._chunk_pos :]
        if self._pt_pos == self._pt_end and not self._open_next():
            return None
        if self._chunk:
            return memoryview(self._chunk)
        return self._view[self._pt_pos : self._pt_end]

    def skip(self, n: int) -> None:
        """Consume ``n`` bytes of what :meth:`peek` returned (at most all of it)."""
        if self._chunk_pos < len(self._chunk):
            end = self._chunk_pos + n
            if end >= len(self._chunk):
                self._chunk, self._chunk_pos = b"", 0
            else:
                self._chunk_pos = end
        else:
            self._pt_pos = min(self._pt_pos + n, self._pt_end)

    def at_frame_boundary(self) -> bool:
        """True if nothing partial is buffered: an EOF here is a clean end of stream."""
        return self.buffered == 0 and self.plaintext_ready == 0
