"""Case-level access: which cases a reader may see, and which of their fields. One place.

Three levels, after EudraVigilance's access policy (EMA/759287/2009 rev. 4, level 2A for MAHs):

- ``full`` (regulators, admins; hospitals for their own cases): the latest version as stored,
  with its owner and the version history with where each version came from.
- ``restricted`` (an MAH, for cases counted with one of its registered products): only
  the age group (never the age), sex, reactions (coded term, seriousness, outcome), products
  (id or name, role, kind), the received month, country and province-level region, and the
  reporter's qualification. No owner or institution, no sender, case, report or patient
  identifiers, no dates but the month, no free text (reported or translated reaction text,
  change reasons). The case is named by an opaque reference instead.

Which cases: ``CaseAccess.admits`` — every case at ``full`` for a regulator, the owner's own
cases for a hospital, the cases whose counted products include one of the MAH's products for
an MAH. ``mask`` and ``flat`` (the CSV row) both build from the same whitelist, so JSON and
CSV can never differ in what they reveal.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from pvsignal.cases import UNKNOWN_PERIOD, province
from pvsignal.store.series import SeriesStore, StoredCase


class Level(StrEnum):
    full = "full"
    restricted = "restricted"


@dataclass(frozen=True)
class CaseAccess:
    """What one reader may see: ``owner`` limits to one owner's cases (a hospital), ``products``
    to cases counted with one of them (an MAH; empty: none at all). ``key`` signs the opaque
    case references of the restricted level."""

    level: Level
    key: bytes
    owner: str | None = None
    products: frozenset[str] | None = None

    def admits(self, case: StoredCase) -> bool:
        if self.owner is not None and case.owner != self.owner:
            return False
        if self.products is not None:
            return not self.products.isdisjoint(case.counted_products())
        return True

    def reference(self, case: StoredCase) -> str:
        """An opaque, stable reference to the case that reveals neither owner nor case id."""
        digest = hmac.new(self.key, f"{case.owner}\0{case.case_id}".encode(), hashlib.sha256)
        return "c_" + digest.hexdigest()[:24]

    def mask(
        self, case: StoredCase, versions: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The case as this reader may see it (with its version history when given)."""
        if self.level is Level.full:
            document: dict[str, Any] = {
                "owner": case.owner,
                "case_id": case.case_id,
                "status": case.status,
                "version": case.version,
                "received": case.received,
                "report": case.report,
            }
            if versions is not None:
                document["versions"] = versions
            return document
        report = case.report
        patient = report.get("patient") or {}
        document = {
            "case_ref": self.reference(case),
            "status": case.status,
            "received_month": None if case.received is None else case.received[:7],
            "country": report.get("country"),
            "region": province(report.get("region")),
            "reporter_qualification": report.get("reporter_qualification"),
            "patient": {"age_group": age_group(patient), "sex": patient.get("sex")},
            "products": [
                {name: product.get(name) for name in _PRODUCT_FIELDS}
                for product in report.get("products") or []
            ],
            "reactions": [
                {name: reaction.get(name) for name in _REACTION_FIELDS}
                for reaction in report.get("reactions") or []
            ],
        }
        if versions is not None:
            document["versions"] = [
                {
                    "outcome": v["outcome"],
                    "received_month": None if v["received"] is None else v["received"][:7],
                }
                for v in versions
            ]
        return document

    def columns(self) -> tuple[str, ...]:
        return _FULL_COLUMNS if self.level is Level.full else _RESTRICTED_COLUMNS

    def flat(self, masked: dict[str, Any]) -> dict[str, Any]:
        """The CSV row of a masked case (``mask``'s output: nothing else can leak)."""
        if self.level is Level.full:
            report = masked["report"]
            patient = report.get("patient") or {}
            sender = report.get("sender") or {}
            row = {
                "owner": masked["owner"],
                "case_id": masked["case_id"],
                "report_id": report.get("report_id"),
                "version": masked["version"],
                "received": masked["received"],
                "sender_type": sender.get("type"),
                "institution_id": sender.get("institution_id"),
                "country": report.get("country"),
                "region": report.get("region"),
                "reporter_qualification": report.get("reporter_qualification"),
                "age_years": patient.get("age_years"),
                "age_group": age_group(patient),
                "sex": patient.get("sex"),
                "products": _joined(report.get("products"), _PRODUCT_FIELDS),
                "reactions": _joined(report.get("reactions"), _REACTION_FIELDS),
            }
        else:
            row = {
                "case_ref": masked["case_ref"],
                "received_month": masked["received_month"],
                "country": masked["country"],
                "region": masked["region"],
                "reporter_qualification": masked["reporter_qualification"],
                "age_group": masked["patient"]["age_group"],
                "sex": masked["patient"]["sex"],
                "products": _joined(masked["products"], _PRODUCT_FIELDS),
                "reactions": _joined(masked["reactions"], _REACTION_FIELDS),
            }
        return row


