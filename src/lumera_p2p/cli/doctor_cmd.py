"""``lumera-p2p doctor``: the seed's troubleshooting, run against a config and the network."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from lumera_p2p.cli.common import EXIT_FAILURE, load_config_or_exit
from lumera_p2p.preflight import Status


def doctor(
    config: Annotated[Path, typer.Option("--config", "-c", help="The node's YAML config.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds for each network check.", min=0.1)
    ] = 5.0,
    max_peers: Annotated[
        int, typer.Option("--max-peers", help="Registry peers to try at most.", min=1)
    ] = 8,
) -> None:
    """Check what the node needs to work, each with a verdict and the fix: the key, data_dir
    (writable, free space), the chain (reachable, its chain id, listing us), the port,
    external_ip against the local interfaces and the registered address, and whether the
    bootstrap nodes accept our handshake and answer a Ping.

    Exit 0 when nothing failed (warnings allowed), 1 when a check failed, 2 for a bad config.
    """
    from lumera_p2p.doctor import run_doctor  # here: it loads the network stack

    cfg = load_config_or_exit(config)
    verdicts = asyncio.run(run_doctor(cfg, dict(os.environ), timeout=timeout, max_peers=max_peers))
    failed = sum(v.failed for v in verdicts)
    warned = sum(v.status is Status.WARN for v in verdicts)
    if as_json:
        doc = {
            "config": str(config),
            "ok": not failed,
            "failed": failed,
            "warnings": warned,
            "checks": [
                {"check": v.check, "status": v.status.value, "detail": v.detail, "fix": v.fix}
                for v in verdicts
            ],
        }
        typer.echo(json.dumps(doc, indent=2))
    else:
        for verdict in verdicts:
            typer.echo(verdict.line())
        if failed:
            typer.echo(f"# {config}: {failed} of {len(verdicts)} checks failed")
        else:
            note = f", {warned} warning{'s' if warned != 1 else ''}" if warned else ""
            typer.echo(f"# {config}: ok{note}")
    if failed:
        raise typer.Exit(EXIT_FAILURE)
