"""MedDRA releases and event labels in the store (a mixin of SqlStore; migration 10).

``meddra_releases`` keeps every release loaded, one row per (version, language), its parsed
content as JSON; the store setting ``meddra_version`` names the version counts are made in
(the newest loaded). ``event_labels`` maps each normalised event text to the label it counts
under when there is no dictionary (see pvsignal.terminology.normalise).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import orjson

from pvsignal.store.series import StoredCase
from pvsignal.terminology.dictionary import Dictionary
from pvsignal.terminology.events import UNMAPPED, EventTerms
from pvsignal.terminology.meddra import Release
from pvsignal.terminology.normalise import TermLabels, normalise_term

MEDDRA_VERSION = "meddra_version"
_CHUNK = 2_000

# Parsed dictionaries by (version, releases' load times): a process parses each once.
_DICTIONARIES: dict[tuple[str, tuple[str, ...]], Dictionary] = {}


def version_key(version: str) -> tuple[int, ...]:
    """MedDRA versions in release order: '9.1' < '26.0' < '26.1'."""
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


class TermStore:
    """MedDRA releases and event labels (mixed into SqlStore)."""

    if TYPE_CHECKING:  # provided by SqlStore
        _dialect: Any

        def _transaction(
            self, *, exclusive: bool = False, write: bool = False
        ) -> AbstractContextManager[Any]: ...

        def _execute(self, cursor: Any, statement: str, parameters: Sequence[Any] = ()) -> Any: ...

        def _query(
            self, statement: str, parameters: Sequence[Any] = ()
        ) -> list[tuple[Any, ...]]: ...

        def _executemany(self, cursor: Any, statement: str, rows: list[Sequence[Any]]) -> None: ...

        def setting(self, name: str) -> str | None: ...

        def set_setting(self, name: str, value: str) -> None: ...

    def save_release(self, release: Release, source: str) -> str:
        """Keep the release (replacing one of the same version and language) and make the
        newest version loaded the one counts are made in; return that version."""
        now = dt.datetime.now(dt.UTC).isoformat()
        with self._transaction(write=True) as cursor:
            self._execute(
                cursor,
                "DELETE FROM meddra_releases WHERE version = ? AND language = ?",
                (release.version, release.language),
            )
            self._execute(
                cursor,
                "INSERT INTO meddra_releases (version, language, loaded_at, source, content) "
                "VALUES (?, ?, ?, ?, ?)",
                (release.version, release.language, now, source, release.to_json().decode()),
            )
            current = self.setting(MEDDRA_VERSION)
            if current is None or version_key(release.version) >= version_key(current):
                current = release.version
                self.set_setting(MEDDRA_VERSION, current)
            return current

    def meddra_releases(self) -> list[dict[str, Any]]:
        """Every release kept: version, language, when loaded, from where."""
        rows = self._query(
            "SELECT version, language, loaded_at, source FROM meddra_releases ORDER BY loaded_at"
        )
        current = self.setting(MEDDRA_VERSION)
        names = ("version", "language", "loaded_at", "source")
        return [
            {**dict(zip(names, row, strict=True)), "current": row[0] == current} for row in rows
        ]

    def meddra_dictionary(self) -> Dictionary | None:
        """The dictionary of the current version (None before any release is loaded)."""
        version = self.setting(MEDDRA_VERSION)
        if version is None:
            return None
        loaded = self._query(
            "SELECT loaded_at FROM meddra_releases WHERE version = ? ORDER BY language",
            (version,),
        )
        key = (version, tuple(at for (at,) in loaded))
        if key not in _DICTIONARIES:
            rows = self._query(
                "SELECT content FROM meddra_releases WHERE version = ? ORDER BY language",
                (version,),
            )
            _DICTIONARIES.clear()  # one version is current at a time
            _DICTIONARIES[key] = Dictionary.of(Release.from_json(text) for (text,) in rows)
        return _DICTIONARIES[key]

    def named_event(self, text: str) -> str:
        """The counting key a person's spelling of a PT names (a query's filter): the PT it
        resolves to under the current dictionary (by code or by any name, any case), else the
        label its normal form counts under, else the text as given (an HLT, SOC or SMQ name,
        an ``unmapped:`` key)."""
        dictionary = self.meddra_dictionary()
        if dictionary is not None:
            code = dictionary.resolve(text, text, text, None)
            return text if code is None else dictionary.pt_names[code]
        found = self._query(
            "SELECT label FROM event_labels WHERE normal = ?", (normalise_term(text),)
        )
        return found[0][0] if found else text

    def event_terms(self) -> EventTerms:
        """The mapping step under the store's dictionary and labels."""
        labels = dict(self._query("SELECT normal, label FROM event_labels"))
        return EventTerms(TermLabels(labels), self.meddra_dictionary())

    def cases_with_unmapped_terms(
        self, *, after: tuple[str, str] | None, chunk: int, owner: str | None = None
    ) -> list[StoredCase]:
        """Up to ``chunk`` active cases after ``after`` in (owner, case_id) order whose
        contribution names an unmapped term (a prefilter: the caller reads it exactly). Their
        reports are not read: the listing shows terms, never case content."""
        where = ["status = 'active'", "contribution LIKE ?"]
        parameters: list[Any] = [f'%"{UNMAPPED}%']
        if after is not None:
            where.append("(owner > ? OR (owner = ? AND case_id > ?))")
            parameters += [after[0], after[0], after[1]]
        if owner is not None:
            where.append("owner = ?")
            parameters.append(owner)
        rows = self._query(
            "SELECT owner, case_id, status, version, received, contribution FROM cases "
            f"WHERE {' AND '.join(where)} ORDER BY owner, case_id LIMIT ?",
            (*parameters, chunk),
        )
        return [
            StoredCase(owner, case_id, status, version, received, orjson.loads(c), {})
            for owner, case_id, status, version, received, c in rows
        ]

    def claim_event_labels(self, labels: dict[str, str]) -> dict[str, str]:
        """Record the labels of terms not yet recorded (a label recorded first wins); return
        the recorded label of each. Run inside a batch's transaction (writers serialised)."""
        if not labels:
            return {}
        normals = sorted(labels)
        recorded: dict[str, str] = {}
        with self._transaction(write=True) as cursor:
            for start in range(0, len(normals), _CHUNK):
                part = normals[start : start + _CHUNK]
                clause, parameters = self._dialect.in_clause("normal", part)
                self._execute(
                    cursor, f"SELECT normal, label FROM event_labels WHERE {clause}", parameters
                )
                recorded.update(cursor.fetchall())
            new = [(n, labels[n]) for n in normals if n not in recorded]
            self._executemany(
                cursor,
                "INSERT INTO event_labels (normal, label) VALUES (?, ?) "
                "ON CONFLICT (normal) DO NOTHING",
                new,
            )
            recorded.update(new)
        return recorded
