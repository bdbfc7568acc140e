"""Who the supernodes are: the :class:`Registry` protocol, :class:`Supernode`, and the chain rules.

A registry answers four questions: which supernodes exist (with their latest state and P2P
endpoint), what one supernode looks like, and the two secure-handshake checks (is this address a
registered supernode; does this account exist). :class:`~lumera_p2p.chain.GrpcRegistry` asks the
Lumera chain; :class:`~lumera_p2p.chain.StaticRegistry` reads a file for private networks.

The conversion from a chain record follows the Go supernode's ``loadBootstrapCandidatesFromChain``
and ``parseSupernodeAddress`` (spec chain-and-keys.md §1.4) so both nodes see the same peers:

* latest state = the state record with the greatest height, scanning in list order with a strict
  ``>`` from -1, so on equal heights the *first* record wins (Go parity; the chain itself treats
  the last list element as current) and negative heights are never picked;
* latest IP = the ``prev_ip_addresses`` entry chosen the same way; its host is taken with Go's
  ``url.Parse`` / ``net.SplitHostPort`` sequence (scheme and port stripped);
* port = ``p2p_port`` when it is a decimal uint16, else 4445.

Deliberate differences from Go, all for inputs the chain does not produce: a record whose account
is not a valid ``lumera1…`` address is skipped (no peer could ever authenticate as it); a state
number outside the enum reads as UNSPECIFIED (eligible for nothing, as in Go); ``Supernode.host``
drops the brackets of an IPv6 literal so it can be dialled; and :func:`endpoint_rejection` is
stricter than Go's ``parseNode`` (it also refuses port 0, unparseable host names, bracketed or
zoned link-local literals and ``localhost``, which Go refuses only on its own port).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from lumera_p2p.config_plain import DEFAULT_P2P_PORT
from lumera_p2p.errors import IdentityError
from lumera_p2p.identity.keys import routing_id as _routing_id
from lumera_p2p.identity.keys import validate_address

if TYPE_CHECKING:  # protobuf only for the annotations: a node on a static registry never loads it
    from lumera_p2p.chain._generated.lumera.supernode.v1 import supernode_pb2

__all__ = [
    "DEFAULT_P2P_PORT",
    "ROUTING_STATES",
    "STORE_STATES",
    "Registry",
    "Supernode",
    "SupernodeState",
    "bootstrap_candidates",
    "endpoint_rejection",
    "format_endpoint",
    "latest_ip",
    "latest_state",
    "parse_host",
    "parse_p2p_port",
    "supernode_from_record",
]


class SupernodeState(IntEnum):
    """``lumera.supernode.v1.SuperNodeState`` (the ``SUPERNODE_STATE_`` prefix dropped)."""

    UNSPECIFIED = 0
    ACTIVE = 1
    DISABLED = 2
    STOPPED = 3
    PENALIZED = 4
    POSTPONED = 5
    STORAGE_FULL = 6

    @classmethod
    def from_wire(cls, value: int) -> SupernodeState:
        """The state for an enum number; numbers this build does not know read as UNSPECIFIED."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNSPECIFIED


#: States whose supernodes may be routed to and answer lookups.
ROUTING_STATES: frozenset[SupernodeState] = frozenset(
    {SupernodeState.ACTIVE, SupernodeState.POSTPONED, SupernodeState.STORAGE_FULL}
)
#: States whose supernodes may be sent values to store.
STORE_STATES: frozenset[SupernodeState] = frozenset({SupernodeState.ACTIVE})


@dataclass(frozen=True)
class Supernode:
    """One registered supernode as the P2P layer sees it.

    ``host`` is None when the chain record has no usable IP entry; such a node still counts for
    the allowlists (as in Go) but cannot be dialled. ``state_height`` is the height of the state
    record that was chosen (-1 if none had a height of 0 or more).
    """

    address: str
    state: SupernodeState
    host: str | None
    port: int
    state_height: int
    validator_address: str = ""

    @property
    def routing_eligible(self) -> bool:
        """May be in the routing table and answer lookups (ACTIVE, POSTPONED, STORAGE_FULL)."""
        return self.state in ROUTING_STATES

    @property
    def store_eligible(self) -> bool:
        """May be sent values to store (ACTIVE only)."""
        return self.state in STORE_STATES

    @cached_property
    def routing_id(self) -> bytes:
        """The 32-byte Kademlia ID: BLAKE3-256 of the address bytes."""
        return _routing_id(self.address)

    @property
    def endpoint(self) -> str | None:
        """``host:port`` (``[v6]:port`` for IPv6), or None without a host."""
        return None if self.host is None else format_endpoint(self.host, self.port)


