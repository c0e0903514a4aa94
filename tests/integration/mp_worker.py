"""A separate OS process for the multi-process tests.

``writer PATH N OUT``: open an engine on PATH, write N memories from 16 concurrent tasks,
dump the acknowledged ids and the store statistics to OUT as JSON.
``locker PATH HOLDS HOLD_SECONDS``: hold the write lock repeatedly, like a long transaction.
"""

from __future__ import annotations

import json
import os
import sys
import time

import apsw
import attrs
import trio

from tests.fakes import HashEmbedder
from triomem import EngineConfig, StoreBusy, open_engine


async def writer(path: str, count: int) -> dict[str, object]:
    tag = f"p{os.getpid()}"
    acked: list[str] = []
    busy = 0
    async with open_engine(path, EngineConfig(embedder=HashEmbedder())) as engine:

        async def task(offset: int) -> None:
            nonlocal busy
            for i in range(offset, count, 16):
                try:
                    result = await engine.remember(f"{tag} memory {i}", tags=[tag])
                except StoreBusy:
                    busy += 1
                    continue
                assert result.created
                acked.append(result.memory.id)

        async with trio.open_nursery() as nursery:
            for offset in range(16):
                nursery.start_soon(task, offset)
        stats = (await engine.statistics()).store
    return {"acked": acked, "gave_up": busy, "stats": attrs.asdict(stats)}


def locker(path: str, holds: int, seconds: float) -> None:
    conn = apsw.Connection(path)
    conn.set_busy_timeout(5000)
    for _ in range(holds):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO meta(key, value) VALUES('locker', 'x') "
                     "ON CONFLICT(key) DO UPDATE SET value = value || 'x'")
        time.sleep(seconds)  # a long write transaction, as another program might hold
        conn.execute("COMMIT")
        time.sleep(seconds)
    conn.close()


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        result = trio.run(writer, sys.argv[2], int(sys.argv[3]))
        with open(sys.argv[4], "w") as f:
            json.dump(result, f)
    else:
        locker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
