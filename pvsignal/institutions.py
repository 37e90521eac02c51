"""The institution registry: the organisations that send reports and own cases.

Hospitals (designated medical institutions of the pilot pathways), MAHs and regulators, each
with an id, names and aliases in any language, a region (ISO 3166-2) and designations. A
report's sender organisation (C.3.2) resolves through the names like a product's name does;
an organisation the registry does not know keeps the text it was sent as. A report without a
region takes its institution's, so E2B reports from Boao reach the Hainan scope.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pvsignal.errors import InputError
from pvsignal.products import normalize_name
from pvsignal.registryfile import load_registry_file

Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class InstitutionKind(StrEnum):
    hospital = "hospital"
    mah = "mah"
    regulator = "regulator"
    other = "other"


class Designation(StrEnum):
    """Pilot programmes an institution is designated for."""

    lecheng = "lecheng"  # Boao Lecheng pilot zone designated medical institution
    gba = "gba"  # GBA Hong Kong/Macao Medicine and Equipment Connect designated institution
    rare_disease = "rare_disease"  # rare-disease import pilot


class Institution(BaseModel):
    """One registry entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    institution_id: Identifier
    names: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]] = Field(
        min_length=1, description="names and aliases, any language; the first is the display name"
    )
    kind: InstitutionKind = InstitutionKind.hospital
    region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$")] | None = Field(
        default=None, description="ISO 3166-2 subdivision, e.g. CN-HI"
    )
    designations: list[Designation] = Field(default_factory=list)


class InstitutionRegistry:
    """Institutions by id and by alias."""

    def __init__(self, institutions: Iterable[Institution] = ()) -> None:
        self._by_id: dict[str, Institution] = {}
        self._by_alias: dict[str, str] = {}
        for institution in institutions:
            self.add(institution)

    def add(self, institution: Institution) -> None:
        """Add or replace an institution; a name claimed by another institution is an error."""
        keys = _keys(institution)
        for key in keys:
            other = self._by_alias.get(key)
            if other is not None and other != institution.institution_id:
                raise InputError(
                    f"institution {institution.institution_id!r}: a name normalising to "
                    f"{key!r} already names {other!r}"
                )
        previous = self._by_id.get(institution.institution_id)
        for key in () if previous is None else _keys(previous):
            self._by_alias.pop(key, None)
        self._by_id[institution.institution_id] = institution
        for key in keys:
            self._by_alias[key] = institution.institution_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self):
        return iter(self._by_id.values())

    def get(self, institution_id: str) -> Institution | None:
        return self._by_id.get(institution_id)

    def canonical(self, organisation: str) -> str:
        """The registered id the organisation's id or name resolves to, else the text as sent."""
        return self._by_alias.get(normalize_name(organisation), organisation.strip())

    def region_of(self, organisation: str | None) -> str | None:
        if organisation is None:
            return None
        found = self._by_id.get(self.canonical(organisation))
        return None if found is None else found.region


def _keys(institution: Institution) -> set[str]:
    return {normalize_name(name) for name in (institution.institution_id, *institution.names)}


def load_institutions(path: Path) -> list[Institution]:
    """Read an institutions file (YAML list or CSV with names/designations separated by '|')."""
    return load_registry_file(path, Institution, "institutions", ("names", "designations"))
