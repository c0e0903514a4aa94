"""psycopg errors to the remote contract's typed errors, and DSNs safe to show.

The sync actor acts on the error's type alone: ``RemoteTransient`` is retried with backoff
forever, ``RemotePermanent`` dead-letters the refused version, ``RemoteAuth`` pauses sync until
an operator fixes something. So when in doubt an error is transient (a retry loses nothing),
and a refusal that only an operator can fix (credentials, a missing database, a missing
extension) is ``RemoteAuth``, never permanent: dead-lettering every queued change because the
DSN names the wrong database would be wrong.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from triomem.actors._errors import RemoteUnavailable
from triomem.actors._remote import RemoteAuth, RemotePermanent, RemoteTransient

# SQLSTATE classes (PostgreSQL manual, appendix A).
_TRANSIENT_CLASSES = frozenset({
    "08",  # connection exception
    "40",  # transaction rollback: serialization failure, deadlock
    "53",  # insufficient resources: too many connections, disk full, out of memory
    "57",  # operator intervention: query_canceled (statement_timeout), admin shutdown
    "58",  # system error: I/O
    "XX",  # internal error
})
_AUTH_CLASSES = frozenset({"28"})  # invalid authorization specification
_AUTH_CODES = frozenset({
    "42501",  # insufficient_privilege
    "3D000",  # invalid_catalog_name: the database does not exist
})
_PERMANENT_CLASSES = frozenset({
    "22",  # data exception
    "23",  # integrity constraint violation
    "42",  # syntax error or access rule violation (42501 is auth, above)
    "0A",  # feature not supported
})

# A failed connection attempt carries no SQLSTATE in psycopg (libpq gives only the message),
# so the server's FATAL refusals are recognised by their (English, libpq/server) text.
_CONNECT_AUTH_PATTERNS = re.compile(
    r"password authentication failed|authentication failed|role \".*\" does not exist"
    r"|no pg_hba\.conf entry|database \".*\" does not exist|no password supplied"
    r"|password is required|permission denied|certificate",
    re.IGNORECASE,
)


def classify(exc: psycopg.Error, doing: str) -> RemoteUnavailable:
    """The typed error for ``exc`` (raised while ``doing`` something), to raise ``from exc``."""
    state = exc.sqlstate
    message = f"{doing}: {_first_line(exc)}"
    if state is None:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            if _CONNECT_AUTH_PATTERNS.search(str(exc)):
                return RemoteAuth(message)
            return RemoteTransient(message)
        # Raised by psycopg itself before reaching the server (a value it cannot adapt).
        return RemotePermanent(message)
    message = f"{doing}: [{state}] {_first_line(exc)}"
    if state in _AUTH_CODES or state[:2] in _AUTH_CLASSES:
        return RemoteAuth(message)
    if state == "55P03" or state[:2] in _TRANSIENT_CLASSES:  # 55P03: lock_not_available
        return RemoteTransient(message)
    if state[:2] in _PERMANENT_CLASSES:
        return RemotePermanent(message)
    return RemoteTransient(message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_url(dsn: str) -> str:
    """``dsn`` if it is a ``postgresql://`` (or ``postgres://``) URL; raises ``ValueError``
    (naming the masked URL) otherwise."""
    scheme = urlsplit(dsn).scheme
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"expected a postgresql:// URL, got {mask_dsn(dsn)!r}")
    return dsn


def mask_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``: the only form that is ever shown."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable dsn>"
    if not parts.scheme:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hosts}" if ":" in userinfo else f"{user}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in ("password", "sslpassword") else v)
                           for k, v in pairs], safe="*/")
    return urlunsplit(parts._replace(netloc=netloc, query=query))
