"""``lumera-p2p symbols add`` and ``list`` on a stopped node's files, and the config's path."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner, Result

from lumera_p2p.cli.app import app
from lumera_p2p.components import rqstore_path
from lumera_p2p.config import load_config
from lumera_p2p.localnet import create_localnet
from lumera_p2p.store.rqstore import RQSTORE_DB


def symbols(*args: str) -> Result:
    return CliRunner().invoke(app, ["symbols", *args], env={"COLUMNS": "200"})


def test_add_then_list_on_a_stopped_node(tmp_path: Path) -> None:
    [local] = create_localnet(tmp_path / "net", 1)
    config = str(local.config_path)
    directory = tmp_path / "tx-cli"
    directory.mkdir()
    added = symbols("add", "tx-cli", str(directory), "--config", config)
    assert added.exit_code == 0, added.output
    assert f"registered tx-cli {directory}" in added.output
    pending = symbols("add", "tx-later", str(directory), "-c", config, "--first-batch-pending")
    assert pending.exit_code == 0, pending.output
    assert (local.config_path.parent / "data" / RQSTORE_DB).exists()
    listed = symbols("list", "--config", config, "--json")
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["txid"], r["first_batch_stored"], r["completed"]) for r in rows] == [
        ("tx-cli", True, False),
        ("tx-later", False, False),
    ]
    table = symbols("list", "--config", config)
    assert table.exit_code == 0 and "first batch pending" in table.output


def test_bad_registrations_exit_2_with_one_line(tmp_path: Path) -> None:
    [local] = create_localnet(tmp_path / "net", 1)
    config = str(local.config_path)
    for txid, directory in (("a/b", tmp_path), ("tx", tmp_path / "absent")):
        result = symbols("add", txid, str(directory), "--config", config)
        assert result.exit_code == 2, result.output
        assert result.output.count("Error:") == 1 and "Traceback" not in result.output


def test_db_path_defaults_to_the_data_dir_and_resolves_against_the_config(
    tmp_path: Path,
) -> None:
    [local] = create_localnet(tmp_path, 1)
    config = load_config(local.config_path)
    assert rqstore_path(config) == config.p2p.data_dir / RQSTORE_DB
    doc = yaml.safe_load(local.config_path.read_text())
    doc["symbols"] = {"db_path": "raptorq_files/rq/rqstore.db"}
    local.config_path.write_text(yaml.safe_dump(doc))
    moved = load_config(local.config_path)
    assert rqstore_path(moved) == local.config_path.parent / "raptorq_files/rq/rqstore.db"