_PRODUCT_FIELDS = ("product_id", "name", "role", "kind")
_REACTION_FIELDS = ("pt", "pt_code", "serious", "seriousness", "outcome")
_FULL_COLUMNS = (
    "owner",
    "case_id",
    "report_id",
    "version",
    "received",
    "sender_type",
    "institution_id",
    "country",
    "region",
    "reporter_qualification",
    "age_years",
    "age_group",
    "sex",
    "products",
    "reactions",
)
_RESTRICTED_COLUMNS = (
    "case_ref",
    "received_month",
    "country",
    "region",
    "reporter_qualification",
    "age_group",
    "sex",
    "products",
    "reactions",
)
# Highest age (years, exclusive) of each E2B D.2.3 group; elderly above.
_AGE_GROUPS = ((28 / 365.25, "neonate"), (2, "infant"), (12, "child"), (18, "adolescent"))


def age_group(patient: dict[str, Any]) -> str | None:
    """The reporter's age group (D.2.3), else the group of the age in years."""
    if patient.get("age_group"):
        return patient["age_group"]
    age = patient.get("age_years")
    if age is None:
        return None
    for bound, name in _AGE_GROUPS:
        if age < bound:
            return name
    return "adult" if age < 65 else "elderly"


def _joined(items: Iterable[dict[str, Any]] | None, fields: tuple[str, ...]) -> str:
    """A list of records as one CSV cell: records joined by '; ', fields by '|'."""
    return "; ".join("|".join(_cell(item.get(name)) for name in fields) for item in items or [])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class CaseQuery:
    """A line listing's filters: the scope, optionally a product and a PT counted there, and
    the latest version's received date (inclusive, ``YYYY-MM-DD``)."""

    scope: str
    product: str | None = None
    pt: str | None = None
    received_from: str | None = None
    received_to: str | None = None


# Beyond this many products, an MAH's listing is not prefiltered in SQL (one LIKE each).
_PREFILTERED_PRODUCTS = 20


def case_series(
    store: SeriesStore,
    access: CaseAccess,
    query: CaseQuery,
    *,
    after: tuple[str, str] | None = None,
    limit: int = 100,
    chunk: int = 1000,
) -> tuple[list[StoredCase], tuple[str, str] | None]:
    """The active cases the reader may see that count in the query's scope (with its product
    and PT, when given), in (owner, case_id) order after ``after``; and the key to continue
    after, None at the end."""
    if access.products is not None and not access.products:
        return [], None
    like_all = [value for value in (query.scope, query.product, query.pt) if value]
    like_any: list[str] = []
    if access.products is not None and len(access.products) <= _PREFILTERED_PRODUCTS:
        like_any = sorted(access.products)
    found: list[StoredCase] = []
    position = after
    while True:
        batch = store.case_page(
            after=position,
            chunk=chunk,
            owner=access.owner,
            like_all=like_all,
            like_any=like_any,
            received_from=query.received_from,
            received_to=query.received_to,
        )
        for case in batch:
            if _matches(case, query, access):
                found.append(case)
                if len(found) > limit:
                    break
        if len(found) > limit or len(batch) < chunk:
            break
        position = (batch[-1].owner, batch[-1].case_id)
    if len(found) <= limit:
        return found, None
    found = found[:limit]
    return found, (found[-1].owner, found[-1].case_id)


