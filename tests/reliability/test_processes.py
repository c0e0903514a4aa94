"""Eight processes, one file, writes mixed with recalls beside long transactions. The short
variant runs in CI; the long one (5000 writes each) with --runslow and in the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.reliability._processes import run_processes


async def test_eight_processes_short(tmp_path: Path) -> None:
    with trio.fail_after(180):
        report = await run_processes(tmp_path, writers=8, count=400, recall_every=20)
    assert report["recalls"] > 0
    assert report["busy_retries"] > 0


@pytest.mark.slow
async def test_eight_processes_long(tmp_path: Path) -> None:
    with trio.fail_after(1800):
        report = await run_processes(tmp_path, writers=8, count=5000, recall_every=50,
                                     holds=20)
    assert report["busy_retries"] > 0
