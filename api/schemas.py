"""Request and response bodies as the OpenAPI schema documents them (with examples)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints

from api.auth import Role
from pvsignal.products import Kind, Name, Pathway

Measure = Literal["prr", "ror", "ic", "ebgm"]
# Alerts also come from active monitoring's sequential tests (pvsignal.monitoring).
AlertMeasureName = Literal["prr", "ror", "ic", "ebgm", "maxsprt"]
Transition = Literal["new", "ongoing", "strengthened", "weakened", "closed"]
# The transitions that raise an alert (``ongoing`` is a state, never an alert).
AlertTransition = Literal["new", "strengthened", "weakened", "closed"]
Digest = Literal["hourly", "daily"]
Label = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- problems ---------------------------------------------------------------------------------


class ProblemField(BaseModel):
    field: str = Field(description="where: 'query.limit', 'body.url', 'body.products.0.name'")
    reason: str
    value: Any = Field(default=None, description="the value refused, when it can be shown")


class Problem(BaseModel):
    """An RFC 9457 problem detail, the body of every error (``application/problem+json``)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "type": "urn:pvsignal:problem:invalid-input",
                "title": "Unprocessable content",
                "status": 422,
                "detail": "invalid query.limit",
                "instance": "/v1/signals",
                "request_id": "5f0c3d6be0f64c5b9a4f4f9f7b2c1e0a",
                "errors": [
                    {
                        "field": "query.limit",
                        "reason": "Input should be greater than or equal to 1",
                        "value": "0",
                    }
                ],
            }
        },
    )

    type: str = Field(description="urn:pvsignal:problem:<kind>, stable for programs to match")
    title: str
    status: int
    detail: str = Field(description="what was wrong, naming the input and its value")
    instance: str = Field(description="the request path")
    request_id: str | None = Field(description="quote it when reporting a problem")
    errors: list[ProblemField] | None = Field(
        default=None, description="one entry per field at fault"
    )


# -- reports ----------------------------------------------------------------------------------


class RecordOutcome(_Model):
    location: str = Field(description="receipt id and line (or E2B message) of the record")
    outcome: Literal[
        "new",
        "follow_up",
        "stale",
        "resent",
        "nullified",
        "refused",
        "rejected",
        "corrected",
        "withdrawn",
    ] = Field(
        description="new: accepted and counted; follow_up: follow-up applied (previous version "
        "withdrawn); stale: an older version, ignored; resent: the same version again; "
        "nullified: the case is withdrawn; refused: the case (exposure) was withdrawn for good "
        "earlier, or a withdrawal names no exposure of the sender's; rejected: invalid, see "
        "field and reason; exposures only: corrected (a newer version replaces the previous "
        "one), withdrawn (by its owner, for good)"
    )
    case_id: str | None = None
    exposure_id: str | None = Field(default=None, description="an exposure record's id")
    owner: str | None = Field(
        default=None,
        description="the organisation owning the case (the submitter's, or for a "
        "regulator the record's sender organisation)",
    )
    field: str | None = Field(default=None, description="the field at fault (rejected, refused)")
    reason: str | None = None


class SubmissionReceipt(_Model):
    receipt_id: str
    submitted_at: str
    content_type: str
    records: int
    summary: dict[str, int] = Field(description="records per outcome")
    results: list[RecordOutcome]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "receipt_id": "r-5f0c1a2b3c4d5e6f7a8b",
                    "submitted_at": "2026-11-30T08:00:00+00:00",
                    "content_type": "application/x-ndjson",
                    "records": 2,
                    "summary": {"new": 1, "rejected": 1},
                    "results": [
                        {
                            "location": "r-5f0c1a2b3c4d5e6f7a8b:1",
                            "outcome": "new",
                            "case_id": "CN-HI-2026-000123",
                        },
                        {
                            "location": "r-5f0c1a2b3c4d5e6f7a8b:2",
                            "outcome": "rejected",
                            "case_id": None,
                            "field": "patient.age_years",
                            "reason": "Input should be greater than or equal to 0 (value -3)",
                        },
                    ],
                }
            ]
        },
    )


