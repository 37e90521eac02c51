"""The state store: cases, counts, rejects, offsets, the registry and MGPS fits.

``open_store(url)`` gives the implementation the URL names: ``sqlite:///file.db`` (the
embedded default) or ``postgresql://user@host:port/db`` (production). Both run the same SQL
and pass the same contract tests. A PostgreSQL URL carries its TLS settings as libpq
parameters, e.g. ``?sslmode=verify-full&sslrootcert=/etc/pvsignal/postgres/ca.crt``.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pvsignal.errors import InputError
from pvsignal.store.sql import BatchWrite, CodedCounts, Reject, ScopeCounts, SqlStore

DEFAULT_URL = "sqlite:///pvsignal.db"

__all__ = [
    "DEFAULT_URL",
    "BatchWrite",
    "CodedCounts",
    "Reject",
    "ScopeCounts",
    "SqlStore",
    "open_store",
    "redact_url",
]


def open_store(url: str) -> SqlStore:
    """Open (and migrate) the store at ``url``."""
    if url.startswith("sqlite://"):
        from pvsignal.store.sqlite import SqliteStore

        path = url.removeprefix("sqlite://").removeprefix("/") or ":memory:"
        return SqliteStore(url, path)
    if url.startswith(("postgresql://", "postgres://")):
        from pvsignal.store.postgres import PostgresStore

        return PostgresStore(url)
    raise InputError(
        f"store URL {redact_url(url)!r}: use sqlite:///FILE or postgresql://USER@HOST:PORT/DB"
    )


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``: for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