def _matches(case: StoredCase, query: CaseQuery, access: CaseAccess) -> bool:
    counted = case.counted_in(query.scope)
    if counted is None:
        return False
    products, events = counted
    if query.product is not None and query.product not in products:
        return False
    if query.pt is not None and query.pt not in events:
        return False
    if access.products is not None and access.products.isdisjoint(products):
        return False
    return access.owner is None or case.owner == access.owner


UNKNOWN = UNKNOWN_PERIOD  # a month, region or institution the report does not state
UNREGISTERED = "unregistered"  # the pathway of a product the registry does not hold


@dataclass(frozen=True)
class CaseBreakdown:
    """The cases a reader may see in a scope, per received month (``YYYY-MM``): in total, by
    pathway, by province-level region, and by institution (None when the reader's level
    withholds institutions). Each maps a category to its cases per month; a case counted with
    products of two pathways counts once in each, so pathways may add up to more than the total.
    """

    total: dict[str, int]
    by_pathway: dict[str, dict[str, int]]
    by_region: dict[str, dict[str, int]]
    by_institution: dict[str, dict[str, int]] | None

    @property
    def months(self) -> list[str]:
        return sorted(self.total)


def case_breakdown(
    store: SeriesStore, access: CaseAccess, scope: str, pathway_of: dict[str, str]
) -> CaseBreakdown:
    """Count what ``/v1/cases?scope=`` lists for this reader, as it shows it, from the
    store's place counts (each case of the scope counted at ingest under its received month,
    region, institution and the products it counts there): the cases ``case_series`` admits
    (an MAH's: those counted with one of its products), by the fields ``mask`` shows at the
    reader's level (no institution at the restricted level), so a breakdown can reveal no
    case, and no field, the reader's listing would not. An MAH's pathways are those of its own
    products among a case's.

    Raises
    ------
    ValueError
        For a reader limited to one owner's cases (a hospital, which has no overview): the
        counts are not kept per owner.
    """
    if access.owner is not None:
        raise ValueError(f"the place counts are not kept per owner ({access.owner!r})")
    names_institution = access.level is Level.full
    total: Counter[str] = Counter()
    by_pathway: Counter[tuple[str, str]] = Counter()
    by_region: Counter[tuple[str, str]] = Counter()
    by_institution: Counter[tuple[str, str]] = Counter()
    # Rows share product lists (a scope's cases name a few thousand combinations): the
    # pathways each shows the reader are worked out once per list.
    shown: dict[str, list[str]] = {}
    for month, region, institution, products, n in store.place_counts(scope):
        pathways = shown.get(products)
        if pathways is None:
            pathways = shown[products] = _pathways(access, products, pathway_of)
        if not pathways:
            continue  # counted with none of the MAH's products: not in its listing
        total[month] += n
        for pathway in pathways:
            by_pathway[pathway, month] += n
        by_region[region or UNKNOWN, month] += n
        by_institution[institution or UNKNOWN, month] += n
    return CaseBreakdown(
        dict(total),
        _per_category(by_pathway),
        _per_category(by_region),
        _per_category(by_institution) if names_institution else None,
    )


def _pathways(access: CaseAccess, products: str, pathway_of: dict[str, str]) -> list[str]:
    """The pathways a case counted with these products (a JSON array) shows the reader: of
    its own products for an MAH (none: the case is not in its listing)."""
    mine = orjson.loads(products)
    if access.products is not None:
        mine = [p for p in mine if p in access.products]
    return sorted({pathway_of.get(p, UNREGISTERED) for p in mine})


def _per_category(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """category -> month -> cases, from (category, month) -> cases."""
    found: dict[str, dict[str, int]] = {}
    for (category, month), n in counts.items():
        found.setdefault(category, {})[month] = n
    return found