class ReceiptSummary(_Model):
    receipt_id: str
    org: str | None
    role: str
    submitted_at: str
    content_type: str
    records: int
    summary: dict[str, int]


class ReceiptList(_Model):
    receipts: list[ReceiptSummary]
    next_before: str | None = Field(description="pass as ?before= for older receipts")


# -- signals ----------------------------------------------------------------------------------


class ProductInfo(_Model):
    registered: bool
    name: str | None
    mah_id: str | None
    pathway: str | None
    kind: str | None


class MeasureSignal(_Model):
    flagged: bool = Field(description="the measure's signal rule holds now")
    status: Transition | None = Field(description="lifecycle state, None if never signalled")
    since: str | None


class SignalRow(_Model):
    scope: str
    product_id: str
    pt: str
    product: ProductInfo
    a: int = Field(description="cases with the product and the PT")
    n_product: int
    n_event: int
    n_total: int
    expected: float | None
    statistics: dict[str, float | None] = Field(
        description="prr, prr_lower, prr_upper, chi2, chi2_p, ror, ror_lower, ror_upper, ic, "
        "ic025, ic975, ebgm, eb05, eb95, qn (non-finite values are null)"
    )
    signals: dict[Measure, MeasureSignal]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "scope": "all",
                    "product_id": "P-0001",
                    "pt": "Hepatic failure",
                    "product": {
                        "registered": True,
                        "name": "dupilumab",
                        "mah_id": "MAH-17",
                        "pathway": "lecheng_special_import",
                        "kind": "biologic",
                    },
                    "a": 12,
                    "n_product": 140,
                    "n_event": 60,
                    "n_total": 20000,
                    "expected": 0.42,
                    "statistics": {
                        "prr": 29.4,
                        "prr_lower": 16.0,
                        "prr_upper": 53.9,
                        "chi2": 290.1,
                        "chi2_p": 1e-60,
                        "ror": 31.9,
                        "ror_lower": 16.9,
                        "ror_upper": 60.2,
                        "ic": 4.2,
                        "ic025": 3.3,
                        "ic975": 4.9,
                        "ebgm": 14.1,
                        "eb05": 8.6,
                        "eb95": 22.0,
                        "qn": 0.02,
                    },
                    "signals": {
                        m: {
                            "flagged": True,
                            "status": "ongoing",
                            "since": "2026-11-30T08:00:00+00:00",
                        }
                        for m in ("prr", "ror", "ic", "ebgm")
                    },
                }
            ]
        },
    )


class SignalPage(_Model):
    scope: str
    level: str = Field(
        default="pt",
        description="the event level the scope counts at (pt, hlt, hlgt, soc, smq_narrow, "
        "smq_broad): `pt` names a term of that level",
    )
    total: int = Field(description="pairs matching the filters (that the caller may see)")
    signals: list[SignalRow]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")
    theta: dict[str, float] = Field(description="the MGPS prior the statistics were scored with")
    fitted_at: str | None


class HistoryPoint(BaseModel):
    model_config = ConfigDict(extra="allow")

    at: str
    a: int


class TransitionPoint(_Model):
    alert_id: int
    at: str
    measure: AlertMeasureName
    transition: Transition


class SignalDetail(_Model):
    level: str = Field(default="pt", description="the event level the scope counts at")
    signal: SignalRow | None = Field(description="None when the pair no longer has cases")
    states: dict[Measure, dict[str, Any] | None]
    history: list[HistoryPoint] = Field(description="statistics at each evaluation, oldest first")
    transitions: list[TransitionPoint]
    theta: dict[str, float]


# -- rates ------------------------------------------------------------------------------------


