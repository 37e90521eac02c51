"""Exposures: who received a product, where and when — the denominator of active monitoring.

An exposure record is one patient's use of a product, or an aggregate of several patients at
one institution in one period (``patients``). Where every treated patient is registered
(Boao Lecheng, the GBA Connect's designated institutions), the sum of exposures is the number
of patients exposed, and incidence and observed/expected follow (see ``pvsignal.rates``).

Semantics mirror cases (``pvsignal.cases``):

- An exposure is (owner organisation, ``exposure_id``): nothing one owner sends touches
  another's exposure. The owner is decided by the same rules as a case's
  (``pvsignal.ownership``): on the API the caller's organisation, from Kafka and files the
  record's ``sender``, else the source's default.
- The latest ``version`` counts: a higher version is a correction and replaces the earlier one;
  a lower one is stale; the same version again changes nothing (resent).
- ``withdrawn: true`` withdraws the exposure for good; later versions are refused and kept
  among the rejects. A withdrawal of an exposure its sender does not hold is refused (the
  answer is the same whether or not another organisation holds that id).
- An invalid record is rejected with its field, value and reason, kept among the rejects.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from pvsignal.errors import InputError
from pvsignal.ingest import (
    _KEPT_PAYLOAD,
    BatchResult,
    Finish,
    IngestSummary,
    RecordResult,
    _check_fence,
    _payload_text,
    batches,
    rejected,
)
from pvsignal.institutions import InstitutionRegistry
from pvsignal.ownership import OwnerRule, SenderOwns
from pvsignal.products import Registry, ResolvedProduct
from pvsignal.readers import RawRecord
from pvsignal.reports import (
    Identifier,
    Problem,
    Product,
    Sex,
    Text,
    _latest_plausible_date,
    _Model,
    problems_of,
)
from pvsignal.scopes import AGE_BOUNDS, AGE_LABELS, ScopeConfig, ScopeFilter
from pvsignal.store import Reject, SqlStore
from pvsignal.store.exposures import ExposureBatch

__all__ = [
    "Exposure",
    "ExposureIngestor",
    "ExposureOutcome",
    "ExposureRow",
    "read_exposure_files",
]

UNKNOWN = "unknown"
_NEEDED = "an exposure that is not a withdrawal needs "


class Exposure(_Model):
    """One exposure record (JSON wire format; CSV columns carry the same names)."""

    model_config = _Model.model_config | {
        "json_schema_extra": {
            # What ``missing`` checks, for clients: a withdrawal, or a complete exposure.
            "anyOf": [
                {"required": ["withdrawn"], "properties": {"withdrawn": {"const": True}}},
                {
                    "required": ["institution_id", "start"],
                    "anyOf": [{"required": ["product_id"]}, {"required": ["product_name"]}],
                },
            ],
            "examples": [
                {
                    "exposure_id": "LC-H01-2026-000017",
                    "product_id": "P-0001",
                    "institution_id": "LC-H01",
                    "start": "2026-03-02",
                    "age_years": 54,
                    "sex": "F",
                    "doses": 3,
                }
            ],
        }
    }

    exposure_id: Identifier = Field(description="the sender's id of this exposure record")
    version: int = Field(default=1, ge=1, le=2**62, description="a higher version corrects")
    withdrawn: bool = Field(default=False, description="withdraw the exposure for good")
    sender: Identifier | None = Field(
        default=None,
        description="the submitting organisation (hospital, MAH); on the API it must be the "
        "caller's own, from Kafka and files it owns the record",
    )
    product_id: Identifier | None = Field(default=None, description="registry id of the product")
    product_name: Text | None = Field(
        default=None, description="the product's name, resolved through the registry's aliases"
    )
    institution_id: Identifier | None = Field(
        default=None, description="the designated institution where the product was used"
    )
    start: dt.date | None = Field(default=None, description="first use in the period (or date)")
    end: dt.date | None = Field(default=None, description="last day of the period, if any")
    patients: int = Field(
        default=1, ge=1, le=10_000_000, description="patients exposed (1: one patient's use)"
    )
    age_years: float | None = Field(default=None, ge=0, le=130, description="patient's age")
    sex: Sex | None = Field(default=None, description="patient's sex: F, M or U")
    doses: int | None = Field(default=None, ge=0, le=10**9, description="doses given")
    patient_days: float | None = Field(
        default=None, ge=0, le=1e12, description="patient-time exposed, in days"
    )

    @field_validator("start")
    @classmethod
    def _not_future(cls, start: dt.date | None) -> dt.date | None:
        if start is not None and start > _latest_plausible_date():
            raise ValueError(f"{start.isoformat()} lies in the future")
        return start

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start = info.data.get("start")
        if end is not None and start is not None and end < start:
            raise ValueError(f"{end.isoformat()} is before start {start.isoformat()}")
        return end

    def missing(self) -> Problem | None:
        """What an exposure that is not a withdrawal lacks (the first such field), if anything."""
        if self.withdrawn:
            return None
        if self.product_id is None and self.product_name is None:
            return Problem(
                field="product_id", value="None", reason=_NEEDED + "product_id or product_name"
            )
        for name in ("institution_id", "start"):
            if getattr(self, name) is None:
                return Problem(field=name, value="None", reason=_NEEDED + name)
        return None

    @property
    def period(self) -> str:
        return UNKNOWN if self.start is None else f"{self.start.year:04d}-{self.start.month:02d}"

    @property
    def age_band(self) -> str:
        if self.age_years is None:
            return UNKNOWN
        return AGE_LABELS[sum(self.age_years >= bound for bound in AGE_BOUNDS)]


class ExposureOutcome(StrEnum):
    """What one valid exposure record did."""

    new = "new"
    corrected = "corrected"
    stale = "stale"
    resent = "resent"
    withdrawn = "withdrawn"
    refused = "refused"


CHANGED = frozenset({ExposureOutcome.new, ExposureOutcome.corrected, ExposureOutcome.withdrawn})


class CountedExposure(NamedTuple):
    """Patients exposed alike (same product, institution, start, age and sex), summed: what
    rates and sequential tests read (``SqlStore.exposure_counts``)."""

    product: str
    institution: str | None
    start: str | None
    period: str
    age_years: float | None
    age_band: str
    sex: str
    patients: int
    patient_days: float  # of the patients whose exposures give it
    untimed: int  # patients of exposures that give no patient-time


@dataclass(frozen=True, slots=True)
class ExposureRow:
    """An exposure as stored: its latest version, resolved (product id, canonical institution)."""

    owner: str
    exposure_id: str
    version: int
    status: str  # active | withdrawn
    product: str | None
    institution: str | None
    start: str | None
    period: str
    age_years: float | None
    age_band: str
    sex: str
    patients: int
    doses: int | None
    patient_days: float | None
    doc: str

    @property
    def key(self) -> tuple[str, str]:
        return self.owner, self.exposure_id


def decide(old: ExposureRow | None, record: Exposure, owner: str) -> tuple[ExposureOutcome, str]:
    """The outcome of applying ``record`` (owned by ``owner``) over the stored ``old``, and why."""
    if old is not None and old.status == "withdrawn":
        return ExposureOutcome.refused, (
            f"exposure {record.exposure_id!r} was withdrawn; later versions are refused"
        )
    if old is None:
        if record.withdrawn:
            return ExposureOutcome.refused, (
                f"{owner!r} holds no exposure {record.exposure_id!r} to withdraw"
            )
        return ExposureOutcome.new, "first version"
    if record.version < old.version:
        return ExposureOutcome.stale, f"version {record.version} is older than {old.version}"
    if record.version == old.version and not record.withdrawn:
        return ExposureOutcome.resent, f"version {record.version} is already applied"
    if record.withdrawn:
        return ExposureOutcome.withdrawn, "withdrawn by its owner"
    return ExposureOutcome.corrected, f"version {record.version} replaces {old.version}"


class ExposureIngestor:
    """Applies batches of exposure records to a store: one transaction per batch, with the
    consumed offsets (Kafka) or a receipt (the API) landing in the same one. The interface of
    ``pvsignal.ingest.Ingestor.apply``, so the Kafka consumer and the API drive either."""

    def __init__(
        self,
        store: SqlStore,
        scopes: ScopeConfig,
        *,
        registry: Registry | None = None,
        institutions: InstitutionRegistry | None = None,
        owners: OwnerRule | None = None,
        source: str = "exposures",
        batch_size: int = 5_000,
    ) -> None:
        self.store, self.scopes, self.source, self.batch_size = store, scopes, source, batch_size
        self.registry = registry if registry is not None else Registry(store.load_products())
        self.institutions = (
            institutions
            if institutions is not None
            else InstitutionRegistry(store.load_institutions())
        )
        self.owners: OwnerRule = owners if owners is not None else SenderOwns()

    def ingest(self, records: Iterable[RawRecord]) -> IngestSummary:
        summary = IngestSummary()
        for batch in batches(records, self.batch_size):
            summary.merge(self.apply(batch).summary)
        return summary

    def apply(
        self,
        records: list[RawRecord],
        offsets: dict[tuple[str, int], int] | None = None,
        expected: dict[tuple[str, int], int | None] | None = None,
        finish: Finish | None = None,
        owners: OwnerRule | None = None,
    ) -> BatchResult:
        """Validate and apply one batch in one transaction (see Ingestor.apply)."""
        owners = self.owners if owners is None else owners
        results: list[RecordResult] = []
        rejects: list[Reject] = []
        valid: list[tuple[int, Exposure, str, str]] = []  # (result index, record, owner, text)
        for record in records:
            exposure, owner, reject = self._validated(record, owners)
            if reject is not None:
                rejects.append(reject)
                reason = f"{reject.field}: {reject.reason} ({reject.value})"
                results.append(RecordResult(record.location, "rejected", None, reason))
            else:
                assert exposure is not None and owner is not None
                valid.append((len(results), exposure, owner, _payload_text(record.payload)))
                results.append(RecordResult(record.location, "pending"))
        summary = IngestSummary(received=len(records), rejected=len(rejects))
        with self.store.batch() as session:
            if expected:
                _check_fence(session, expected)
            exposures = ExposureBatch(session)
            stored = exposures.load_exposures({(owner, e.exposure_id) for _, e, owner, _ in valid})
            changed: dict[tuple[str, str], ExposureRow] = {}
            for index, exposure, owner, text in valid:
                key = (owner, exposure.exposure_id)
                old = changed.get(key, stored.get(key))
                outcome, reason = decide(old, exposure, owner)
                location = records[index].location
                summary.outcomes[outcome] += 1
                results[index] = RecordResult(
                    location, outcome, exposure.exposure_id, reason, owner
                )
                if outcome is ExposureOutcome.refused:
                    rejects.append(
                        Reject(
                            self.source,
                            location,
                            "exposure_id",
                            repr(exposure.exposure_id),
                            reason,
                            text[:_KEPT_PAYLOAD],
                        )
                    )
                elif outcome in CHANGED:
                    row = self._row(exposure, owner, text, old)
                    changed[key] = row
                    summary.touched_scopes |= self.scopes_of(old) | self.scopes_of(row)
            exposures.write_exposures(list(changed.values()), rejects, offsets or {})
            result = BatchResult(summary, results)
            if finish is not None:
                finish(session, result)
        return result

    def _validated(
        self, record: RawRecord, owners: OwnerRule
    ) -> tuple[Exposure | None, str | None, Reject | None]:
        if record.error is not None or record.payload is None:
            return None, None, self._reject(record, "(record)", "", record.error or "empty")
        try:
            if isinstance(record.payload, dict):
                exposure = Exposure.model_validate(record.payload)
            else:
                exposure = Exposure.model_validate_json(record.payload)
        except ValidationError as error:
            problems = problems_of(error)
            reasons = "; ".join(str(p) for p in problems)
            return None, None, self._reject(record, problems[0].field, problems[0].value, reasons)
        problem = exposure.missing()
        if problem is not None:
            return None, None, self._reject(record, problem.field, problem.value, str(problem))
        owner, problem = owners.owner_of(exposure.sender, self.institutions, field="sender")
        if problem is None and not exposure.withdrawn:
            assert exposure.institution_id is not None
            product = self.resolve(exposure)
            problem = owners.exposure_problem(exposure.institution_id, product, self.institutions)
        if problem is not None:
            return None, None, self._reject(record, problem.field, problem.value, str(problem))
        return exposure, owner, None

    def _reject(self, record: RawRecord, field: str, value: str, reason: str) -> Reject:
        return rejected(self.source, record, field, value, reason)

    def _row(
        self, exposure: Exposure, owner: str, text: str, old: ExposureRow | None
    ) -> ExposureRow:
        if exposure.withdrawn:
            assert old is not None, "a withdrawal of nothing is refused"
            return ExposureRow(
                **{**_fields(old), "version": exposure.version, "status": "withdrawn", "doc": text}
            )
        product = self.resolve(exposure)
        institution = exposure.institution_id
        assert institution is not None and exposure.start is not None
        return ExposureRow(
            owner=owner,
            exposure_id=exposure.exposure_id,
            version=exposure.version,
            status="active",
            product=product.product_id,
            institution=self.institutions.canonical(institution),
            start=exposure.start.isoformat(),
            period=exposure.period,
            age_years=exposure.age_years,
            age_band=exposure.age_band,
            sex=(exposure.sex or Sex.unknown).value,
            patients=exposure.patients,
            doses=exposure.doses,
            patient_days=exposure.patient_days,
            doc=text,
        )

    def resolve(self, exposure: Exposure) -> ResolvedProduct:
        """The product through the registry, as a report's product entry resolves."""
        return self.registry.resolve(
            Product(product_id=exposure.product_id, name=exposure.product_name)
        )

    def scopes_of(self, row: ExposureRow | None) -> set[str]:
        """The scopes whose filter admits the exposure (none for nothing)."""
        if row is None or row.product is None:
            return set()
        product = self.registry.resolve(Product(product_id=row.product))
        region = self.institutions.region_of(row.institution)
        return {
            scope.name
            for scope in self.scopes.all_scopes()
            if admits_exposure(scope.filter, row, product, region)
        }


