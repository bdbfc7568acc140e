"""Base58 (the Bitcoin alphabet), fast for the 32-byte keys of every store and lookup.

The ``base58`` package spells the same digits (the tests check both against each other on any
bytes), but it builds its text one digit and one ``bytes`` concatenation at a time: ~30 µs for
a 32-byte key, where a put spells a key about nine times (every BatchFindNode answer is keyed
by its target's base58). Here the number is taken apart two digits at a time through a table of
the 3,364 digit pairs, and put together from the digits with one integer operation per digit.
"""

from __future__ import annotations

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_PAIRS = tuple(a + b for a in ALPHABET for b in ALPHABET)
_VALUES = {c: i for i, c in enumerate(ALPHABET)}
_NOT_A_DIGIT = 255
#: ``bytes.translate`` table: an ASCII byte to its digit, or ``_NOT_A_DIGIT``.
_DIGIT_OF = bytes(_VALUES.get(chr(b), _NOT_A_DIGIT) for b in range(256))


def encode(raw: bytes) -> str:
    """The base58 text of ``raw`` (each leading zero byte becomes a leading ``1``)."""
    n = int.from_bytes(raw, "big")
    pairs: list[str] = []
    while n:
        n, low = divmod(n, 58 * 58)
        pairs.append(_PAIRS[low])
    pairs.reverse()
    # The first pair may start with a zero digit ("1"), which is no digit of the number.
    text = "".join(pairs).lstrip("1")
    zeros = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * zeros + text if zeros else text


def decode(text: str) -> bytes:
    """The bytes spelled by base58 ``text``; ``ValueError`` names a character outside the
    alphabet."""
    # Each character becomes its digit in one C pass (an ASCII character outside the
    # alphabet becomes _NOT_A_DIGIT; any other fails to encode), so the loop below does only
    # integer arithmetic: no lookup per character.
    try:
        digits = text.encode("ascii").translate(_DIGIT_OF)
    except UnicodeEncodeError:
        digits = b""
    if len(digits) != len(text) or _NOT_A_DIGIT in digits:
        bad = next(c for c in text if c not in _VALUES)
        raise ValueError(f"{bad!r} is not a base58 digit")
    n = 0
    for digit in digits:
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body
