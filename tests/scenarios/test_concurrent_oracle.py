"""200 concurrent remember/update/forget calls against a sequential oracle.

Hypothesis draws the operations and a start delay for each (virtual time under an autojump
MockClock), which drives many interleavings deterministically. Every write carries an HLC
version; sorting the acknowledged writes by version gives the order the store serialised them
in, and replaying that order sequentially must give exactly the final database.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import apsw
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import HashEmbedder
from triomem import EngineConfig, NotFound, open_engine

BASE = 10

op = st.one_of(
    st.tuples(st.just("remember"), st.integers(0, 0)),
    st.tuples(st.just("content"), st.integers(0, BASE - 1)),
    st.tuples(st.just("tags"), st.integers(0, BASE - 1)),
    st.tuples(st.just("forget"), st.integers(0, BASE - 1)),
)
scenario = st.lists(st.tuples(op, st.integers(0, 20)), min_size=200, max_size=200)


def _final_rows(path: Path) -> dict[str, tuple[Any, ...]]:
    conn = apsw.Connection(str(path))
    try:
        return {r[0]: tuple(r[1:]) for r in conn.execute(
            "SELECT id, content, tags, deleted_at IS NOT NULL, hlc FROM memories")}
    finally:
        conn.close()


async def _run(path: Path, ops: list[tuple[tuple[str, int], int]]) -> None:
    config = EngineConfig(embedder=HashEmbedder(), executor="inline", seed=3)
    acked: list[tuple[int, str, str, Any]] = []  # (version, kind, id, value)
    not_found: list[str] = []
    async with open_engine(path, config) as engine:
        base = [(await engine.remember(f"base memory {i}")).memory for i in range(BASE)]
        for memory in base:
            acked.append((memory.version, "remember", memory.id, memory.content))

        async def one(n: int, kind: str, target: int, delay: int) -> None:
            await trio.sleep(delay / 1000)
            memory_id = base[target].id
            try:
                if kind == "remember":
                    m = (await engine.remember(f"new memory {n}", tags=[f"n{n}"])).memory
                    acked.append((m.version, "remember", m.id, m.content))
                elif kind == "content":
                    m = await engine.update(memory_id, content=f"rewritten by op {n}")
                    acked.append((m.version, "content", m.id, m.content))
                elif kind == "tags":
                    m = await engine.update(memory_id, tags=[f"op{n}"])
                    acked.append((m.version, "tags", m.id, (f"op{n}",)))
                elif await engine.forget(memory_id):
                    acked.append((-1, "forget", memory_id, None))  # version read back below
            except NotFound:
                not_found.append(memory_id)

        async with trio.open_nursery() as nursery:
            for n, ((kind, target), delay) in enumerate(ops):
                nursery.start_soon(one, n, kind, target, delay)

    rows = _final_rows(path)
    ordered = sorted(
        (rows[i][3] if kind == "forget" else v, kind, i, value) for v, kind, i, value in acked)
    assert len({v for v, *_ in ordered}) == len(ordered), "versions must be unique"
    oracle: dict[str, dict[str, Any]] = {}
    for _, kind, memory_id, value in ordered:
        if kind == "remember":
            oracle[memory_id] = {"content": value, "tags": () if memory_id in
                                 {m.id for m in base} else None, "deleted": False}
        elif kind == "forget":
            assert not oracle[memory_id]["deleted"], "forgotten twice"
            oracle[memory_id]["deleted"] = True
        else:
            assert not oracle[memory_id]["deleted"], "a write after forget was acknowledged"
            oracle[memory_id]["content" if kind == "content" else "tags"] = value
    assert set(rows) == set(oracle), "an acknowledged write is missing or an extra row exists"
    for memory_id, expected in oracle.items():
        content, tags, deleted, _ = rows[memory_id]
        assert bool(deleted) == expected["deleted"]
        if expected["deleted"]:
            assert content is None
            continue
        assert content == expected["content"]
        if expected["tags"] is not None:
            assert tuple(json.loads(tags)) == expected["tags"]
    for memory_id in not_found:
        assert oracle[memory_id]["deleted"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario)
def test_concurrent_writes_equal_a_sequential_oracle(
        ops: list[tuple[tuple[str, int], int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(_run, Path(tmp) / "m.db", ops,
                 clock=trio.testing.MockClock(autojump_threshold=0))
