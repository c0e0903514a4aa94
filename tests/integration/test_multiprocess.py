"""Four OS processes, each with its own engine, on one file (the core engine issue)."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.reliability._processes import run_processes


async def test_processes_sharing_one_file_lose_nothing(tmp_path: Path) -> None:
    with trio.fail_after(120):
        report = await run_processes(tmp_path, writers=4, count=1000)
    assert report["busy_retries"] > 0, "the long transactions were never felt"
