"""``lumera-p2p sim``: a whole network in one process, on a virtual clock."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from lumera_p2p.cli.common import EXIT_USAGE, fail


def sim(
    nodes: Annotated[int, typer.Option(help="Number of nodes.", min=2)] = 1000,
    lookups: Annotated[int, typer.Option(help="FIND_NODE lookups to measure.", min=0)] = 200,
    values: Annotated[int, typer.Option(help="Values to store and retrieve.", min=0)] = 100,
    dead_fraction: Annotated[
        float, typer.Option(help="Fraction of nodes killed after joining.", min=0.0, max=0.9)
    ] = 0.0,
    loss: Annotated[
        float, typer.Option(help="Message loss probability, each direction.", min=0.0, max=0.5)
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same run).")] = 1,
    encode: Annotated[
        bool, typer.Option(help="Pass every message through the gob codec (slower).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Simulate NODES nodes joining, storing, failing and looking up; print what it measured."""
    from lumera_p2p.sim import SimConfig, run_simulation

    if lookups > 0 and nodes < 22:
        fail("--nodes must be at least 22 to measure 20-closest lookups", EXIT_USAGE)
    started = time.perf_counter()
    result = run_simulation(
        SimConfig(
            nodes=nodes,
            lookups=lookups,
            values=values,
            dead_fraction=dead_fraction,
            loss=loss,
            seed=seed,
            encode=encode,
        )
    )
    out = result.as_json()
    out["wall_seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        typer.echo(json.dumps(out))
        return
    width = max(len(k) for k in out)
    for key, value in out.items():
        typer.echo(f"{key:<{width}}  {value}")
