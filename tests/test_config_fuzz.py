"""Fuzz the config loader: whatever the file, only a ConfigError of one line per problem comes out.

The default suite runs a hypothesis sample of every kind of input in tests/config_inputs.py;
the 100,000-input run is ``slow`` (and ``bench/config_fuzz.py`` prints its timings).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumera_p2p.config import load_config
from lumera_p2p.errors import ConfigError
from tests.config_inputs import GENERATORS, KEYS, run_fuzz

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**38, max_value=10**60),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    ),
    max_leaves=20,
)
_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _load(path: Path) -> None:
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.problems
        for field, problem in exc.problems:
            assert "\n" not in field and "\n" not in problem
            assert problem


@_SETTINGS
@given(tree=_TREES)
def test_yaml_trees(tmp_path: Path, tree: Any) -> None:
    path = tmp_path / "fuzz.yml"
    path.write_text(yaml.safe_dump(tree))
    _load(path)


@_SETTINGS
@given(text=st.text(max_size=300))
def test_raw_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "raw.yml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _load(path)


@_SETTINGS
@given(data=st.binary(max_size=300))
def test_raw_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "raw.yml"
    path.write_bytes(data)
    _load(path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kind=st.sampled_from(sorted(GENERATORS)), seed=st.integers(0, 2**32))
def test_generated_inputs(tmp_path: Path, kind: str, seed: int) -> None:
    path = tmp_path / "gen.yml"
    path.write_bytes(GENERATORS[kind](random.Random(seed)).encode("utf-8", "surrogatepass"))
    _load(path)


def test_hundreds_of_generated_inputs(tmp_path: Path) -> None:
    report = run_fuzz(480, seed=7, workdir=tmp_path)
    assert report.escaped == []
    assert report.count == 480
    # Every kind ran, and the mix is not all-refused: some inputs load.
    assert set(report.by_kind) == set(GENERATORS)
    assert report.loaded > 0
    assert report.config_errors > report.count // 2


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_one_hundred_thousand_inputs(tmp_path: Path) -> None:
    report = run_fuzz(100_000, seed=1, workdir=tmp_path)
    assert report.escaped == []
    assert report.count == 100_000
