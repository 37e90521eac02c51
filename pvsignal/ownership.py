"""Who owns a case: the organisation that submits it. A case is (owner, case_id).

- On the API the owner is the caller's organisation; a record whose sender organisation
  (C.3.2, ``sender.institution_id``) names another organisation is rejected. A regulator may
  submit on behalf of any organisation: there the record's sender organisation owns it.
- From Kafka and files the owner is the record's sender organisation (producers are trusted
  through Kafka ACLs and file access); a record without one belongs to the source's default
  owner (``unattributed`` unless the command names one).
- Exposures (pvsignal.exposures) follow the same rules, their ``sender`` standing for C.3.2.
  On the API a hospital records only exposures at its own institution and an MAH only those of
  its own registered products (``exposure_problem``): another's denominators would move that
  organisation's rates and sequential tests.
- A database's own extract (FAERS, VAERS) is owned by that database, whose ids its case ids are.

Organisations are compared by their registered institution id (names and aliases resolve
through the institution registry), so "Boao Lecheng Hospital 01" and "LC-H01" are one owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pvsignal.cases import UNATTRIBUTED
from pvsignal.institutions import InstitutionRegistry
from pvsignal.products import ResolvedProduct
from pvsignal.reports import Problem, Report

__all__ = ["UNATTRIBUTED", "OwnerRule", "SenderOwns", "SourceOwns", "SubmitterOwns"]

# Where a report states its sender organisation (C.3.2); other records name their own field.
_FIELD = "sender.institution_id"


def sender_organisation(report: Report) -> str | None:
    """C.3.2 as the report states it (None when absent)."""
    sender = report.sender
    return None if sender is None else sender.institution_id


@dataclass(frozen=True, slots=True)
class SenderOwns:
    """The record's sender organisation owns the case (files, Kafka, a regulator's API call)."""

    default: str = UNATTRIBUTED

    def owner(
        self, report: Report, institutions: InstitutionRegistry
    ) -> tuple[str | None, Problem | None]:
        return self.owner_of(sender_organisation(report), institutions)

    def owner_of(
        self, organisation: str | None, institutions: InstitutionRegistry, field: str = _FIELD
    ) -> tuple[str | None, Problem | None]:
        """The owner of a record whose stated sender organisation is ``organisation``."""
        if organisation is None:
            return self.default, None
        return institutions.canonical(organisation), None

    def exposure_problem(
        self, institution: str, product: ResolvedProduct, institutions: InstitutionRegistry
    ) -> Problem | None:
        return None


@dataclass(frozen=True, slots=True)
class SubmitterOwns:
    """The submitting organisation owns the case; a record naming another sender is refused.
    ``kind``: what the organisation is, which bounds the exposures it may record."""

    organisation: str
    kind: Literal["hospital", "mah"] | None = None

    def owner(
        self, report: Report, institutions: InstitutionRegistry
    ) -> tuple[str | None, Problem | None]:
        return self.owner_of(sender_organisation(report), institutions)

    def owner_of(
        self, stated: str | None, institutions: InstitutionRegistry, field: str = _FIELD
    ) -> tuple[str | None, Problem | None]:
        submitter = institutions.canonical(self.organisation)
        if stated is not None and institutions.canonical(stated) != submitter:
            return None, Problem(
                field=field,
                value=repr(stated),
                reason=f"names another organisation than the submitter {self.organisation!r}; "
                "an organisation submits only its own cases",
            )
        return submitter, None

    def exposure_problem(
        self, institution: str, product: ResolvedProduct, institutions: InstitutionRegistry
    ) -> Problem | None:
        """Why the submitter may not record this exposure (None: it may)."""
        submitter = institutions.canonical(self.organisation)
        if self.kind == "hospital" and institutions.canonical(institution) != submitter:
            return Problem(
                field="institution_id",
                value=repr(institution),
                reason=f"names another institution than the submitting hospital "
                f"{self.organisation!r}; a hospital records only its own patients",
            )
        if self.kind == "mah" and product.mah_id != self.organisation:
            holder = f"belongs to {product.mah_id!r}" if product.mah_id else "is not registered"
            return Problem(
                field="product_id",
                value=repr(product.product_id),
                reason=f"{holder}, not to the submitting MAH {self.organisation!r}; "
                "an MAH records exposure to its own products only",
            )
        return None


@dataclass(frozen=True, slots=True)
class SourceOwns:
    """A database extract: every case belongs to the database whose ids it carries."""

    source: str

    def owner(
        self, report: Report, institutions: InstitutionRegistry
    ) -> tuple[str | None, Problem | None]:
        return self.source, None

    def owner_of(
        self, stated: str | None, institutions: InstitutionRegistry, field: str = _FIELD
    ) -> tuple[str | None, Problem | None]:
        return self.source, None

    def exposure_problem(
        self, institution: str, product: ResolvedProduct, institutions: InstitutionRegistry
    ) -> Problem | None:
        return None


OwnerRule = SenderOwns | SubmitterOwns | SourceOwns
