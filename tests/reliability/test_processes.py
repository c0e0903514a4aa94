"""Eight processes, one file, writes mixed with recalls beside long transactions. The short
variant runs in CI; the long one (5000 writes each) with --runslow and in the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.reliability._figures import emit
from tests.reliability._processes import run_processes


def _emit(name: str, report: dict[str, object], holds: int, **extra: object) -> None:
    # faults: the long write transactions another process holds in the writers' way
    emit(name, **{**report, "inputs": report["writes"], "faults": holds, "crashes": 0, **extra})


async def test_eight_processes_short(tmp_path: Path) -> None:
    with trio.fail_after(180):
        report = await run_processes(tmp_path, writers=8, count=400, recall_every=20)
    _emit("8 processes, one file (8 x 400 writes)", report, holds=6)
    assert report["recalls"] > 0
    assert report["busy_retries"] > 0


@pytest.mark.slow
async def test_eight_processes_long(tmp_path: Path) -> None:
    with trio.fail_after(1800):
        report = await run_processes(tmp_path, writers=8, count=5000, recall_every=50,
                                     holds=20)
    _emit("8 processes, one file (8 x 5000 writes)", report, holds=20, variant="long")
    assert report["busy_retries"] > 0
