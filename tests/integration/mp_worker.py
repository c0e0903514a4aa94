"""A separate OS process for the multi-process and crash tests.

``writer PATH N OUT [RECALL_EVERY]``: open an engine on PATH, write N memories from 16
concurrent tasks (recalling after every RECALL_EVERY writes), dump the acknowledged ids and
the store statistics to OUT as JSON.
``locker PATH HOLDS HOLD_SECONDS``: hold the write lock repeatedly, like a long transaction.
``acker PATH``: write until killed, printing each acknowledged id on stdout as it returns.
``backer PATH DEST``: take online backups of PATH to DEST in small steps until killed.
``opener PATH``: print "ready", then open (create and migrate) PATH and hold it open.
``filler PATH BYTES``: with the file size limited to BYTES (RLIMIT_FSIZE: a full disk), write
until writes keep failing; print one JSON line per outcome.
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
from triomem import EngineConfig, StoreBusy, TriomemError, open_engine


async def writer(path: str, count: int, recall_every: int = 0) -> dict[str, object]:
    tag = f"p{os.getpid()}"
    acked: list[str] = []
    busy = recalls = 0
    async with open_engine(path, EngineConfig(embedder=HashEmbedder())) as engine:

        async def task(offset: int) -> None:
            nonlocal busy, recalls
            for i in range(offset, count, 16):
                try:
                    result = await engine.remember(f"{tag} memory {i}", tags=[tag])
                except StoreBusy:
                    busy += 1
                    continue
                assert result.created
                acked.append(result.memory.id)
                if recall_every and i % recall_every == 0:
                    await engine.recall(f"{tag} memory {i}", limit=5)
                    recalls += 1

        async with trio.open_nursery() as nursery:
            for offset in range(16):
                nursery.start_soon(task, offset)
        stats = (await engine.statistics()).store
    return {"acked": acked, "gave_up": busy, "recalls": recalls,
            "stats": attrs.asdict(stats)}


async def acker(path: str) -> None:
    async with open_engine(path, EngineConfig(embedder=HashEmbedder())) as engine:

        async def task(k: int) -> None:
            for i in range(10**9):
                memory = (await engine.remember(f"acked by {os.getpid()}.{k} #{i}")).memory
                print(memory.id, flush=True)  # only after remember returned: acknowledged

        async with trio.open_nursery() as nursery:
            for k in range(8):
                nursery.start_soon(task, k)


async def filler(path: str) -> None:
    async with open_engine(path, EngineConfig(embedder=HashEmbedder())) as engine:
        failures = 0
        for i in range(100_000):
            try:
                memory = (await engine.remember(f"filling the disk {i} " + "x" * 2000)).memory
            except TriomemError as exc:
                print(json.dumps({"error": exc.kind}), flush=True)
                failures += 1
                if failures >= 5:
                    break
            else:
                print(json.dumps({"acked": memory.id}), flush=True)
        recall = await engine.recall("filling the disk 3")  # reads still answer
        print(json.dumps({"reads": len(recall.hits)}), flush=True)


async def opener(path: str) -> None:
    async with open_engine(path, EngineConfig(embedder=HashEmbedder())):
        await trio.sleep_forever()


async def backer(path: str, dest: str) -> None:
    async with open_engine(path, EngineConfig(embedder=HashEmbedder())) as engine:
        while True:
            await engine.backup(dest, overwrite=True, pages_per_step=1)


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
        result = trio.run(writer, sys.argv[2], int(sys.argv[3]),
                          int(sys.argv[5]) if len(sys.argv) > 5 else 0)
        with open(sys.argv[4], "w") as f:
            json.dump(result, f)
    elif sys.argv[1] == "acker":
        trio.run(acker, sys.argv[2])
    elif sys.argv[1] == "backer":
        trio.run(backer, sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "filler":
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
        trio.run(filler, sys.argv[2])
    elif sys.argv[1] == "opener":
        print("ready", flush=True)
        trio.run(opener, sys.argv[2])
    else:
        locker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
