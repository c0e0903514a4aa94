"""The engine's typed errors: a small flat tree, one meaning each.

Raw ``apsw`` exceptions never leave the store actor; callers see only these. Every error has a
stable ``kind`` string that the MCP layer puts in ``data.kind`` and the CLI prints.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TriomemError(Exception):
    """Base of every error the engine raises on purpose."""

    kind: ClassVar[str] = "error"

    def details(self) -> dict[str, Any]:
        """Machine-readable facts about this error (field names, ids, hints)."""
        return {}


class EngineClosed(TriomemError):
    """The engine (or the actor behind it) has shut down; nothing was done."""

    kind = "engine_closed"


class Overloaded(TriomemError):
    """A bounded mailbox was full and the caller asked not to wait; nothing was done."""

    kind = "overloaded"


class InvalidMemory(TriomemError):
    """Input failed validation. ``field`` names the offending argument; nothing was written."""

    kind = "invalid_input"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def details(self) -> dict[str, Any]:
        return {"field": self.field, "reason": self.reason}


class NotFound(TriomemError):
    """No live memory has that id (it never existed or was forgotten)."""

    kind = "not_found"

    def __init__(self, memory_id: str) -> None:
        super().__init__(f"no memory with id {memory_id!r}")
        self.memory_id = memory_id

    def details(self) -> dict[str, Any]:
        return {"id": self.memory_id}


class DuplicateContent(TriomemError):
    """An update would give a memory the exact content of another live memory in its space."""

    kind = "duplicate_content"

    def __init__(self, existing_id: str) -> None:
        super().__init__(f"another memory in this space already has this content: {existing_id}")
        self.existing_id = existing_id

    def details(self) -> dict[str, Any]:
        return {"existing_id": self.existing_id}


class StoreBusy(TriomemError):
    """Another process held the database write lock past the configured retry budget.

    The write was not applied; it is safe to retry.
    """

    kind = "store_busy"

    def __init__(self, retries: int, waited: float) -> None:
        super().__init__(
            f"database stayed locked by another process: gave up after {retries} retries "
            f"over {waited:.3f}s; nothing was written"
        )
        self.retries = retries
        self.waited = waited

    def details(self) -> dict[str, Any]:
        return {"retries": self.retries, "waited_seconds": round(self.waited, 3)}


class StoreCorrupt(TriomemError):
    """The file at the path is not a usable triomem database; it was left untouched."""

    kind = "store_corrupt"


class StoreIOError(TriomemError):
    """The database could not be written (disk full, read-only, I/O error). Not acknowledged."""

    kind = "store_io"


class SchemaTooNew(TriomemError):
    """The database was written by a newer triomem; this version refuses to touch it."""

    kind = "schema_too_new"

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"database schema version {found} is newer than this triomem supports ({supported}); "
            "upgrade triomem"
        )
        self.found = found
        self.supported = supported

    def details(self) -> dict[str, Any]:
        return {"found": self.found, "supported": self.supported}


class EmbedderMismatch(TriomemError):
    """The database's vectors come from another embedding model than the one configured."""

    kind = "embedder_mismatch"

    def __init__(self, stored: str, configured: str) -> None:
        super().__init__(
            f"database vectors were made by {stored!r} but the engine is configured with "
            f"{configured!r}; open it with --embedder matching the database, or convert it "
            f"with `triomem reembed --embedder <name>`"
        )
        self.stored = stored
        self.configured = configured

    def details(self) -> dict[str, Any]:
        return {"stored": self.stored, "configured": self.configured}


class EmbedderUnavailable(TriomemError):
    """The embedding model could not be loaded or reached (missing weights, endpoint down)."""

    kind = "embedder_unavailable"


class RecallTimeout(TriomemError):
    """Recall had nothing ready by its deadline; retry after ``retry_after`` seconds."""

    kind = "recall_timeout"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"recall is still working; retry in {int(retry_after * 1000)} ms")
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"retry_after_ms": int(self.retry_after * 1000)}


class RemoteUnavailable(TriomemError):
    """The remote backend did not answer in time or refused; local work is unaffected."""

    kind = "remote_unavailable"
