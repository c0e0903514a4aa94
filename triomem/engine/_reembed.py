"""``reembed_database``: convert a database file to another embedder (``triomem reembed``)."""

from __future__ import annotations

import functools
import os

import apsw
import attrs

from ..actors._errors import StoreBusy
from ..actors._reembed import Progress, reembed
from ..actors._schema import connect
from ..embedders import Embedder, load_embedder
from ._config import EngineConfig
from ._engine import _executor


async def reembed_database(
    path: str | os.PathLike[str],
    embedder: str | Embedder,
    progress: Progress | None = None,
    config: EngineConfig | None = None,
) -> int:
    """Re-embed every live memory in ``path`` with ``embedder`` and switch the file to it.

    Safe beside running engines: they keep serving; those configured with the old embedder get
    EmbedderMismatch on their next write once the switch commits. Returns the number of vectors.
    ``progress(done, total)`` is called from a worker thread. Raises StoreBusy if another
    process holds the write lock for more than the (generous) busy timeout.
    """
    config = config or EngineConfig()
    executor = _executor(config, 1)
    if isinstance(embedder, str):
        embedder = await executor.run(functools.partial(load_embedder, embedder))
    pragmas = attrs.evolve(config.store_config().pragmas, busy_timeout_ms=10_000)
    model = embedder

    def work() -> int:
        conn = connect(os.fspath(path), pragmas)
        try:
            return reembed(conn, model, progress)
        except apsw.BusyError:
            raise StoreBusy(0, pragmas.busy_timeout_ms / 1000) from None
        finally:
            conn.close()

    return await executor.run(work)
