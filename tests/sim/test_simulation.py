"""Whole simulated networks: lookup accuracy and durability, with and without faults.

The default suite runs networks of 20 to 100 nodes (in a worker process, beside the other
tests: ``conftest.py``); the 200- and 1,000-node runs are ``slow`` (same assertions). Every
run is the real DHT code on the virtual clock, so it takes CPU, not time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from lumera_p2p.sim import SimConfig, SimResult, run_simulation

Simulated = Callable[[str, int], SimResult]


def check_no_faults(result: SimResult) -> None:
    assert result.accuracy >= 0.999
    assert result.store_success_rate == 1.0
    assert result.retrieve_success_rate == 1.0
    assert result.rounds_median <= 4
    assert result.extra["poisoned_values"] == 0
    # Stores stop their lookups early, yet find exactly the nearest nodes (brute force).
    assert result.extra["store_exactness"] == 1.0


def check_dead_and_lossy(result: SimResult) -> None:
    assert result.live_nodes == result.nodes * 4 // 5
    assert result.retrieve_success_rate == 1.0
    assert result.accuracy >= 0.99
    assert result.extra["lost_messages"] > 0  # the loss really happened
    assert result.extra["store_exactness"] == 1.0  # the stores made before the faults


@pytest.mark.simulation("no_faults")
def test_no_faults_small_network(simulated: Simulated) -> None:
    result = simulated("no_faults", 0)
    assert result.nodes == 60
    check_no_faults(result)


@pytest.mark.simulation("dead_and_lossy")
def test_dead_nodes_and_loss_small_network(simulated: Simulated) -> None:
    result = simulated("dead_and_lossy", 0)
    assert result.nodes == 100
    check_dead_and_lossy(result)


@pytest.mark.slow
def test_no_faults_200_nodes() -> None:
    check_no_faults(run_simulation(SimConfig(nodes=200, lookups=200, values=50, seed=11)))


@pytest.mark.slow
def test_dead_nodes_and_loss_200_nodes() -> None:
    check_dead_and_lossy(
        run_simulation(
            SimConfig(nodes=200, lookups=200, values=60, dead_fraction=0.2, loss=0.01, seed=12)
        )
    )


@pytest.mark.simulation("same_seed", "same_seed")
def test_same_seed_same_run(simulated: Simulated) -> None:
    # Two separate runs of one config (in the worker, one after the other) agree exactly.
    first = simulated("same_seed", 0).as_json()
    second = simulated("same_seed", 1).as_json()
    assert first == second
    assert first["lost_messages"] > 0 and first["live_nodes"] == 18


def test_cli_prints_one_json_object() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lumera_p2p",
            "sim",
            "--nodes",
            "25",
            "--lookups",
            "10",
            "--values",
            "5",
            "--seed",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    doc = json.loads(proc.stdout)
    for field in (
        "nodes",
        "lookups",
        "accuracy",
        "rounds_median",
        "rounds_p95",
        "messages_median",
        "messages_p95",
        "store_success_rate",
        "retrieve_success_rate",
    ):
        assert field in doc
    assert doc["nodes"] == 25


@pytest.mark.slow
def test_thousand_nodes_no_faults() -> None:
    result = run_simulation(SimConfig(nodes=1000, lookups=1000, values=100, seed=1))
    assert result.accuracy >= 0.999
    assert result.retrieve_success_rate == 1.0


@pytest.mark.slow
def test_thousand_nodes_dead_and_lossy() -> None:
    result = run_simulation(
        SimConfig(nodes=1000, lookups=500, values=200, dead_fraction=0.2, loss=0.01, seed=1)
    )
    assert result.retrieve_success_rate == 1.0
    assert result.accuracy >= 0.99
