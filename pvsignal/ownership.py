"""Who owns a case: the organisation that submits it. A case is (owner, case_id).

- On the API the owner is the caller's organisation; a record whose sender organisation
  (C.3.2, ``sender.institution_id``) names another organisation is rejected. A regulator may
  submit on behalf of any organisation: there the record's sender organisation owns it.
- From Kafka and files the owner is the record's sender organisation (producers are trusted
  through Kafka ACLs and file access); a record without one belongs to the source's default
  owner (``unattributed`` unless the command names one).
- Exposures (pvsignal.exposures) follow the same rules, their ``sender`` standing for C.3.2.
- A database's own extract (FAERS, VAERS) is owned by that database, whose ids its case ids are.

Organisations are compared by their registered institution id (names and aliases resolve
through the institution registry), so "Boao Lecheng Hospital 01" and "LC-H01" are one owner.
"""

from __future__ import annotations

from dataclasses import dataclass

from pvsignal.cases import UNATTRIBUTED
from pvsignal.institutions import InstitutionRegistry
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


@dataclass(frozen=True, slots=True)
class SubmitterOwns:
    """The submitting organisation owns the case; a record naming another sender is refused."""

    organisation: str

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


OwnerRule = SenderOwns | SubmitterOwns | SourceOwns
