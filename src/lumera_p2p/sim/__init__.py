"""Whole-network simulation on the in-memory transport and a virtual clock."""

from lumera_p2p.sim.network import SimConfig, SimResult, SimulatedNetwork, run_simulation

__all__ = ["SimConfig", "SimResult", "SimulatedNetwork", "run_simulation"]
