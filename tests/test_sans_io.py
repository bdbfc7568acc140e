"""The pure packages stay pure: nothing under ``kademlia/`` or ``dht/plans/`` may import I/O,
threads or a clock, directly or through the package modules it imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PURE = ("lumera_p2p.kademlia", "lumera_p2p.dht.plans")
FORBIDDEN = frozenset({"asyncio", "socket", "time", "threading", "selectors", "sqlite3"})
#: Modules reached from the pure ones that may import a forbidden module themselves.
#: ``wire.messages`` keeps a framing reader (asyncio) that the wire/gob split moves to
#: ``net/frames.py``; its message types, which plans use, do no I/O.
TOLERATED = frozenset({"lumera_p2p.wire.messages"})


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports (absolute names; relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            out.add(module)
            # ``from package import submodule`` imports the submodule.
            for alias in node.names:
                if module_file(f"{module}.{alias.name}") is not None:
                    out.add(f"{module}.{alias.name}")
    return out


def pure_modules() -> list[str]:
    names = []
    for package in PURE:
        root = SRC / Path(*package.split("."))
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(SRC).with_suffix("")
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            names.append(".".join(parts))
    return names


def forbidden_imports(start: str) -> list[str]:
    """Chains ``start -> ... -> forbidden`` through modules of this package."""
    found: list[str] = []
    seen: set[str] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [(start, (start,))]
    while stack:
        name, chain = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        for imported in imports(path, name):
            top = imported.split(".")[0]
            if top in FORBIDDEN and name not in TOLERATED:
                found.append(" -> ".join((*chain, imported)))
            if top == "lumera_p2p" and imported not in TOLERATED:
                stack.append((imported, (*chain, imported)))
    return found


def test_the_pure_packages_are_found() -> None:
    modules = pure_modules()
    assert "lumera_p2p.kademlia.lookup" in modules
    assert "lumera_p2p.dht.plans.batch_retrieve" in modules
    assert len(modules) >= 12


@pytest.mark.parametrize("module", pure_modules())
def test_no_io_threads_or_clock(module: str) -> None:
    assert forbidden_imports(module) == []


def test_the_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The walk itself works: a module importing ``time`` (directly, or as ``from time``, or
    through a package module) is reported."""
    (tmp_path / "bad.py").write_text("from time import monotonic\nimport socket as s\n")
    found = imports(tmp_path / "bad.py", "x.bad")
    assert {"time", "socket"} <= found
    assert forbidden_imports("lumera_p2p.dht.node")  # the node is the I/O side: it is caught
