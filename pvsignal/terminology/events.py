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

_Signature = tuple[str | None, str | None, str | None, str | None]


class EventTerms:
    """Reactions to counting keys, under one dictionary (or none) and the store's labels."""

    def __init__(self, labels: TermLabels, dictionary: Dictionary | None = None) -> None:
        self.labels, self.dictionary = labels, dictionary
        self._resolved: dict[_Signature, str | None] = {}

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
        found: dict[str, None] = {}
        for reaction in reactions:
            pt = self._resolve(reaction)
            if pt is None:
                found[unmapped_key(reaction.event_key)] = None
            else:
                found.update(dict.fromkeys(self.dictionary.terms(pt, level, paths)))
        return tuple(found)

    def _resolve(self, reaction: Reaction) -> str | None:
        signature = (reaction.pt, reaction.pt_code, reaction.llt_code, reaction.llt)
        try:
            return self._resolved[signature]
        except KeyError:
            assert self.dictionary is not None
            pt = self._resolved[signature] = self.dictionary.resolve(*signature)
            return pt


def unmapped_key(text: str) -> str:
    """The visible key of a term no dictionary entry resolves."""
    return UNMAPPED + normalise_term(text)
