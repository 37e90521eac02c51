"""Response models of trends, case series and scopes (documentation: handlers build the JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PeriodCounts(_Model):
    a: int
    n_product: int
    n_event: int
    n_total: int


class CumulativeCounts(_Model):
    a: float
    n_product: float
    n_event: float
    n_total: float
    expected: float | None


class TrendPoint(BaseModel):
    """One period: counts within it (``new``), cumulative counts to its end (``total``) and
    every measure with its bounds and flag computed from the cumulative counts (null where
    undefined, e.g. before the product's first case)."""

    model_config = ConfigDict(extra="allow")

    period: str = Field(description="YYYY-MM, YYYY-Qn or YYYY; 'unknown' (last): no C.1.5 date")
    new: PeriodCounts
    total: CumulativeCounts


class Prior(_Model):
    theta: dict[str, float]
    fitted_at: str | None
    theta_source: str | None


class Trend(_Model):
    scope: str
    product_id: str
    pt: str
    period: str
    prior: Prior = Field(description="the scope's current MGPS prior the EBGMs were scored with")
    points: list[TrendPoint]


class ScopeFit(_Model):
    fitted_at: str
    theta: dict[str, float] | None
    converged: bool | None
    warnings: list[str]


class ScopeInfo(_Model):
    name: str
    description: str
    filter: dict[str, Any]
    level: str = Field(
        default="pt",
        description="event level of its pairs: pt, hlt, hlgt, soc, smq_narrow, smq_broad",
    )
    paths: str = Field(default="primary", description="hlt/hlgt/soc: primary path or all paths")
    reports: int = Field(description="cases counted in the scope")
    pairs: int = Field(description="product–event pairs with a case (an MAH: of its products)")
    last_fit: ScopeFit | None


class ScopeList(_Model):
    scopes: list[ScopeInfo]


class CaseRecord(BaseModel):
    """A case at the caller's access level: ``full`` (owner, case_id, the stored report) or
    ``restricted`` (case_ref, received month, age group, sex, region, reporter qualification,
    products with roles, reactions with seriousness and outcome)."""

    model_config = ConfigDict(extra="allow")

    status: str


class CasePage(_Model):
    scope: str
    level: str = Field(description="full or restricted (EudraVigilance level 2A-like)")
    cases: list[CaseRecord]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class CaseDetail(_Model):
    level: str
    case: CaseRecord
