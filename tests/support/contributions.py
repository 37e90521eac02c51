"""Rolling a store back to before a migration that added fields to the stored contributions."""

from __future__ import annotations

from typing import Any

import orjson

from pvsignal.store.sql import SqlStore


def drop_contribution_fields(store: SqlStore, cursor: Any, *fields: str) -> None:
    """Remove ``fields`` from every stored contribution (each must hold them: the engine has
    stored them since the migration being undone)."""
    store._execute(
        cursor, "SELECT owner, case_id, contribution FROM cases WHERE contribution IS NOT NULL"
    )
    older = []
    for owner, case_id, contribution in cursor.fetchall():
        document = orjson.loads(contribution)
        for name in fields:
            del document[name]
        older.append((orjson.dumps(document).decode(), owner, case_id))
    store._executemany(
        cursor, "UPDATE cases SET contribution = ? WHERE owner = ? AND case_id = ?", older
    )