class RateRow(_Model):
    scope: str
    product_id: str
    pt: str
    period: str = Field(description="total, YYYY, YYYY-Qn, YYYY-MM or unknown (cases only)")
    cases: int = Field(description="distinct cases of the product and PT in the scope")
    patients: int = Field(description="patients exposed (sum of the exposures' patients)")
    patient_years: float | None = Field(description="patient-time given, in years")
    incidence_per_1000: float | None = Field(description="cases per 1,000 patients exposed")
    incidence_lower: float | None = Field(description="exact (Garwood) lower bound")
    incidence_upper: float | None
    per_1000_patient_years: float | None = Field(
        description="where every exposure of the group gives its patient-time"
    )
    per_1000_patient_years_lower: float | None
    per_1000_patient_years_upper: float | None
    expected: float | None = Field(
        description="Σ patients × reference rate over age band × sex (None: no reference for "
        "some exposed stratum)"
    )
    reference: Literal["label", "background", "mixed"] | None
    oe: float | None = Field(description="observed/expected")
    oe_lower: float | None = Field(description="exact (Garwood) lower bound")
    oe_upper: float | None
    level: float


class RatePage(_Model):
    scope: str
    period: str
    level: float
    rates: list[RateRow]


# -- products ---------------------------------------------------------------------------------


class ProductIn(_Model):
    names: list[Name] = Field(min_length=1, max_length=100)
    kind: Kind
    pathway: Pathway
    mah_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    approved: dt.date | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "names": ["dupilumab", "度普利尤单抗", "Dupixent"],
                    "kind": "biologic",
                    "pathway": "lecheng_special_import",
                    "mah_id": "MAH-17",
                    "approved": "2021-06-01",
                }
            ]
        },
    )


class ProductOut(ProductIn):
    product_id: str
    recounted_cases: int | None = Field(
        default=None, description="cases recounted because names, kind or pathway changed"
    )


class ProductList(_Model):
    products: list[ProductOut]


# -- fits -------------------------------------------------------------------------------------


class Fit(BaseModel):
    model_config = ConfigDict(extra="allow")

    scope: str
    fitted_at: str
    theta: dict[str, float] | None = None
    theta_source: str | None = None
    converged: bool | None = None


class FitList(_Model):
    fits: list[Fit]


# -- subscriptions and alerts -----------------------------------------------------------------


class SubscriptionFilter(_Model):
    products: list[Label] = Field(default_factory=list, max_length=1000)
    pts: list[Label] = Field(default_factory=list, max_length=1000)
    measures: list[AlertMeasureName] = Field(
        default_factory=list,
        description="only alerts in which one of these measures moved (empty: any measure)",
    )
    transitions: list[AlertTransition] = Field(
        default_factory=list,
        description="only alerts in which a measure (of `measures`, if given) made one of these "
        "transitions (empty: new, strengthened, weakened and closed)",
    )
    scopes: list[Label] = Field(default_factory=list, max_length=100)


class SubscriptionIn(_Model):
    url: HttpUrl = Field(
        description="where alerts are POSTed (https in production); the host must be one this "
        "deployment allows (PVSIGNAL_WEBHOOK_ALLOWED_HOSTS), else 422 naming body.url"
    )
    filter: SubscriptionFilter = Field(default_factory=SubscriptionFilter)
    digest: Digest | None = Field(
        default=None,
        description="hourly or daily: one delivery per UTC hour or day listing each of its "
        "alerts once (type `signal.digest`), instead of one delivery per alert",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://safety.example.com/pvsignal/webhook",
                    "filter": {
                        "products": ["P-0001"],
                        "measures": ["ebgm"],
                        "transitions": ["new", "strengthened"],
                    },
                    "digest": "daily",
                }
            ]
        },
    )


class SubscriptionOut(_Model):
    subscription_id: int
    url: str
    filter: SubscriptionFilter
    digest: Digest | None
    created_at: str
    owner_role: str
    owner_org: str | None


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="the HMAC key of the signatures; shown only this once")


class SubscriptionList(_Model):
    subscriptions: list[SubscriptionOut]


class Delivery(_Model):
    delivery_id: int
    subscription_id: int
    alert_id: int = Field(description="the alert sent (of a digest: the last alert it lists)")
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    last_status: int | None
    created_at: str
    delivered_at: str | None
    period_start: str | None = Field(description="a digest's period (UTC); None for one alert")
    period_end: str | None


class DeliveryList(_Model):
    deliveries: list[Delivery]


class AlertMeasure(_Model):
    status: Transition | None = Field(description="the measure's state after the change")
    since: str | None
    flagged: bool = Field(description="the measure's signal rule holds")
    statistic: str = Field(description="the statistic the measure's level follows")
    value: float | None


