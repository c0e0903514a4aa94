"""Remote backends for replication: PostgreSQL (``postgresql://``) and a hub
(``ws://host:port/hub``, another triomem engine)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..actors._errors import InvalidMemory
from ..actors._remote import RemoteBackend

SCHEMES = ("postgresql", "postgres", "ws", "wss")


def remote_from_url(url: str, *, dim: int, model: str, token: str | None = None
                    ) -> RemoteBackend:
    """The backend a URL names. Does no I/O (connections open on first use).

    Raises InvalidMemory("remote.url") for a URL of no known kind.
    """
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        from .postgres import PgSettings, PostgresRemote

        return PostgresRemote(PgSettings(url, dim, model))
    if scheme in ("ws", "wss"):
        from .hub import HubRemote

        return HubRemote(url, token=token)
    raise InvalidMemory("remote.url", f"expected one of {', '.join(s + '://' for s in SCHEMES)}"
                                      f"; got {scheme or 'no scheme'}")


__all__ = ["SCHEMES", "remote_from_url"]
