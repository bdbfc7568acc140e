"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def library_example() -> str:
    text = README.read_text()
    section = text[text.index("## Use as a library") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match is not None, "no python block under 'Use as a library'"
    return match.group(1)


def test_the_library_example_runs_against_its_own_local_network() -> None:
    code = library_example()
    assert "from lumera_p2p import P2P" in code
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=110, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["b'Hello, world!'", "1.0 1"]


def test_the_public_surface_imports_light_and_whole() -> None:
    """``import lumera_p2p`` loads no node machinery; every public name resolves."""
    probe = (
        "import sys, lumera_p2p\n"
        "heavy = [m for m in ('asyncio', 'sqlite3', 'grpc', 'pydantic', 'lumera_p2p.service')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
        "from lumera_p2p import *  # noqa\n"
        "import lumera_p2p as p\n"
        "print(all(getattr(p, n) is not None for n in p.__all__))\n"
        "print(issubclass(p.StoreFailed, p.LumeraP2PError), p.P2P.__module__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.splitlines() == ["[]", "True", "True lumera_p2p.service"]
