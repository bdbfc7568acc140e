"""The data_dir lock: a second process (or store) is refused with a message naming the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lumera_p2p.config import load_config
from lumera_p2p.errors import DataDirLocked, StoreError
from lumera_p2p.localnet import create_localnet
from lumera_p2p.store import LocalStore
from lumera_p2p.store.lock import LOCK_FILE

#: A second process that opens the store, reports how that went, and closes it.
OPENER = textwrap.dedent(
    """
    import asyncio, sys
    from lumera_p2p.store import LocalStore
    from lumera_p2p.errors import DataDirLocked

    async def main() -> None:
        try:
            store = await LocalStore.open(sys.argv[1])
        except DataDirLocked as exc:
            print(f"locked: {exc}")
            sys.exit(1)
        await store.close()
        print("opened")

    asyncio.run(main())
    """
)

#: A holder that opens the store, says so, and waits to be killed.
HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from lumera_p2p.store import LocalStore

    async def main() -> None:
        await LocalStore.open(sys.argv[1])
        print("holding", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def open_in_subprocess(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", OPENER, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_second_process_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    store = await LocalStore.open(tmp_path)
    try:
        proc = open_in_subprocess(tmp_path)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        message = proc.stdout.strip()
        assert message.startswith("locked: ")
        assert str(tmp_path) in message
        assert f"process {os.getpid()}" in message
        assert str(tmp_path / LOCK_FILE) in message
        # The second process never touched the databases of the first.
        assert await store.count() == 0
    finally:
        await store.close()
    proc = open_in_subprocess(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "opened"


async def test_a_second_store_in_the_same_process_is_refused(tmp_path: Path) -> None:
    store = await LocalStore.open(tmp_path)
    try:
        with pytest.raises(DataDirLocked, match="in use by process") as info:
            await LocalStore.open(tmp_path)
        assert isinstance(info.value, StoreError)
        await store.store_value(b"still served")
    finally:
        await store.close()
    again = await LocalStore.open(tmp_path)
    await again.close()


async def test_a_failed_open_releases_the_lock(tmp_path: Path) -> None:
    (tmp_path / "data001.sqlite3").write_bytes(b"not a database" * 500)
    with pytest.raises(StoreError, match="corrupt"):
        await LocalStore.open(tmp_path)
    os.remove(tmp_path / "data001.sqlite3")
    store = await LocalStore.open(tmp_path)
    await store.close()


async def test_the_lock_goes_with_a_killed_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(DataDirLocked, match=f"process {holder.pid}"):
            await LocalStore.open(tmp_path)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
    # The kernel dropped the lock with the process; the stale file does not block a restart.
    assert (tmp_path / LOCK_FILE).exists()
    store = await LocalStore.open(tmp_path)
    await store.close()


@pytest.mark.timeout(120)
async def test_run_on_a_locked_data_dir_exits_1_with_one_error_line(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, 1)
    data_dir = load_config(local[0].config_path).p2p.data_dir
    store = await LocalStore.open(data_dir)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lumera_p2p", "run", "--config", str(local[0].config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        await store.close()
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert str(data_dir) in errors[0]
    assert f"process {os.getpid()}" in errors[0]
    assert "Traceback" not in proc.stderr
    assert "listening on" not in proc.stderr
