"""Every error class lives in ``errors.py`` and is part of the public surface."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import lumera_p2p
from lumera_p2p import errors

SRC = Path(lumera_p2p.__file__).resolve().parent


def error_classes_outside_errors_py() -> set[tuple[str, str]]:
    names = {n for n, v in vars(errors).items() if inspect.isclass(v)}
    found = set()
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        if relative == "errors.py" or relative.startswith("chain/_generated"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                # A subclass of the package's errors is one of them; private control-flow
                # exceptions (tcp's _StaleConnection, the CLI's UsageFailure) are not.
                if bases & names:
                    found.add((relative, node.name))
    return found


def test_no_error_class_is_defined_outside_errors_py() -> None:
    assert error_classes_outside_errors_py() == set()


def test_every_error_is_exported_from_the_package() -> None:
    defined = {
        n for n, v in vars(errors).items() if inspect.isclass(v) and issubclass(v, Exception)
    }
    assert defined <= set(lumera_p2p.__all__)
    for name in defined:
        assert getattr(lumera_p2p, name) is getattr(errors, name)
    assert issubclass(lumera_p2p.GobEncodeError, errors.LumeraP2PError)
    for name in defined:
        assert issubclass(getattr(errors, name), errors.LumeraP2PError)
