"""The §1.4 rules: host and port parsing, latest-record selection, eligibility, endpoint hygiene."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumera_p2p.chain import (
    ROUTING_STATES,
    STORE_STATES,
    Supernode,
    SupernodeState,
    bootstrap_candidates,
    endpoint_rejection,
    format_endpoint,
    supernode_from_record,
)
from lumera_p2p.chain._generated.lumera.supernode.v1 import supernode_pb2
from lumera_p2p.chain.registry import latest_ip, latest_state, parse_host, parse_p2p_port
from lumera_p2p.identity.keys import address_from_bytes

SPEC_ADDRESS = "lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8"
SPEC_ROUTING_ID = "d1cde1cd5308b2bf93a151c381d19584a08aed44b30223c20702dfadcc13d531"
A = address_from_bytes(b"\xaa" * 20)
B = address_from_bytes(b"\xbb" * 20)
C = address_from_bytes(b"\xcc" * 20)


# --- host and port -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("203.0.113.10", "203.0.113.10"),
        ("203.0.113.20:4444", "203.0.113.20"),
        ("  203.0.113.20:4444\n", "203.0.113.20"),
        ("sn1.example.org", "sn1.example.org"),
        ("sn1.example.org:4445", "sn1.example.org"),
        ("https://sn1.example.org", "sn1.example.org"),
        ("https://sn1.example.org:443/path?q#f", "sn1.example.org"),
        ("http://user:pw@203.0.113.1:80", "203.0.113.1"),
        ("//203.0.113.1:80", "203.0.113.1"),
        ("[2001:db8::1]:4445", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "[2001:db8::1]"),  # SplitHostPort: missing port -> as is
        ("https://[2001:db8::1]:443", "2001:db8::1"),
        ("https://[2001:db8::1]", "[2001:db8::1]"),
        ("host:", "host"),
        ("", ""),
        # Go oddities, kept for parity:
        ("https://", "https"),  # no URL host; SplitHostPort("https://") -> "https"
        ("http://host:abc", "http://host:abc"),  # url.Parse fails, SplitHostPort too
        ("https://bad host:1", "https://bad host:1"),
    ],
)
def test_parse_host_matches_go(text: str, host: str) -> None:
    assert parse_host(text) == host


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("", 4445),
        ("abc", 4445),
        ("70000", 4445),
        ("65536", 4445),
        ("4446", 4446),
        ("65535", 65535),
        ("0", 0),  # a valid uint16 for Go; endpoint_rejection refuses it later
        ("0004446", 4446),
        (" 4446", 4445),
        ("+4446", 4445),
        ("-1", 4445),
        ("٤٤٤٦", 4445),  # Arabic-Indic digits: str.isdigit() says yes, Go says no
        ("1" * 5000, 4445),
        ("0" * 5000 + "1", 1),
    ],
)
def test_parse_p2p_port_matches_go(text: str, port: int) -> None:
    assert parse_p2p_port(text) == port


_hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9]{0,5}){0,3}", fullmatch=True)
_kinds = st.one_of(
    st.tuples(st.just("v4"), st.ip_addresses(v=4).map(str)),
    st.tuples(st.just("name"), _hostnames),
    st.tuples(st.just("v6"), st.ip_addresses(v=6).map(str)),
)


@given(
    kind_host=_kinds,
    scheme=st.sampled_from(["", "http://", "https://", "grpc://", "tcp+tls://", "//"]),
    port=st.none() | st.integers(0, 65535),
    userinfo=st.sampled_from(["", "user@", "u:p@"]),
    tail=st.sampled_from(["", "/", "/x/y", "?q=1", "#frag"]),
    pad=st.tuples(st.sampled_from(["", " ", "\t", "\n "]), st.sampled_from(["", " ", "\r\n"])),
    bracket_bare_v6=st.booleans(),
)
def test_parse_host_property(
    kind_host: tuple[str, str],
    scheme: str,
    port: int | None,
    userinfo: str,
    tail: str,
    pad: tuple[str, str],
    bracket_bare_v6: bool,
) -> None:
    """Build an address from known parts; the parsed host (then dialable host) is the part."""
    kind, host = kind_host
    bracketed = kind == "v6" and (port is not None or bool(scheme) or bracket_bare_v6)
    shown = f"[{host}]" if bracketed else host
    text = shown + ("" if port is None else f":{port}")
    if scheme:
        text = scheme + userinfo + text + tail
    text = pad[0] + text + pad[1]
    got = parse_host(text)
    if bracketed and port is None:
        assert got == f"[{host}]"  # Go keeps the brackets when no port follows
    else:
        assert got == host
    record = supernode_pb2.SuperNode(
        supernode_account=A,
        states=[supernode_pb2.SuperNodeStateRecord(state=1, height=1)],
        prev_ip_addresses=[supernode_pb2.IPAddressHistory(address=text, height=1)],
    )
    node = supernode_from_record(record)
    assert node is not None
    assert node.host == host  # brackets gone: it can be dialled


# --- latest record ------------------------------------------------------------------------------

_heights = st.integers(-3, 6) | st.integers(-(2**63), 2**63 - 1)


@given(st.lists(st.tuples(st.integers(0, 9), _heights), max_size=8))
def test_latest_state_against_brute_force(pairs: list[tuple[int, int]]) -> None:
    records = [supernode_pb2.SuperNodeStateRecord(state=s, height=h) for s, h in pairs]
    eligible = [(s, h) for s, h in pairs if h >= 0]
    if not eligible:
        expected = (SupernodeState.UNSPECIFIED, -1)
    else:
        top = max(h for _, h in eligible)
        first = next(s for s, h in pairs if h == top)  # the first of the tallest wins
        expected = (SupernodeState(first) if first <= 6 else SupernodeState.UNSPECIFIED, top)
    assert latest_state(records) == expected


@given(st.lists(st.tuples(st.sampled_from(["", "a", "b", "c"]), _heights), max_size=8))
def test_latest_ip_against_brute_force(pairs: list[tuple[str, int]]) -> None:
    entries = [supernode_pb2.IPAddressHistory(address=a, height=h) for a, h in pairs]
    eligible = [h for _, h in pairs if h >= 0]
    expected = next(a for a, h in pairs if h == max(eligible)) if eligible else ""
    assert latest_ip(entries) == expected


def test_equal_heights_first_record_wins() -> None:
    records = [
        supernode_pb2.SuperNodeStateRecord(state=1, height=10),
        supernode_pb2.SuperNodeStateRecord(state=3, height=10),
    ]
    assert latest_state(records) == (SupernodeState.ACTIVE, 10)
    assert latest_state(reversed(records)) == (SupernodeState.STOPPED, 10)


# --- record conversion ----------------------------------------------------------------------------


def _record(**fields: object) -> supernode_pb2.SuperNode:
    base: dict[str, object] = {
        "supernode_account": A,
        "validator_address": "lumeravaloper1x",
        "states": [{"state": 1, "height": 5}],
        "prev_ip_addresses": [{"address": "203.0.113.7", "height": 5}],
        "p2p_port": "4446",
    }
    base.update(fields)
    return supernode_pb2.SuperNode(**base)  # type: ignore[arg-type]


def test_record_conversion() -> None:
    assert supernode_from_record(_record()) == Supernode(
        A, SupernodeState.ACTIVE, "203.0.113.7", 4446, 5, "lumeravaloper1x"
    )
    assert supernode_from_record(_record(states=[])) is None
    assert supernode_from_record(_record(supernode_account="  ")) is None
    assert supernode_from_record(_record(supernode_account="cosmos1notours")) is None
    assert supernode_from_record(_record(supernode_account=f"\t{A} ")).address == A  # type: ignore[union-attr]
    no_ip = supernode_from_record(_record(prev_ip_addresses=[]))
    assert no_ip is not None and no_ip.host is None and no_ip.endpoint is None
    # The latest entry is empty: no IP, even though an older one has an address (Go parity).
    stale = _record(prev_ip_addresses=[{"address": "1.2.3.4", "height": 1}, {"height": 9}])
    assert supernode_from_record(stale).host is None  # type: ignore[union-attr]
    blank = _record(prev_ip_addresses=[{"address": "   ", "height": 1}])
    assert supernode_from_record(blank).host is None  # type: ignore[union-attr]
    unknown_state = supernode_from_record(_record(states=[{"state": 42, "height": 1}]))
    assert unknown_state is not None and unknown_state.state is SupernodeState.UNSPECIFIED
    negative = supernode_from_record(_record(states=[{"state": 1, "height": -4}]))
    assert negative is not None
    assert (negative.state, negative.state_height) == (SupernodeState.UNSPECIFIED, -1)


def test_supernode_properties() -> None:
    for state in SupernodeState:
        node = Supernode(SPEC_ADDRESS, state, "203.0.113.1", 4445, 1)
        assert node.routing_eligible == (
            state in {SupernodeState.ACTIVE, SupernodeState.POSTPONED, SupernodeState.STORAGE_FULL}
        )
        assert node.store_eligible == (state is SupernodeState.ACTIVE)
    assert STORE_STATES < ROUTING_STATES
    node = Supernode(SPEC_ADDRESS, SupernodeState.ACTIVE, "2001:db8::5", 4445, 1)
    assert node.routing_id.hex() == SPEC_ROUTING_ID
    assert node.endpoint == "[2001:db8::5]:4445"
    assert format_endpoint("203.0.113.1", 1) == "203.0.113.1:1"
    assert format_endpoint("[::1]", 2) == "[::1]:2"
    assert format_endpoint("example.org", 3) == "example.org:3"


# --- endpoint hygiene -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "strict", "relaxed"),
    [
        ("203.0.113.5", 4445, None, None),
        ("100.64.0.1", 4445, None, None),  # CGNAT: not "private" for Go
        ("192.0.2.1", 4445, None, None),  # documentation range: Go lets it through
        ("2001:db8::1", 4445, None, None),
        ("sn1.example.org", 4445, None, None),
        ("127.0.0.1", 4445, "loopback address", None),
        ("::1", 4445, "loopback address", None),
        ("[::1]", 4445, "loopback address", None),
        ("localhost", 4445, "loopback address", None),
        ("10.1.2.3", 4445, "private address", None),
        ("172.16.0.1", 4445, "private address", None),
        ("172.32.0.1", 4445, None, None),
        ("192.168.1.1", 4445, "private address", None),
        ("fd12::1", 4445, "private address", None),
        ("::ffff:10.0.0.1", 4445, "private address", None),
        ("0.0.0.0", 4445, "unspecified address", "unspecified address"),
        ("::", 4445, "unspecified address", "unspecified address"),
        ("169.254.1.1", 4445, "link-local address", "link-local address"),
        ("fe80::1", 4445, "link-local address", "link-local address"),
        ("fe80::1%eth0", 4445, "link-local address", "link-local address"),
        ("224.0.0.5", 4445, "link-local address", "link-local address"),
        ("ff02::1", 4445, "link-local address", "link-local address"),
        ("", 4445, "empty host", "empty host"),
        ("203.0.113.5", 0, "port 0 is not in 1-65535", "port 0 is not in 1-65535"),
    ],
)
def test_endpoint_rejection(host: str, port: int, strict: str | None, relaxed: str | None) -> None:
    assert endpoint_rejection(host, port, allow_private=False) == strict
    assert endpoint_rejection(host, port, allow_private=True) == relaxed


def test_endpoint_rejection_refuses_garbage_names() -> None:
    for host in ("bad host", "http://x", "[nope]", "a..b", "-x.org"):
        reason = endpoint_rejection(host, 4445, allow_private=True)
        assert reason is not None and "neither an IP address nor a hostname" in reason


def test_bootstrap_candidates() -> None:
    active = Supernode(A, SupernodeState.ACTIVE, "203.0.113.1", 4445, 1)
    postponed = Supernode(B, SupernodeState.POSTPONED, "203.0.113.2", 4445, 1)
    stopped = Supernode(C, SupernodeState.STOPPED, "203.0.113.3", 4445, 1)
    private = Supernode(C, SupernodeState.ACTIVE, "10.0.0.3", 4445, 1)
    hostless = Supernode(C, SupernodeState.ACTIVE, None, 4445, 1)
    same_endpoint = Supernode(C, SupernodeState.STORAGE_FULL, "203.0.113.2", 4445, 1)
    nodes = [active, postponed, stopped, private, hostless]
    assert bootstrap_candidates(nodes, allow_private=False) == [active, postponed]
    assert bootstrap_candidates(nodes, allow_private=True) == [active, postponed, private]
    assert bootstrap_candidates(nodes, allow_private=False, self_endpoint="203.0.113.1:4445") == [
        postponed
    ]
    # Two nodes on one endpoint: the later one wins (Go's map keyed by ip:port).
    assert bootstrap_candidates([postponed, same_endpoint], allow_private=False) == [same_endpoint]
