"""The ``files`` config section and its options: sizes, bounds, errors naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lumera_p2p.components import file_options
from lumera_p2p.config import config_from_mapping
from lumera_p2p.errors import ConfigError
from lumera_p2p.files import FileOptions


def files(tmp_path: Path, **section: Any) -> FileOptions:
    data = {"key_name": "n", "p2p": {"data_dir": "d"}, "files": section}
    return file_options(config_from_mapping(data, tmp_path))


def test_defaults_and_sizes(tmp_path: Path) -> None:
    assert files(tmp_path) == FileOptions()
    assert FileOptions().chunk_size == 1 << 20
    assert files(tmp_path, chunk_size="4MiB").chunk_size == 4 << 20
    assert files(tmp_path, chunk_size=65536).chunk_size == 65536
    assert files(tmp_path, min_replicas=3).min_replicas == 3


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"chunk_size": "1KiB"}, "files.chunk_size"),
        ({"chunk_size": "65MiB"}, "files.chunk_size"),
        ({"chunk_size": "lots"}, "files.chunk_size"),
        ({"store_batch_chunks": 0}, "files.store_batch_chunks"),
        ({"readahead_chunks": 65}, "files.readahead_chunks"),
        ({"min_replicas": 0}, "files.min_replicas"),
        ({"resume_window": -1}, "files.resume_window"),
        ({"retrieve_attempts": 0}, "files.retrieve_attempts"),
        ({"chunk_sise": 4096}, "files.chunk_sise"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, section: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        files(tmp_path, **section)
    assert caught.value.field == field


def test_the_options_check_themselves() -> None:
    for bad in (
        {"chunk_size": 100},
        {"store_batch_chunks": 0},
        {"readahead_chunks": 0},
        {"min_replicas": 0},
        {"resume_window": 0},
        {"retrieve_attempts": 0},
    ):
        with pytest.raises(ValueError):
            FileOptions(**bad)