def admits_exposure(
    scope_filter: ScopeFilter,
    exposure: ExposureRow | CountedExposure,
    product: ResolvedProduct,
    region: str | None,
) -> bool:
    """Does a scope's filter admit the exposure? Its institution stands for the report's
    sender (institutions, regions via the registry), its start date for the received date, the
    patient's age for the report's; product filters apply as to a report's product. A scope's
    ``sender_types`` and ``countries`` say nothing about exposures and are not applied."""
    f, age, start = scope_filter, exposure.age_years, exposure.start
    since = None if f.received_from is None else f.received_from.isoformat()
    until = None if f.received_to is None else f.received_to.isoformat()
    return (
        (not f.regions or region in f.regions)
        and (not f.institutions or exposure.institution in f.institutions)
        and (f.age_min is None or (age is not None and age >= f.age_min))
        and (f.age_max is None or (age is not None and age <= f.age_max))
        and (since is None or (start is not None and start >= since))  # ISO dates: as text
        and (until is None or (start is not None and start <= until))
        and f.admits_product(product)
    )


def _fields(row: ExposureRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in ExposureRow.__slots__}


# -- files: JSON Lines and CSV ----------------------------------------------------------------

CSV_COLUMNS = tuple(Exposure.model_fields)


def csv_records(text: str, location: str) -> Iterator[RawRecord]:
    """CSV with a header of Exposure's field names; an empty cell is an absent value. A row
    with unknown columns or the wrong number of cells is an error record (kept as rejected)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if unknown:
        yield RawRecord(
            f"{location}:1",
            None,
            f"header: unknown column {unknown[0]!r} (columns: {', '.join(CSV_COLUMNS)})",
        )
        return
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            yield RawRecord(
                f"{location}:{line}",
                ",".join(cells),
                f"{len(cells)} cells for {len(header)} columns",
            )
            continue
        document = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
        yield RawRecord(f"{location}:{line}", {k: v for k, v in document.items() if v != ""})


def read_exposure_files(paths: Iterable[Path]) -> Iterator[RawRecord]:
    """Each exposure record of each file: ``.csv`` as CSV, anything else as JSON Lines."""
    for path in paths:
        if not path.is_file():
            raise InputError(f"{str(path)!r} is not a file")
        if path.suffix.lower() == ".csv":
            yield from csv_records(path.read_text(encoding="utf-8-sig"), path.name)
            continue
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield RawRecord(f"{path.name}:{number}", line)


def outcome_counts(results: Iterable[RecordResult]) -> Counter[str]:
    return Counter(str(result.outcome) for result in results)
