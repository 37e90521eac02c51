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


class ProductRole(StrEnum):
    """G.k.1 characterisation of the drug's role (named apart from the API's caller roles in
    the OpenAPI document)."""

    suspect = "suspect"
    concomitant = "concomitant"
    interacting = "interacting"
    not_administered = "not_administered"


Role = ProductRole  # the name the core has always used


class Outcome(StrEnum):
    """E.i.7 outcome of the reaction at the time of the last observation."""

    recovered = "recovered"
    recovering = "recovering"
    not_recovered = "not_recovered"
    recovered_with_sequelae = "recovered_with_sequelae"
    fatal = "fatal"
    unknown = "unknown"


class ReportType(StrEnum):
    """C.1.3 type of report (E2B codes 1-4, named)."""

    spontaneous = "spontaneous"
    study = "study"
    other = "other"
    not_available = "not_available"  # not available to the sender (unknown)


class Qualification(StrEnum):
    """C.2.r.4 qualification of the primary source (E2B codes 1-5, named)."""

    physician = "physician"
    pharmacist = "pharmacist"
    other_health_professional = "other_health_professional"
    lawyer = "lawyer"
    consumer = "consumer"


class AgeGroup(StrEnum):
    """D.2.3 patient age group as per reporter (E2B codes 0-6, named)."""

    foetus = "foetus"
    neonate = "neonate"
    infant = "infant"
    child = "child"
    adolescent = "adolescent"
    adult = "adult"
    elderly = "elderly"


class Seriousness(StrEnum):
    """E.i.3.2a-f seriousness criteria."""

    death = "death"
    life_threatening = "life_threatening"
    hospitalisation = "hospitalisation"
    disabling = "disabling"
    congenital_anomaly = "congenital_anomaly"
    other_medically_important = "other_medically_important"


class ProductKind(StrEnum):
    """What the report names: the registry's kinds (see pvsignal.products.Kind)."""

    drug = "drug"
    biologic = "biologic"
    vaccine = "vaccine"
    device = "device"
    cell_gene_therapy = "cell_gene_therapy"


