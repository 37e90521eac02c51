"""Scopes (named filters over reports) and strata (age band x sex x received year).

A scope keeps its own counts. Report-level filters (region, institution, sender type,
country, age, received dates) decide whether a report belongs to the scope at all;
product-level filters (kind, pathway, registered) decide which of its products count there.
The scope ``all`` always exists and counts every report.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from pvsignal.errors import InputError
from pvsignal.priors import PriorChoice, check_prior_graph
from pvsignal.products import Kind, Pathway, ResolvedProduct
from pvsignal.reports import Problem, Report, Role, SenderType, Sex, problems_of
from pvsignal.terminology.dictionary import Level, Paths

ALL = "all"

ScopeName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]

# Age bands of the default stratification (years; upper bounds exclusive).
AGE_BANDS: tuple[tuple[float, str], ...] = (
    (18, "0-17"),
    (45, "18-44"),
    (65, "45-64"),
    (75, "65-74"),
    (float("inf"), "75+"),
)
AGE_BOUNDS = tuple(bound for bound, _ in AGE_BANDS)
AGE_LABELS = tuple(label for _, label in AGE_BANDS)


class ScopeFilter(BaseModel):
    """Conditions a report (and its products) must meet; an empty list means any."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: list[str] = []
    institutions: list[str] = []
    sender_types: list[SenderType] = []
    countries: list[str] = []
    age_min: float | None = None
    age_max: float | None = None
    received_from: dt.date | None = None
    received_to: dt.date | None = None
    product_kinds: list[Kind] = []
    pathways: list[Pathway] = []
    registered_only: bool = False

    @functools.cached_property
    def admits_everything(self) -> bool:
        """True for a filter with no condition (the scope ``all``): skip the checks."""
        return self == ScopeFilter()

    def admits_report(self, report: Report) -> bool:
        sender = report.sender
        age = report.patient.age_years
        checks = (
            not self.regions or report.region in self.regions,
            not self.institutions
            or (sender is not None and sender.institution_id in self.institutions),
            not self.sender_types or (sender is not None and sender.type in self.sender_types),
            not self.countries or report.country in self.countries,
            self.age_min is None or (age is not None and age >= self.age_min),
            self.age_max is None or (age is not None and age <= self.age_max),
            self.received_from is None
            or (report.received is not None and report.received >= self.received_from),
            self.received_to is None
            or (report.received is not None and report.received <= self.received_to),
        )
        return all(checks)

    def admits_product(self, product: ResolvedProduct) -> bool:
        return (
            (not self.registered_only or product.registered)
            and (not self.product_kinds or product.kind in self.product_kinds)
            and (not self.pathways or product.pathway in self.pathways)
        )


class ReferenceRate(BaseModel):
    """The expected frequency of a PT among exposed patients: the label's frequency (any age
    and sex) or a background rate of one age band and/or sex. The most specific entry that
    matches a stratum applies (age band and sex, then age band, then sex, then neither)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pt: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    per_1000: float = Field(ge=0, description="expected cases per 1,000 patients exposed")
    age_band: Literal[AGE_LABELS] | None = None  # type: ignore[valid-type]
    sex: Sex | None = None
    source: Literal["label", "background"] = "label"


class MonitoredProduct(BaseModel):
    """A product under active monitoring: its reference rates and its MaxSPRT design."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    references: list[ReferenceRate] = Field(min_length=1)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    length: float = Field(gt=0, le=1_000, description="surveillance length, expected events")
    min_events: int = Field(default=1, ge=1, le=100)


