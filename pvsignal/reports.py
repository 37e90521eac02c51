"""The individual case safety report (ICSR) as pvsignal receives it: the JSON wire format.

Field names follow the ICH E2B(R3) elements they carry (given in each field's description).
One JSON object per report; bulk files hold one object per line (JSONL).
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def _latest_plausible_date() -> dt.date:
    """Tomorrow (time zones): no report can have been received later. Cached per hour."""
    return _tomorrow(int(time.time() // 3600))


@functools.lru_cache(maxsize=2)
def _tomorrow(hour: int) -> dt.date:
    return dt.date.today() + dt.timedelta(days=1)


class SenderType(StrEnum):
    """C.3.1 sender type (E2B codes 1-7, named)."""

    hospital = "hospital"
    mah = "mah"
    regulator = "regulator"
    health_professional = "health_professional"
    patient = "patient"
    other = "other"


class Sex(StrEnum):
    """D.5 sex: F, M or U (unknown)."""

    female = "F"
    male = "M"
    unknown = "U"


class Role(StrEnum):
    """G.k.1 characterisation of the drug's role."""

    suspect = "suspect"
    concomitant = "concomitant"
    interacting = "interacting"
    not_administered = "not_administered"


class Outcome(StrEnum):
    """E.i.7 outcome of the reaction at the time of the last observation."""

    recovered = "recovered"
    recovering = "recovering"
    not_recovered = "not_recovered"
    recovered_with_sequelae = "recovered_with_sequelae"
    fatal = "fatal"
    unknown = "unknown"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Sender(_Model):
    type: SenderType = Field(description="C.3.1 sender type")
    institution_id: Identifier | None = Field(
        default=None, description="C.3.2 sender organisation (hospital, MAH)"
    )


class Patient(_Model):
    age_years: float | None = Field(
        default=None, ge=0, le=130, description="D.2.2 age at onset, in years"
    )
    sex: Sex | None = Field(default=None, description="D.5 sex")


class Product(_Model):
    product_id: Identifier | None = Field(
        default=None, description="registry id of the product (G.k.2.1 MPID/PhPID where known)"
    )
    name: Text | None = Field(
        default=None, description="G.k.2.2 medicinal product name as reported, any language"
    )
    role: Role = Field(default=Role.suspect, description="G.k.1 role of the product")

    @model_validator(mode="after")
    def _named(self) -> Product:
        if self.product_id is None and self.name is None:
            raise ValueError("a product needs a product_id or a name")
        return self


class Reaction(_Model):
    pt: Text = Field(description="E.i.2.1b MedDRA preferred term (name)")
    pt_code: Annotated[str, StringConstraints(pattern=r"^\d{8}$")] | None = Field(
        default=None, description="E.i.2.1b MedDRA PT code (8 digits)"
    )
    serious: bool | None = Field(default=None, description="E.i.3.2 seriousness")
    outcome: Outcome | None = Field(default=None, description="E.i.7 outcome")


class Report(_Model):
    """One version of one case."""

    case_id: Identifier = Field(
        description="C.1.8.1 worldwide unique case id, stable across versions"
    )
    report_id: Identifier = Field(description="C.1.1 sender's safety report id")
    version: int = Field(
        default=1,
        ge=0,
        le=10**15,
        description="follow-up number; E2B(R3) sources use C.1.5 as YYYYMMDDhhmmss",
    )
    received: dt.date | None = Field(
        default=None, description="C.1.5 date the most recent information was received"
    )
    nullified: bool = Field(default=False, description="C.1.11.1 = 1: the case is nullified")
    duplicate_of_ids: list[Identifier] = Field(
        default_factory=list,
        max_length=100,
        description="C.1.9.1 case ids this case supersedes as duplicates",
    )
    sender: Sender | None = Field(default=None, description="C.3 sender")
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="C.2.r.3 / E.i.9 country (ISO 3166-1 alpha-2)"
    )
    region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$")] | None = Field(
        default=None, description="subdivision (ISO 3166-2, e.g. CN-HI for Hainan)"
    )
    patient: Patient = Field(default_factory=Patient, description="D patient")
    products: list[Product] = Field(
        default_factory=list, max_length=200, description="G.k drugs / devices"
    )
    reactions: list[Reaction] = Field(
        default_factory=list, max_length=500, description="E.i reactions / events"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Report:
        if not self.nullified and (not self.products or not self.reactions):
            raise ValueError("a report that is not a nullification needs products and reactions")
        if self.received is not None and self.received > _latest_plausible_date():
            raise ValueError(f"received {self.received.isoformat()} lies in the future")
        return self


class Problem(BaseModel):
    """Why a record was refused: the field (dotted path), the offending value and the reason."""

    model_config = ConfigDict(frozen=True)

    field: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason} (value {self.value})"


def problems_of(error: ValidationError) -> list[Problem]:
    """Pydantic's validation errors as problems naming field and value."""
    found = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "(record)"
        value = item.get("input")
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        found.append(Problem(field=field, value=shown[:200], reason=item["msg"]))
    return found