class AlertProduct(_Model):
    registered: bool
    names: list[str]
    mah_id: str | None
    pathway: str | None
    kind: str | None


class Alert(BaseModel):
    """One (scope, product, PT) change of one detection run, with every measure's state."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "alert_id": 812,
                    "scope": "all",
                    "product_id": "P-0001",
                    "pt": "Hepatic failure",
                    "transition": "new",
                    "changes": {"prr": "new", "ror": "new", "ebgm": "new"},
                    "at": "2026-11-30T08:00:00+00:00",
                    "measures": {
                        m: {
                            "status": None if m == "ic" else "new",
                            "since": None if m == "ic" else "2026-11-30T08:00:00+00:00",
                            "flagged": m != "ic",
                            "statistic": s,
                            "value": v,
                        }
                        for m, s, v in (
                            ("prr", "prr", 29.4),
                            ("ror", "ror_lower", 16.9),
                            ("ic", "ic025", -0.1),
                            ("ebgm", "eb05", 8.6),
                        )
                    },
                    "statistics": {"a": 12, "prr": 29.4, "ror_lower": 16.9, "eb05": 8.6},
                    "product": {
                        "registered": True,
                        "names": ["dupilumab", "度普利尤单抗"],
                        "mah_id": "MAH-17",
                        "pathway": "lecheng_special_import",
                        "kind": "biologic",
                    },
                    "mah_id": "MAH-17",
                    "pathway": "lecheng_special_import",
                    "kind": "biologic",
                    "link": "/v1/signals/all/P-0001/Hepatic%20failure",
                }
            ]
        },
    )

    alert_id: int
    scope: str
    product_id: str
    pt: str
    transition: Transition = Field(
        description="the most significant of `changes`: new > strengthened > weakened > closed "
        "(alerts recorded per measure before migration 7 may say ongoing)"
    )
    changes: dict[AlertMeasureName, Transition] = Field(
        description="the measures that moved, and how"
    )
    at: str
    measures: dict[AlertMeasureName, AlertMeasure] = Field(
        default_factory=dict, description="every measure's state, flag and level statistic"
    )
    statistics: dict[str, float | None] = Field(
        default_factory=dict, description="the pair's counts and every measure's estimates"
    )
    product: AlertProduct | None = None
    mah_id: str | None = None
    pathway: str | None = None
    kind: str | None = None
    link: str | None = Field(default=None, description="the signal: GET this path")


class AlertList(_Model):
    alerts: list[Alert]
    next_after: int | None = Field(
        description="oldest first: pass as ?after= for the following alerts"
    )
    next_before: int | None = Field(
        default=None, description="newest first: pass as ?before= for the earlier alerts"
    )


# -- keys -------------------------------------------------------------------------------------


Organisation = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"\S")]


class OrganisationKeyIn(_Model):
    """A key acting for one organisation: a hospital's or an MAH's (``org`` is required)."""

    role: Literal[Role.hospital, Role.mah]
    org: Organisation
    name: Annotated[str, StringConstraints(max_length=200)] | None = None


class ServiceKeyIn(_Model):
    """A regulator's or an admin's key (any ``org`` is only a label)."""

    role: Literal[Role.regulator, Role.admin]
    org: Organisation | None = None
    name: Annotated[str, StringConstraints(max_length=200)] | None = None


KeyIn = Annotated[OrganisationKeyIn | ServiceKeyIn, Field(discriminator="role")]


class KeyOut(_Model):
    key_id: str
    role: Role
    org: str | None
    name: str | None
    created_at: str
    revoked_at: str | None = None


class KeyCreated(KeyOut):
    key: str = Field(description="the API key; shown only this once, stored as a hash")


class KeyList(_Model):
    keys: list[KeyOut]


# -- health -----------------------------------------------------------------------------------


class Liveness(_Model):
    status: Literal["ok"]


class Readiness(_Model):
    status: Literal["ready"]
    store: Literal["ok"]
    kafka: dict[str, Any] | None = None


class CaseRef(_Model):
    owner: str = Field(description="the organisation that owns the case")
    case_id: str = Field(description="C.1.8.1 case id within its owner")


class SuspectedDuplicate(_Model):
    suspicion_id: int
    survivor: CaseRef = Field(description="the case whose report named the other as duplicate")
    suspect: CaseRef = Field(description="another organisation's case with the named id")
    status: Literal["open", "confirmed", "dismissed"]
    found_at: str
    decided_by: str | None = Field(default=None, description="who decided (role:org:subject)")
    decided_at: str | None = None
    note: str | None = None


class SuspectedDuplicateList(_Model):
    duplicates: list[SuspectedDuplicate]
    next_after: int | None = Field(
        default=None, description="pass as `after` for the next page; absent on the last page"
    )


class DuplicateDecision(_Model):
    decision: Literal["confirm", "dismiss"] = Field(
        description="confirm withdraws the suspect case for good as a duplicate of the "
        "survivor; dismiss keeps both"
    )
    note: str | None = Field(default=None, max_length=2000, description="why")


class InstitutionIn(_Model):
    # A name as the product registry takes one: its schema says a visible character is needed.
    names: list[Name] = Field(
        min_length=1, max_length=50, description="names and aliases; the first is shown"
    )
    kind: Literal["hospital", "mah", "regulator", "other"] = "hospital"
    region: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$", description="ISO 3166-2, e.g. CN-HI"
    )
    designations: list[Literal["lecheng", "gba", "rare_disease"]] = Field(default_factory=list)


class InstitutionOut(InstitutionIn):
    institution_id: str
    renamed_owners: list[str] = Field(
        default_factory=list,
        description="owner names whose cases now belong to the institution (its aliases)",
    )
    recounted_cases: int | None = None


class InstitutionList(_Model):
    institutions: list[InstitutionOut]


# -- signal review and the audit trail ---------------------------------------------------------

ReviewStatus = Literal[
    "unreviewed",
    "validation",
    "validated",
    "refuted",
    "assessment",
    "confirmed",
    "not_confirmed",
    "monitoring",
    "closed",
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ReviewComment(BaseModel):
    author: str
    at: str
    text: str


class ReviewMove(BaseModel):
    at: str
    by: str
    from_: str = Field(alias="from")
    to: str
    reason: str | None = None
    alert_id: int | None = None


class ReviewOut(BaseModel):
    scope: str
    product_id: str
    pt: str
    org: str = Field(description="the organisation whose review this is")
    status: ReviewStatus
    priority: Literal["low", "medium", "high"]
    assignee: str | None
    due_at: str | None = Field(description="when the current status's deadline passes (UTC)")
    overdue: bool
    shared: bool = Field(description="an MAH's review a regulator may read")
    linked_cases: list[str]
    comments: list[ReviewComment]
    history: list[ReviewMove] = Field(description="every status change: who, when, why")
    version: int = Field(description="0 until first written; the ETag")
    updated_at: str | None
    updated_by: str | None
    allowed_moves: list[str]


class ReviewDocument(BaseModel):
    review: ReviewOut = Field(description="the caller's organisation's review")
    shared: list[ReviewOut] = Field(
        description="regulators: MAH reviews of this signal their MAH marked shared"
    )


class ReviewPatch(_Model):
    status: ReviewStatus | None = Field(default=None, description="a legal move (409 if not)")
    reason: str | None = Field(default=None, max_length=2000, description="why the move")
    priority: Literal["low", "medium", "high"] | None = None
    assignee: Text | None = Field(default=None, description="null clears it")
    due_at: dt.datetime | None = Field(
        default=None, description="overrides the status's deadline; null clears it"
    )
    shared: bool | None = None
    linked_cases: list[Text] | None = Field(
        default=None, max_length=1000, description="replaces the linked case ids"
    )
    comment: str | None = Field(default=None, min_length=1, max_length=10_000)


class ReviewList(BaseModel):
    reviews: list[ReviewOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page")


class AuditEntry(BaseModel):
    seq: int
    at: str
    actor: str = Field(description="role:organisation:subject")
    org: str | None
    role: str
    action: str
    object_type: str
    object_id: str
    before: Any = None
    after: Any = None
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_after: int | None = Field(description="pass as after for the next page")
