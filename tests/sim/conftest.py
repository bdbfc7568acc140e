"""The default suite's simulations run in a worker process, beside the rest of the suite.

Each is seconds of pure CPU (the real DHT code on the virtual clock) and deterministic from
its seed, so where it runs does not change its result: as soon as collection is over, the
simulations the selected tests need are started in one spawned process, and each test waits
for its result. On two cores the suite then uses both.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.pool import AsyncResult, Pool

import pytest

from lumera_p2p.sim import SimConfig, SimResult, run_simulation
from lumera_p2p.sim.repair import RepairSimConfig, RepairSimResult, run_repair_simulation

#: Simulations by name: the tests marked ``@pytest.mark.simulation(name, ...)`` get them.
SIMULATIONS: dict[str, SimConfig] = {
    "no_faults": SimConfig(nodes=60, lookups=100, values=30, seed=11),
    "dead_and_lossy": SimConfig(
        nodes=100, lookups=60, values=20, dead_fraction=0.2, loss=0.01, seed=12
    ),
    "same_seed": SimConfig(nodes=20, lookups=5, values=5, dead_fraction=0.1, loss=0.02, seed=5),
}

#: Repair simulations by name (``@pytest.mark.simulation`` names these too); each runs before
#: the others in the worker: it is the longest.
REPAIR_SIMULATIONS: dict[str, RepairSimConfig] = {
    "repair_200": RepairSimConfig(nodes=200, values=1000, fresh=60, seed=3),
}

Job = AsyncResult[SimResult] | AsyncResult[RepairSimResult]
POOL = pytest.StashKey[tuple[Pool, dict[tuple[str, int], Job]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "simulation(name, ...): results of the named simulations, run in a worker"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the simulations the selected tests need (a test may ask for one twice)."""
    wanted = [
        (name, copy)
        for item in session.items
        for marker in item.iter_markers("simulation")
        for copy, name in enumerate(marker.args)
    ]
    if not wanted:
        return
    pool = multiprocessing.get_context("spawn").Pool(1)
    jobs: dict[tuple[str, int], Job] = {}
    for key in sorted(set(wanted), key=lambda k: k[0] not in REPAIR_SIMULATIONS):
        name = key[0]
        if name in REPAIR_SIMULATIONS:
            jobs[key] = pool.apply_async(run_repair_simulation, (REPAIR_SIMULATIONS[name],))
        else:
            jobs[key] = pool.apply_async(run_simulation, (SIMULATIONS[name],))
    session.config.stash[POOL] = (pool, jobs)


def pytest_sessionfinish(session: pytest.Session) -> None:
    started = session.config.stash.get(POOL, None)
    if started is not None:
        started[0].terminate()  # a run stopped early (-x) leaves nothing behind
        started[0].join()


@pytest.fixture
def simulated(request: pytest.FixtureRequest) -> Callable[[str, int], SimResult]:
    """``simulated(name, copy=0)``: that simulation's result, waiting for it if need be."""
    pool_and_jobs = request.config.stash.get(POOL, None)

    def result(name: str, copy: int = 0) -> SimResult:
        if pool_and_jobs is None:  # not started (e.g. the test was run by its function)
            return run_simulation(SIMULATIONS[name])
        got = pool_and_jobs[1][(name, copy)].get()
        assert isinstance(got, SimResult)
        return got

    return result


@pytest.fixture
def repair_simulated(request: pytest.FixtureRequest) -> Callable[[str], RepairSimResult]:
    """``repair_simulated(name)``: that repair simulation's result, waiting for it if need be."""
    pool_and_jobs = request.config.stash.get(POOL, None)

    def result(name: str) -> RepairSimResult:
        if pool_and_jobs is None:
            return run_repair_simulation(REPAIR_SIMULATIONS[name])
        got = pool_and_jobs[1][(name, 0)].get()
        assert isinstance(got, RepairSimResult)
        return got

    return result