class Monitoring(BaseModel):
    """Active monitoring of a scope (pvsignal.monitoring): its products under MaxSPRT."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    products: list[MonitoredProduct] = []

    def product(self, product_id: str) -> MonitoredProduct | None:
        return next((p for p in self.products if p.product_id == product_id), None)


class Scope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ScopeName
    description: str = ""
    filter: ScopeFilter = Field(default_factory=ScopeFilter)
    # The event level pairs count at (pvsignal.terminology): levels other than pt need a
    # loaded MedDRA dictionary. Several levels side by side: several scopes, one filter.
    level: Level = Field(
        default=Level.pt,
        description="event level of the pairs: pt, hlt, hlgt, soc, smq_narrow, smq_broad",
    )
    paths: Paths = Field(
        default=Paths.primary,
        description="hlt/hlgt/soc levels: a PT's primary path only, or all its paths",
    )
    # Where the scope's MGPS prior comes from (pvsignal.priors); scoring only, not counting.
    prior: PriorChoice = Field(default_factory=PriorChoice)
    monitoring: Monitoring = Field(default_factory=Monitoring)


class ScopeConfig(BaseModel):
    """The scopes to count and what counts: product roles, stratification."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scopes: list[Scope] = []
    count_concomitant: bool = Field(
        default=False, description="count concomitant products too (suspect and interacting always)"
    )
    stratify: bool = Field(default=True, description="use stratified expected counts")

    @model_validator(mode="after")
    def _priors_borrow_from_known_scopes(self) -> ScopeConfig:
        check_prior_graph([(scope.name, scope.prior) for scope in self.scopes])
        return self

    def prior_of(self, scope: str) -> PriorChoice:
        """The scope's prior choice (the default, auto, for a scope not configured)."""
        return next((s.prior for s in self.all_scopes() if s.name == scope), PriorChoice())

    def all_scopes(self) -> list[Scope]:
        """The configured scopes, with ``all`` first (added when not configured)."""
        named = [scope for scope in self.scopes if scope.name != ALL]
        configured_all = [scope for scope in self.scopes if scope.name == ALL]
        return [configured_all[0] if configured_all else Scope(name=ALL), *named]

    def counts_like(self, other: ScopeConfig) -> bool:
        """Would both configurations make the same counts? (``stratify``, priors and
        monitoring only affect scoring or read the counts.)"""
        return _counted(self.all_scopes()) == _counted(other.all_scopes()) and (
            self.count_concomitant == other.count_concomitant
        )

    def counted_roles(self) -> frozenset[Role]:
        roles = {Role.suspect, Role.interacting}
        if self.count_concomitant:
            roles.add(Role.concomitant)
        return frozenset(roles)


def _described(problem: Problem) -> str:
    """A problem of the whole configuration already names its field and value (priors)."""
    if problem.field == "(record)":
        return problem.reason.removeprefix("Value error, ")
    return str(problem)


def _counted(scopes: list[Scope]) -> list[dict[str, object]]:
    return [scope.model_dump(exclude={"prior", "monitoring", "description"}) for scope in scopes]


def load_scope_config(path: Path | None) -> ScopeConfig:
    """Read the YAML scope configuration; no file means the default (``all`` only)."""
    if path is None:
        return ScopeConfig()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise InputError(f"scope config {str(path)!r} does not exist") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InputError(f"cannot parse scope config {str(path)!r}: {error}") from None
    try:
        config = ScopeConfig.model_validate(document)
    except ValidationError as error:
        detail = "; ".join(_described(problem) for problem in problems_of(error))
        raise InputError(f"scope config {str(path)!r}: {detail}") from None
    names = [scope.name for scope in config.scopes]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InputError(f"scope config {str(path)!r}: scope names repeat: {', '.join(duplicated)}")
    return config


def stratum_of(report: Report) -> str:
    """Age band | sex | received year, with 'unknown' where the report does not say."""
    patient, received = report.patient, report.received
    return _stratum(patient.age_years, patient.sex, None if received is None else received.year)


@functools.lru_cache(maxsize=8192)
def _stratum(age: float | None, sex: Sex | None, year: int | None) -> str:
    # Few distinct (age, sex, year) triples: cached, a bulk import builds each label once.
    band = "unknown" if age is None else AGE_LABELS[bisect.bisect_right(AGE_BOUNDS, age)]
    return f"{band}|{'U' if sex is None else sex.value}|{'unknown' if year is None else year}"
