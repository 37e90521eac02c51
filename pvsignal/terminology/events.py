"""The mapping step of counting: a report's reactions to the terms a scope counts them under.

With a MedDRA dictionary, each reaction resolves to its PT (pvsignal.terminology.dictionary)
and counts under that PT's terms at the scope's level; one that does not resolve counts under
``unmapped:<its normalised text>`` at every level, in sight, never as a new PT. Without one,
the reaction counts under the label of its normalised text (pvsignal.terminology.normalise),
at the PT level only. A case counts once per term however many of its reactions map there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from pvsignal.errors import InputError
from pvsignal.terminology.dictionary import Dictionary, Level, Paths
from pvsignal.terminology.normalise import TermLabels, normalise_term

if TYPE_CHECKING:
    from pvsignal.reports import Reaction

UNMAPPED = "unmapped:"

# A reaction's coded fields and the level asked for.
_Signature = tuple[str | None, str | None, str | None, str | None, Level, Paths]


class EventTerms:
    """Reactions to counting keys, under one dictionary (or none) and the store's labels."""

    def __init__(self, labels: TermLabels, dictionary: Dictionary | None = None) -> None:
        self.labels, self.dictionary = labels, dictionary
        self._cached: dict[_Signature, tuple[str, ...]] = {}

    @property
    def version(self) -> str | None:
        """The MedDRA version terms resolve in (None: no dictionary)."""
        return None if self.dictionary is None else self.dictionary.version

    def check(self, levels: Iterable[tuple[str, Level]]) -> None:
        """Refuse scopes counting above the PT level when there is no dictionary to group by."""
        if self.dictionary is not None:
            return
        for scope, level in levels:
            if level is not Level.pt:
                raise InputError(
                    f"scope {scope!r} counts at level {level.value!r}, which needs a MedDRA "
                    "dictionary: load one first (`pvsignal meddra load DIR`)"
                )

    def keys(
        self, reactions: Sequence[Reaction], level: Level = Level.pt, paths: Paths = Paths.primary
    ) -> tuple[str, ...]:
        """The distinct terms the reactions count under at the level, in order."""
        if self.dictionary is None:
            return tuple(dict.fromkeys([self.labels.key(r.event_key) for r in reactions]))
        if len(reactions) == 1:
            return self._terms(reactions[0], level, paths)
        found: dict[str, None] = {}
        for reaction in reactions:
            found.update(dict.fromkeys(self._terms(reaction, level, paths)))
        return tuple(found)

    def _terms(self, reaction: Reaction, level: Level, paths: Paths) -> tuple[str, ...]:
        """One reaction's terms at the level (cached: streams repeat the same codes)."""
        signature = (reaction.pt, reaction.pt_code, reaction.llt_code, reaction.llt, level, paths)
        terms = self._cached.get(signature)
        if terms is None:
            assert self.dictionary is not None
            pt = self.dictionary.resolve(*signature[:4])
            terms = self._cached[signature] = (
                (unmapped_key(reaction.event_key),)
                if pt is None
                else self.dictionary.terms(pt, level, paths)
            )
        return terms


def unmapped_key(text: str) -> str:
    """The visible key of a term no dictionary entry resolves."""
    return UNMAPPED + normalise_term(text)
