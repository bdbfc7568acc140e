"""Shared fixtures: the Go-generated gob vectors in ``<repo>/../shared/vectors/gob``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
GOB_VECTORS = SHARED / "vectors" / "gob"


def load_vectors(name: str) -> list[dict[str, Any]]:
    """The named vector file, or a skip if the shared folder is not beside the repo."""
    path = GOB_VECTORS / name
    if not path.is_file():
        pytest.skip(f"gob vectors not found at {path} (shared/ must sit beside the repo root)")
    data: list[dict[str, Any]] = json.loads(path.read_text())
    return data