class Registry(Protocol):
    """The chain's view of the network. Errors reaching it raise :class:`ChainError`.

    ``is_registered_supernode`` and ``account_exists`` are the secure handshake's
    ``PeerVerifier``; any registry can be passed where a verifier is expected.
    """

    async def list_supernodes(self) -> list[Supernode]:
        """Every registered supernode with at least one state record, in any state."""
        ...

    async def get_supernode(self, address: str) -> Supernode | None:
        """The supernode whose account is ``address``, or None if it is not registered."""
        ...

    async def is_registered_supernode(self, address: str) -> bool:
        """True if ``address`` is the account of a registered supernode; its state is not
        checked (the Go handshake does not check it either)."""
        ...

    async def account_exists(self, address: str) -> bool:
        """True if the chain has an account at ``address``."""
        ...

    async def close(self) -> None:
        """Release connections; the registry must not be used afterwards."""
        ...


# --- the chain record → Supernode ------------------------------------------------------------


def latest_state(
    records: Iterable[supernode_pb2.SuperNodeStateRecord],
) -> tuple[SupernodeState, int]:
    """The state with the greatest height and that height; first record wins on ties.

    Go starts from height -1 and compares with a strict ``>``: on equal heights the first record
    in list order is kept, and records with negative heights are never chosen, leaving
    ``(UNSPECIFIED, -1)``.
    """
    state, height = SupernodeState.UNSPECIFIED, -1
    for record in records:
        if record.height > height:
            state, height = SupernodeState.from_wire(record.state), record.height
    return state, height


def latest_ip(entries: Iterable[supernode_pb2.IPAddressHistory]) -> str:
    """The address of the ``prev_ip_addresses`` entry with the greatest height ("" if none).

    Same scan as :func:`latest_state`; a latest entry with an empty address means "no IP" even
    if an older entry has one, as in Go.
    """
    address, height = "", -1
    for entry in entries:
        if entry.height > height:
            address, height = entry.address, entry.height
    return address


# Go's strings.TrimSpace (unicode.IsSpace); str.strip() would also eat \x1c-\x1f.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
# What Go's url.Parse takes as "scheme://authority": authority ends at '/', '?' or '#'.
_URL_AUTHORITY = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//([^/?#]*)")
# ASCII characters Go's url.Parse refuses in a host (net/url shouldEscape in encodeHost mode).
# '%' is refused too: Go would accept some percent-escapes; no registered address uses them.
_URL_HOST_OK = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!$&'()*+,;=:[]<>\"-_.~"
)


def parse_host(address: str) -> str:
    """The host part of a registered IP entry, exactly as Go's ``parseSupernodeAddress``.

    ``scheme://host[:port][/…]`` gives ``host`` (an IPv6 literal loses its brackets only when a
    port follows, as ``net.SplitHostPort`` does); ``host:port`` and ``[v6]:port`` give the host;
    anything else (bare IPv4, hostname, bare or bracketed IPv6) is returned trimmed, as is.
    """
    text = address.strip(_GO_SPACE)
    match = _URL_AUTHORITY.match(text)
    if match is not None and not _has_control_char(text):
        host = match.group(1).rpartition("@")[2]  # drop user info
        if host and _url_host_ok(host):
            split = _split_host_port(host)
            return (host if split is None else split).strip(_GO_SPACE)
    split = _split_host_port(text)
    if split is not None:
        return split.strip(_GO_SPACE)
    return text


