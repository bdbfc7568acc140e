"""The wire package keeps no module state that changes: no module-level name is bound twice or
declared ``global``, and no module-level name holds a list, dict or set display (constants are
tuples, ``MappingProxyType`` or frozen objects)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lumera_p2p.wire

WIRE = Path(lumera_p2p.wire.__file__).parent
MUTABLE_DISPLAYS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def module_state_problems(source: str) -> list[str]:
    """What in ``source`` rebinds or mutably holds module-level state."""
    tree = ast.parse(source)
    problems: list[str] = []
    bound: set[str] = set()
    for stmt in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        elif isinstance(stmt, ast.AugAssign):
            problems.append(f"line {stmt.lineno}: augmented assignment at module level")
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    if name.id in bound:
                        problems.append(f"line {stmt.lineno}: {name.id} is bound again")
                    bound.add(name.id)
                    if isinstance(value, MUTABLE_DISPLAYS) and name.id != "__all__":
                        problems.append(f"line {stmt.lineno}: {name.id} holds a mutable display")
    problems += [
        f"line {node.lineno}: global statement"
        for node in ast.walk(tree)
        if isinstance(node, ast.Global)
    ]
    return problems


@pytest.mark.parametrize("path", sorted(WIRE.rglob("*.py")), ids=lambda p: str(p.relative_to(WIRE)))
def test_no_module_state_is_rebound(path: Path) -> None:
    assert module_state_problems(path.read_text()) == []


def test_the_check_finds_what_gob_py_did() -> None:
    """The pattern the old wire/gob.py had: a seed global replaced once the decoder existed."""
    old = "SEED = MappingProxyType({})\n\ndef compile():\n    return 1\n\nSEED = compile()\n"
    assert module_state_problems(old) == ["line 6: SEED is bound again"]
    assert module_state_problems("X: int = 0\ndef f():\n    global X\n    X += 1\n") == [
        "line 3: global statement"
    ]
    assert module_state_problems("CACHE = {}\nTABLE = [1]\n") == [
        "line 1: CACHE holds a mutable display",
        "line 2: TABLE holds a mutable display",
    ]