MeddraCode = Annotated[str, StringConstraints(pattern=r"^\d{8}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Sender(_Model):
    type: SenderType = Field(description="C.3.1 sender type")
    institution_id: Identifier | None = Field(
        default=None, description="C.3.2 sender organisation (hospital, MAH)"
    )


class OtherCaseId(_Model):
    source: Text | None = Field(default=None, description="C.1.9.1.r.1 source of the case id")
    case_id: Identifier = Field(description="C.1.9.1.r.2 case identifier")


class Patient(_Model):
    age_years: float | None = Field(
        default=None, ge=0, le=130, description="D.2.2 age at onset, in years"
    )
    age_value: float | None = Field(
        default=None, ge=0, description="D.2.2a age at onset as reported (number)"
    )
    age_unit: Annotated[str, StringConstraints(max_length=20)] | None = Field(
        default=None, description="D.2.2b unit of the age (UCUM: {decade}, a, mo, wk, d, h)"
    )
    age_group: AgeGroup | None = Field(default=None, description="D.2.3 age group (reporter's)")
    sex: Sex | None = Field(default=None, description="D.5 sex")

    @model_validator(mode="after")
    def _age_unit(self) -> Patient:
        if (self.age_value is None) != (self.age_unit is None):
            raise ValueError("age_value (D.2.2a) and age_unit (D.2.2b) go together")
        return self


class Product(_Model):
    # The JSON schema states the cross-field rule too, so clients (and schemathesis) see it.
    model_config = ConfigDict(
        **_Model.model_config,
        json_schema_extra={"anyOf": [{"required": ["product_id"]}, {"required": ["name"]}]},
    )

    product_id: Identifier | None = Field(
        default=None, description="registry id of the product (G.k.2.1 MPID/PhPID where known)"
    )
    name: Text | None = Field(
        default=None, description="G.k.2.2 medicinal product name as reported, any language"
    )
    id_system: Identifier | None = Field(
        default=None,
        description="code system (OID) of product_id, e.g. 2.16.840.1.113883.6.69 for an NDC",
    )
    role: Role = Field(default=Role.suspect, description="G.k.1 role of the product")
    kind: ProductKind | None = Field(
        default=None,
        description="device for a device named in the message (a combination product's part); "
        "None: as the registry says",
    )
    holder: Text | None = Field(
        default=None, description="G.k.3.3 name of the authorisation holder / applicant"
    )
    authorisation_number: Identifier | None = Field(
        default=None, description="G.k.3.1 authorisation / application number"
    )

    @model_validator(mode="after")
    def _named(self) -> Product:
        if self.product_id is None and self.name is None:
            raise ValueError("a product needs a product_id or a name")
        return self


class Reaction(_Model):
    """One reaction / event. The MedDRA code is the reaction; texts are shown, never counted."""

    model_config = ConfigDict(
        **_Model.model_config,
        json_schema_extra={
            "anyOf": [{"required": ["pt"]}, {"required": ["pt_code"]}, {"required": ["llt_code"]}]
        },
    )

    pt: Text | None = Field(default=None, description="MedDRA preferred term (name)")
    pt_code: MeddraCode | None = Field(default=None, description="MedDRA PT code (8 digits)")
    llt_code: MeddraCode | None = Field(
        default=None, description="E.i.2.1b reaction / event (MedDRA LLT code, 8 digits)"
    )
    llt: Text | None = Field(
        default=None, description="E.i.2.1b MedDRA LLT name, when the sender gives it"
    )
    meddra_version: Annotated[str, StringConstraints(pattern=r"^\d{1,2}(\.\d{1,2})?$")] | None = (
        Field(default=None, description="E.i.2.1a MedDRA version of the codes (e.g. 25.0)")
    )
    reported_text: Text | None = Field(
        default=None, description="E.i.1.1a reaction as reported by the primary source (native)"
    )
    reported_language: (
        Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] | None
    ) = Field(default=None, description="E.i.1.1b language of reported_text (ISO 639)")
    translation_text: Text | None = Field(
        default=None, description="E.i.1.2 reaction as reported, for translation"
    )
    serious: bool | None = Field(default=None, description="E.i.3.2 seriousness")
    seriousness: list[Seriousness] = Field(
        default_factory=list, max_length=6, description="E.i.3.2a-f criteria that are true"
    )
    outcome: Outcome | None = Field(default=None, description="E.i.7 outcome")

    @model_validator(mode="after")
    def _coded(self) -> Reaction:
        if self.pt is None and self.pt_code is None and self.llt_code is None:
            raise ValueError("a reaction needs pt, pt_code or llt_code (E.i.2.1b)")
        if self.reported_language is not None and self.reported_text is None:
            raise ValueError("reported_language (E.i.1.1b) without reported_text (E.i.1.1a)")
        if self.seriousness and self.serious is False:
            raise ValueError("serious is false but seriousness criteria are given")
        return self

    @property
    def event_key(self) -> str:
        """The counting key: the PT name when given (JSON reports), else the PT code, else the
        LLT code, so that one reaction sent in any language counts as one event."""
        if self.pt is not None:
            return self.pt
        if self.pt_code is not None:
            return f"PT:{self.pt_code}"
        return f"LLT:{self.llt_code}"

    @property
    def label(self) -> str:
        """The best text to show: PT name, LLT name, reported text, translation text, else key."""
        for text in (self.pt, self.llt, self.reported_text, self.translation_text):
            if text is not None:
                return text
        return self.event_key


class Report(_Model):
    """One version of one case."""

    model_config = ConfigDict(
        **_Model.model_config,
        json_schema_extra={
            "anyOf": [
                {"properties": {"nullified": {"const": True}}, "required": ["nullified"]},
                {
                    "properties": {
                        "products": {"minItems": 1},
                        "reactions": {"minItems": 1},
                    },
                    "required": ["products", "reactions"],
                },
            ]
        },
    )

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
    created: dt.date | None = Field(default=None, description="C.1.2 date of creation")
    first_received: dt.date | None = Field(
        default=None, description="C.1.4 date the report was first received from the source"
    )
    report_type: ReportType | None = Field(default=None, description="C.1.3 type of report")
    nullified: bool = Field(default=False, description="C.1.11.1 = 1: the case is nullified")
    amended: bool = Field(default=False, description="C.1.11.1 = 2: this version is an amendment")
    change_reason: Text | None = Field(
        default=None, description="C.1.11.2 reason for the nullification or amendment"
    )
    duplicate_of_ids: list[Identifier] = Field(
        default_factory=list,
        max_length=100,
        description="C.1.9.1 case ids this case supersedes as duplicates",
    )
    other_case_ids: list[OtherCaseId] = Field(
        default_factory=list,
        max_length=100,
        description="C.1.9.1.r other case identifiers in previous transmissions, with source",
    )
    linked_report_ids: list[Identifier] = Field(
        default_factory=list,
        max_length=100,
        description="C.1.10.r reports linked to this one (not duplicates: e.g. parent-child)",
    )
    sender: Sender | None = Field(default=None, description="C.3 sender")
    mah_id: Identifier | None = Field(
        default=None, description="C.1.CN.3 marketing-authorisation holder identifier (China)"
    )
    reporter_qualification: Qualification | None = Field(
        default=None, description="C.2.r.4 qualification of the primary source (regulatory)"
    )
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
        if self.nullified and self.amended:
            raise ValueError("C.1.11.1 is either a nullification or an amendment, not both")
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
