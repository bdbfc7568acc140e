"""The retry delays of the replication plans: Go's exponential backoff, exactly."""

from __future__ import annotations

import pytest

from lumera_p2p.dht.plans import Backoff

from .world import Fixed


def test_the_delay_is_the_interval_spread_by_the_randomization_share() -> None:
    b = Backoff(
        initial=2.0, multiplier=3.0, randomization=0.25, max_interval=100.0, max_elapsed=1e3
    )
    assert b.next_delay(1, 0.0, Fixed(0.0)) == pytest.approx(1.5)
    assert b.next_delay(1, 0.0, Fixed(0.5)) == pytest.approx(2.0)
    assert b.next_delay(1, 0.0, Fixed(1.0)) == pytest.approx(2.5)
    # The third failure waits initial * multiplier ** 2, spread the same way.
    assert b.next_delay(3, 0.0, Fixed(0.0)) == pytest.approx(13.5)
    assert b.next_delay(3, 0.0, Fixed(1.0)) == pytest.approx(22.5)
    # The interval stops growing at max_interval.
    assert b.next_delay(10, 0.0, Fixed(0.0)) == pytest.approx(75.0)


def test_a_retry_that_would_end_exactly_at_the_budget_is_still_made() -> None:
    b = Backoff(initial=5.0, multiplier=1.0, randomization=0.0, max_elapsed=10.0)
    assert b.next_delay(1, 5.0, Fixed(0.3)) == pytest.approx(5.0)
    assert b.next_delay(4, 5.0, Fixed(0.3)) == pytest.approx(5.0)
    assert b.next_delay(1, 5.001, Fixed(0.3)) is None
    assert Backoff(max_elapsed=0.0).next_delay(1, 0.0, Fixed(0.5)) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"initial": 1e-9},
        {"multiplier": 1.0},
        {"max_interval": 1e-9},
        {"randomization": 0.0},
        {"randomization": 0.999},
        {"max_elapsed": 0.0},
    ],
)
def test_the_edges_of_the_allowed_settings_are_allowed(fields: dict[str, float]) -> None:
    Backoff(**fields)


INTERVAL = r"^a backoff needs a positive interval and a multiplier of at least 1$"
SHARE = r"^randomization is a share below 1 and max_elapsed is not negative$"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"initial": 0.0}, INTERVAL),
        ({"multiplier": 0.999}, INTERVAL),
        ({"max_interval": 0.0}, INTERVAL),
        ({"randomization": -0.001}, SHARE),
        ({"randomization": 1.0}, SHARE),
        ({"max_elapsed": -0.001}, SHARE),
    ],
)
def test_settings_out_of_range_are_refused_by_name(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**fields)
