"""Smoke test of ``tools/mutation.py``: mutmut on a toy project, read back per module."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mutmut")

TOOL = Path(__file__).resolve().parents[2] / "tools" / "mutation.py"

TOY = """\
def scale(x: int) -> int:
    return x * 3 + 1


def is_even(x: int) -> bool:
    return x % 2 == 0
"""

# Pins scale; is_even is only called, never checked, so its mutants survive.
TOY_TESTS = """\
from toy.calc import is_even, scale


def test_scale() -> None:
    assert scale(2) == 7


def test_is_even_runs() -> None:
    is_even(3)
"""

PYPROJECT = """\
[project]
name = "toy"
version = "0"

[tool.mutmut]
source_paths = ["src/toy"]
also_copy = ["src/toy"]
pytest_add_cli_args_test_selection = ["tests"]
pytest_add_cli_args = ["-p", "no:cacheprovider"]
"""


@pytest.mark.slow  # runs mutmut end to end on a toy project (seconds of CPU)
def test_the_driver_reports_kills_and_survivors(tmp_path: Path) -> None:
    (tmp_path / "src" / "toy").mkdir(parents=True)
    (tmp_path / "src" / "toy" / "__init__.py").write_text("")
    (tmp_path / "src" / "toy" / "calc.py").write_text(TOY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_text(textwrap.dedent(TOY_TESTS))
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "conftest.py").write_text(
        "import sys, pathlib\nsys.path.insert(0, str(pathlib.Path(__file__).parent / 'src'))\n"
    )
    proc = subprocess.run(
        [sys.executable, str(TOOL), "--root", str(tmp_path), "run", "--json", "calc"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    calc = report["toy.calc"]
    assert calc["total"] > 5
    survivors = calc["survivors"]
    assert survivors, "is_even's mutants cannot be killed by a test that checks nothing"
    assert all("is_even" in s["name"] for s in survivors)
    assert all(s["line"] == 6 for s in survivors)  # the line of is_even's body
    assert any(s["before"] == "return x % 2 == 0" and "!=" in s["after"] for s in survivors)
    assert calc["killed"] == calc["total"] - len(survivors)
    assert 0 < calc["rate"] < 100
    # --min turns a low rate into a failing exit status.
    low = subprocess.run(
        [
            sys.executable,
            str(TOOL),
            "--root",
            str(tmp_path),
            "report",
            "--min",
            "100",
            "--no-diffs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert low.returncode == 1
    assert "toy.calc" in low.stdout and "surviving" in low.stdout


def test_modules_are_named_by_dotted_name_or_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("mutation_tool", TOOL)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "mutation_tool", tool)  # its dataclasses look it up
    spec.loader.exec_module(tool)
    (tmp_path / "src" / "toy" / "plans").mkdir(parents=True)
    (tmp_path / "src" / "toy" / "__init__.py").write_text("")
    for name, full in [
        ("plans.store", "toy.plans.store"),
        ("toy.plans", "toy.plans"),
        ("plans/store.py", "toy.plans.store"),
        ("src/toy/plans/store.py", "toy.plans.store"),
        ("src/toy/plans/", "toy.plans"),
        ("plans/__init__.py", "toy.plans"),
    ]:
        assert tool.full_name(tmp_path, name) == full, name
    assert tool.matches("toy.plans.store", ["toy.plans"])
    assert not tool.matches("toy.plansx", ["toy.plans"])
