"""Event terms as text: one normal form per spelling, and a readable label for each.

``normalise_term`` is what two spellings must share to be one term: Unicode NFKC (full-width
letters and digits become ASCII), case folding, every dash or hyphen read as a space,
whitespace collapsed. "Stevens-Johnson syndrome", "Stevens-Johnson Syndrome", "stevens
johnson syndrome" and FAERS' "STEVENS-JOHNSON SYNDROME" all become "stevens johnson syndrome".

Without a MedDRA dictionary, the term counts under a readable label: the first spelling of
its normal form the store recorded (``TermLabels``). Which spelling names a term may depend
on arrival order; what counts together never does.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping

# Hyphen-minus, the Unicode hyphens and dashes (U+2010..U+2015), minus sign, small and
# full-width hyphen-minus (NFKC maps the last two to '-', listed for clarity).
_DASHES = re.compile("[\\-\u2010-\u2015\u2212\ufe58\ufe63\uff0d]")
_SPACES = re.compile(r"\s+")


@functools.lru_cache(maxsize=65_536)
def normalise_term(text: str) -> str:
    """The form spellings of one term share: NFKC, case-folded, dashes as spaces, spaces
    collapsed (cached: report streams repeat the same few thousand terms).

    >>> normalise_term("Stevens-Johnson  Syndrome")
    'stevens johnson syndrome'
    >>> normalise_term("ＳＴＥＶＥＮＳ－ＪＯＨＮＳＯＮ syndrome")
    'stevens johnson syndrome'
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACES.sub(" ", _DASHES.sub(" ", folded)).strip()


def display_label(text: str) -> str:
    """A spelling as shown: NFKC, whitespace collapsed; case and hyphens kept."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()


class TermLabels:
    """The counting key of each term without a dictionary: one label per normal form.

    ``stored`` maps normal forms to the labels the store recorded. A spelling of a new normal
    form takes its own label provisionally; a batch writer ``claim``s the provisional labels
    in its transaction, where a label another writer recorded first wins (see
    ``pvsignal.ingest``).
    """

    def __init__(self, stored: Mapping[str, str] | None = None) -> None:
        self._labels: dict[str, str] = dict(stored or {})
        self._by_text: dict[str, str] = {}
        self._unclaimed: dict[str, str] = {}

    def key(self, text: str) -> str:
        """The label the spelling counts under."""
        label = self._by_text.get(text)
        if label is None:
            normal = normalise_term(text)
            label = self._labels.get(normal)
            if label is None:
                label = self._labels[normal] = self._unclaimed[normal] = display_label(text)
            self._by_text[text] = label
        return label

    def unclaimed(self) -> dict[str, str]:
        """Normal form -> provisional label, for the terms not yet recorded in the store."""
        return dict(self._unclaimed)

    def changes(self, recorded: Mapping[str, str]) -> dict[str, str]:
        """Provisional -> recorded label, where the store recorded an unclaimed term under
        another label (another writer saw it first): the batch's keys to rewrite."""
        return {
            self._unclaimed[normal]: label
            for normal, label in recorded.items()
            if normal in self._unclaimed and self._unclaimed[normal] != label
        }

    def settle(self, recorded: Mapping[str, str]) -> None:
        """Adopt the recorded labels once the batch that claimed them is committed (after a
        rollback the terms stay unclaimed, and the next batch claims them)."""
        changed = self.changes(recorded)
        for normal, label in recorded.items():
            self._unclaimed.pop(normal, None)
            self._labels[normal] = label
        if changed:
            self._by_text = {t: changed.get(k, k) for t, k in self._by_text.items()}
