"""The Go node's optional minimum-version gate (``p2p/kademlia/version_gate.go``), pure.

Every node advertises its release in ``Node.Version`` of the ``Sender`` it sends. A node
configured with a minimum closes the connection of a peer whose request comes from a version
below it (no answer), and refuses such a peer in ``addNode`` (it never enters the routing
table); an empty or unparsable peer version counts as below. Without a minimum nothing is gated.

The version rules (p2p-behaviour.md §4.5), Go's ``parseSemver``: trim white space and one
leading ``v``/``V``, cut at the first ``-`` or ``+``, split on ``.``, and read up to three parts
by their leading ASCII digits (``"1rc1"`` is 1); missing parts are 0. A major part without
digits makes the version invalid; a later part without digits ends the parse. A number too big
for Go's ``int`` (64-bit) makes it invalid too, as ``strconv.Atoi`` fails there.
"""

from __future__ import annotations

from typing import Final, TypeAlias

#: (major, minor, patch)
Semver: TypeAlias = tuple[int, int, int]

#: What Go's ``strings.TrimSpace`` trims (``unicode.IsSpace``); Python's ``str.strip`` would
#: also trim U+001C..U+001F, which Go keeps.
GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_GO_INT_MAX: Final = (1 << 63) - 1


def go_trim_space(text: str) -> str:
    """``strings.TrimSpace``."""
    return text.strip(GO_SPACE)


def parse_semver(text: str) -> Semver | None:
    """The (major, minor, patch) of a version string by Go's rules, or None if invalid."""
    s = go_trim_space(text)
    if s[:1] in ("v", "V"):
        s = s[1:]
    for i, char in enumerate(s):
        if char in "-+":
            s = s[:i]
            break
    out = [0, 0, 0]
    for index, part in enumerate(s.split(".", 3)[:3]):
        digits = 0
        while digits < len(part) and "0" <= part[digits] <= "9":
            digits += 1
        if digits == 0:
            if index == 0:
                return None
            break
        # Leading zeros are fine for Atoi; past 19 significant digits it is out of range
        # (and Python's int() would refuse very long digit strings anyway).
        significant = part[:digits].lstrip("0")
        if len(significant) > len(str(_GO_INT_MAX)) or int(significant or "0") > _GO_INT_MAX:
            return None
        out[index] = int(significant or "0")
    return out[0], out[1], out[2]


def version_too_old(peer_version: str, minimum: str) -> bool:
    """Go's ``versionTooOld``: is a peer advertising ``peer_version`` below ``minimum``?

    An empty ``minimum`` disables the gate; so does an unparsable one (Go fails open rather
    than split the network over a typo; our config refuses such a value before it gets here).
    An empty or unparsable peer version is too old whenever a minimum is in force.
    """
    required = parse_semver(minimum)  # None for an empty one too
    if required is None:
        return False
    offered = parse_semver(peer_version)
    return offered is None or offered < required