def _has_control_char(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _url_host_ok(host: str) -> bool:
    """Would Go's ``url.Parse`` accept this authority host (characters and optional port)?"""
    if any(ord(c) < 0x80 and c not in _URL_HOST_OK for c in host):
        return False
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            return False
        return _valid_optional_port(host[end + 1 :])
    colon = host.rfind(":")
    return colon < 0 or _valid_optional_port(host[colon:])


def _valid_optional_port(text: str) -> bool:
    return text == "" or (text[0] == ":" and all("0" <= c <= "9" for c in text[1:]))


def _split_host_port(text: str) -> str | None:
    """The host from Go's ``net.SplitHostPort``, or None where Go returns an error."""
    colon = text.rfind(":")
    if colon < 0:
        return None  # missing port
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or end + 1 != colon:
            return None  # missing ']', missing port or too many colons
        host, after_open, after_close = text[1:end], 1, end + 1
    else:
        host, after_open, after_close = text[:colon], 0, 0
        if ":" in host:
            return None  # too many colons (a bare IPv6 address)
    if "[" in text[after_open:] or "]" in text[after_close:]:
        return None
    return host


def parse_p2p_port(text: str) -> int:
    """``p2p_port`` as Go's ``strconv.ParseUint(s, 10, 16)`` reads it, else 4445."""
    if not text or not all("0" <= c <= "9" for c in text):
        return DEFAULT_P2P_PORT  # empty, signs, spaces, non-ASCII digits: Go refuses them all
    digits = text.lstrip("0")
    if len(digits) > 5:  # also keeps int() away from its huge-string limit
        return DEFAULT_P2P_PORT
    value = int(digits or "0")
    return value if value <= 0xFFFF else DEFAULT_P2P_PORT


def _dialable_host(host: str) -> str | None:
    """None for an empty host; an IPv6 literal without its brackets; anything else unchanged."""
    if not host:
        return None
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return host
        return inner
    return host


def supernode_from_record(record: supernode_pb2.SuperNode) -> Supernode | None:
    """Convert one chain record (§1.4 steps 1-8); None for a record the P2P layer skips.

    Skipped: no state records; an empty (after trimming) or malformed ``supernode_account``.
    A record without a usable IP entry is kept with ``host=None``.
    """
    if not record.states:
        return None
    address = record.supernode_account.strip(_GO_SPACE)
    if not address:
        return None
    try:
        validate_address(address)
    except IdentityError:
        return None
    state, height = latest_state(record.states)
    ip = latest_ip(record.prev_ip_addresses)
    host = _dialable_host(parse_host(ip)) if ip else None
    return Supernode(
        address=address,
        state=state,
        host=host,
        port=parse_p2p_port(record.p2p_port),
        state_height=height,
        validator_address=record.validator_address,
    )


# --- endpoint hygiene (§1.4 step 9) ----------------------------------------------------------

_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
# Go's net.IP.IsPrivate: RFC 1918 and RFC 4193 only (not Python's much wider is_private, which
# would also refuse documentation and benchmarking ranges that Go lets through).
_PRIVATE_NETS = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("fc00::/7"),
)
_LINK_LOCAL_MULTICAST_V4 = ipaddress.ip_network("224.0.0.0/24")


def format_endpoint(host: str, port: int) -> str:
    """``host:port``, bracketing an IPv6 literal (``[2001:db8::1]:4445``)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def endpoint_rejection(host: str, port: int, *, allow_private: bool) -> str | None:
    """Why ``host:port`` must not be used as a peer endpoint, or None when it may.

    Always refused: an empty host, a port outside 1-65535, a name that is neither an IP address
    nor a hostname, unspecified and link-local addresses. Loopback and private (RFC 1918, ULA)
    addresses and ``localhost`` are refused unless ``allow_private`` (the Go node's
    ``INTEGRATION_TEST=true``; local networks). Other hostnames pass unresolved, as in Go.
    """
    if not host:
        return "empty host"
    if not 0 < port <= 0xFFFF:
        return f"port {port} is not in 1-65535"
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(literal)
    except ValueError:
        if not _HOSTNAME_RE.match(host):
            return f"{host!r} is neither an IP address nor a hostname"
        if not allow_private and host.rstrip(".").lower() == "localhost":
            return "loopback address"
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # Go compares ::ffff:a.b.c.d as the IPv4 address
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_link_local or _is_link_local_multicast(ip):
        return "link-local address"
    if allow_private:
        return None
    if ip.is_loopback:
        return "loopback address"
    if any(ip in net for net in _PRIVATE_NETS if net.version == ip.version):
        return "private address"
    return None


def _is_link_local_multicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv4Address):
        return ip in _LINK_LOCAL_MULTICAST_V4
    packed = ip.packed
    return packed[0] == 0xFF and packed[1] & 0x0F == 0x02  # ffX2::/16, as Go tests it


def bootstrap_candidates(
    supernodes: Iterable[Supernode], *, allow_private: bool, self_endpoint: str | None = None
) -> list[Supernode]:
    """The routing-eligible supernodes one may dial (§1.4 steps 9-10), one per endpoint.

    Drops nodes that are not routing-eligible, have no host, whose endpoint is ``self_endpoint``
    (compare in :func:`format_endpoint` form) or fails :func:`endpoint_rejection`. Two nodes
    claiming one endpoint: the later one wins, as Go's map keyed by ``ip:port`` does.
    """
    by_endpoint: dict[str, Supernode] = {}
    for node in supernodes:
        endpoint = node.endpoint
        if not node.routing_eligible or node.host is None or endpoint is None:
            continue
        if endpoint == self_endpoint:
            continue
        if endpoint_rejection(node.host, node.port, allow_private=allow_private) is not None:
            continue
        by_endpoint[endpoint] = node
    return list(by_endpoint.values())
