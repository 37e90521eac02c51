"""The ingest engine: records in, case semantics applied, counts and rejects out, per batch.

Each batch is validated, resolved against the product registry, applied to the case states it
touches (loaded from the store) and written back in one store transaction. The same engine
serves `pvsignal ingest`, the HTTP API and the Kafka consumer.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from pvsignal.cases import UNKNOWN_PERIOD, CaseBook, Contribution, Outcome, Version, place_of
from pvsignal.errors import StaleOffsetsError
from pvsignal.institutions import InstitutionRegistry
from pvsignal.ownership import OwnerRule, SenderOwns, sender_organisation
from pvsignal.products import Registry
from pvsignal.readers import RawRecord
from pvsignal.reports import Report, problems_of
from pvsignal.scopes import ScopeConfig, stratum_of
from pvsignal.store import BatchWrite, Reject, SqlStore
from pvsignal.store.sql import BatchSession, VersionRow
from pvsignal.terminology.dictionary import Level, Paths
from pvsignal.terminology.store import MEDDRA_VERSION

_SENDER_OWNS = SenderOwns()

# A record's payload is kept with its reject up to this size, so it can be corrected and resent.
_KEPT_PAYLOAD = 65_536


@dataclass
class IngestSummary:
    """What an ingest did, record by record."""

    received: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    duplicates_withdrawn: int = 0
    touched_scopes: set[str] = field(default_factory=set)

    def merge(self, other: IngestSummary) -> None:
        self.received += other.received
        self.outcomes.update(other.outcomes)
        self.rejected += other.rejected
        self.duplicates_withdrawn += other.duplicates_withdrawn
        self.touched_scopes |= other.touched_scopes


class RecordResult(NamedTuple):
    """The outcome of one record: an Outcome value, or 'rejected', with the reason if any."""

    location: str
    outcome: str
    case_id: str | None = None
    reason: str | None = None
    owner: str | None = None


@dataclass
class BatchResult:
    summary: IngestSummary
    results: list[RecordResult]


# Called inside a batch's transaction once its changes are written: whatever else must land
# with them (a submission's receipt) or not at all.
Finish = Callable[[BatchSession, BatchResult], None]


class Ingestor:
    """Applies batches of records to a store under one registry and scope configuration."""

    def __init__(
        self,
        store: SqlStore,
        scopes: ScopeConfig,
        *,
        registry: Registry | None = None,
        institutions: InstitutionRegistry | None = None,
        owners: OwnerRule = _SENDER_OWNS,
        source: str = "ingest",
        batch_size: int = 5_000,
    ) -> None:
        self.store, self.scopes, self.source, self.batch_size = store, scopes, source, batch_size
        self.registry = registry if registry is not None else Registry(store.load_products())
        self.institutions = (
            institutions
            if institutions is not None
            else InstitutionRegistry(store.load_institutions())
        )
        self.owners = owners
        self._filters = [
            (
                scope.name,
                None if scope.filter.admits_everything else scope.filter,
                (scope.level, scope.paths),
            )
            for scope in scopes.all_scopes()
        ]
        self._roles = scopes.counted_roles()
        self.terms = store.event_terms()
        self.terms.check((scope.name, scope.level) for scope in scopes.all_scopes())

    def ingest(self, records: Iterable[RawRecord]) -> IngestSummary:
        """Ingest all records in batches; each batch is one transaction."""
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
        """Validate and apply one batch, writing it (and the given offsets) in one transaction.

        ``expected`` fences the writer: the store's next offset of each (topic, partition) the
        batch was read from (None: none stored). If another writer has moved one since, the
        batch is refused whole with StaleOffsetsError and nothing is written. ``finish`` runs
        in the same transaction, after the batch's writes. ``owners`` overrides the engine's
        owner rule for this batch (the API's caller).
        """
        owners = self.owners if owners is None else owners
        rejects: list[Reject] = []
        results: list[RecordResult | None] = []
        versions: list[tuple[int, Version]] = []
        reports: dict[int, Report] = {}
        for record in records:
            version, reject, report = self._version(record, owners)
            if reject is not None:
                rejects.append(reject)
                results.append(
                    RecordResult(
                        record.location,
                        "rejected",
                        None,
                        f"{reject.field}: {reject.reason} ({reject.value})",
                    )
                )
            else:
                assert version is not None and report is not None
                reports[len(results)] = report
                versions.append((len(results), version))
                results.append(None)
        invalid = len(rejects)
        wanted = {v.case_id for _, v in versions}
        wanted.update(other for _, v in versions for other in v.duplicate_of_ids)
        with self.store.batch() as session:
            if expected:
                _check_fence(session, expected)
            versions, labels = self._settle_terms(versions, reports)
            book = CaseBook(session.load_cases(wanted))
            summary = self._apply_versions(book, versions, records, results, rejects)
            summary.received, summary.rejected = len(records), invalid
            session.write(
                BatchWrite(
                    cases=book.changed_states(),
                    deltas=book.deltas,
                    rejects=rejects,
                    offsets=offsets or {},
                    suspicions=sorted(book.suspicions),
                    versions=_version_rows(versions, results),
                )
            )
            result = BatchResult(summary, [r for r in results if r is not None])
            if finish is not None:
                finish(session, result)
        self.terms.labels.settle(labels)  # committed: the labels claimed are the store's
        return result

    def _settle_terms(
        self, versions: list[tuple[int, Version]], reports: dict[int, Report]
    ) -> tuple[list[tuple[int, Version]], dict[str, str]]:
        """Inside the batch's transaction: count under the store's current terminology. A
        MedDRA version loaded since this engine started is taken up (the batch recounted
        under it); labels of terms new to the store are claimed, and where another writer
        recorded one first, the batch counts under that one. Returns the versions and the
        labels claimed (adopted once the batch commits)."""
        if self.store.setting(MEDDRA_VERSION) != self.terms.version:
            self.terms = self.store.event_terms()
            versions = [
                (i, v._replace(contribution=self.contribution(reports[i]))) for i, v in versions
            ]
        labels = self.store.claim_event_labels(self.terms.labels.unclaimed())
        changed = self.terms.labels.changes(labels)
        if changed:
            versions = [
                (i, v._replace(contribution=relabelled(v.contribution, changed)))
                for i, v in versions
            ]
        return versions, labels

    def _apply_versions(
        self,
        book: CaseBook,
        versions: list[tuple[int, Version]],
        records: list[RawRecord],
        results: list[RecordResult | None],
        rejects: list[Reject],
    ) -> IngestSummary:
        summary = IngestSummary()
        for index, version in versions:
            outcome, reason = book.apply(version)
            summary.outcomes[outcome] += 1
            location = records[index].location
            results[index] = RecordResult(location, outcome, version.case_id, reason, version.owner)
            if outcome is Outcome.refused:
                rejects.append(
                    Reject(
                        self.source,
                        location,
                        "case_id",
                        repr(version.case_id),
                        reason or "refused",
                        version.report_json[:_KEPT_PAYLOAD],
                    )
                )
        summary.duplicates_withdrawn = book.duplicates_withdrawn
        summary.touched_scopes = book.deltas.touched
        return summary

    def _version(
        self, record: RawRecord, owners: OwnerRule
    ) -> tuple[Version | None, Reject | None, Report | None]:
        if record.error is not None or record.payload is None:
            reason = record.error or "empty record"
            return None, self._reject(record, "(record)", "", reason), None
        report = record.report
        if report is None:
            try:
                if isinstance(record.payload, dict):
                    report = Report.model_validate(record.payload)
                else:
                    report = Report.model_validate_json(record.payload)
            except ValidationError as error:
                problem = problems_of(error)[0]
                reasons = "; ".join(str(p) for p in problems_of(error))
                return None, self._reject(record, problem.field, problem.value, reasons), None
        owner, problem = owners.owner(report, self.institutions)
        if problem is not None:
            return None, self._reject(record, problem.field, problem.value, str(problem)), None
        return self._to_version(report, owner, _payload_text(record.payload)), None, report

    def _reject(self, record: RawRecord, field_: str, value: str, reason: str) -> Reject:
        return rejected(self.source, record, field_, value, reason)

    def _to_version(self, report: Report, owner: str, text: str) -> Version:
        return Version(
            owner=owner,
            case_id=report.case_id,
            report_id=report.report_id,
            version=report.version,
            nullified=report.nullified,
            duplicate_of_ids=tuple(report.duplicate_of_ids),
            contribution=self.contribution(report),
            report_json=text,
            received=None if report.received is None else report.received.isoformat(),
        )

    def contribution(self, report: Report) -> Contribution:
        """The counted products and events of the report, per scope it belongs to, and the
        place it states (not its institution's region: the overview counts cases by the
        region their listing shows)."""
        place = place_of(report.region, sender_organisation(report))
        report = self._located(report)
        resolve, roles = self.registry.resolve, self._roles
        resolved = [resolve(entry) for entry in report.products if entry.role in roles]
        reactions, terms = report.reactions, self.terms
        events_at: dict[tuple[Level, Paths], tuple[str, ...]] = {}
        scopes = []
        for name, admits, level in self._filters:
            if admits is None:  # the scope admits everything
                products = tuple(dict.fromkeys([p.product_id for p in resolved]))
            elif admits.admits_report(report):
                products = tuple(
                    dict.fromkeys([p.product_id for p in resolved if admits.admits_product(p)])
                )
            else:
                continue
            if products and reactions:
                # At an SMQ level a case may have no term: it still counts in the margins.
                events = events_at.get(level)
                if events is None:
                    events = events_at[level] = terms.keys(reactions, *level)
                scopes.append((name, products, events))
        return Contribution(stratum_of(report), tuple(scopes), period_of(report), *place)

    def _located(self, report: Report) -> Report:
        """The report with its institution's region when it states none itself."""
        if report.region is not None:
            return report
        region = self.institutions.region_of(sender_organisation(report))
        return report if region is None else report.model_copy(update={"region": region})


class BatchCollector:
    """Runs the cyclic garbage collector between batches instead of during them.

    Validation allocates a dozen small objects per report, almost none in reference cycles.
    With the default thresholds the collector runs every 700 allocations and rescans the live
    batch each time (validation in the consumer was four times slower for it). So: what is
    loaded at start (modules, the registry) is frozen out of every scan, automatic collection
    is off, and after each batch the young generations are collected (what the batch left in
    cycles); a long-running process also collects fully every ``full_every`` seconds.
    """

    def __init__(self, full_every: float = 600.0) -> None:
        gc.freeze()
        gc.disable()
        self._full_every, self._last_full = full_every, time.monotonic()

    def after_batch(self) -> None:
        if time.monotonic() - self._last_full < self._full_every:
            gc.collect(1)
        else:
            gc.collect()
            self._last_full = time.monotonic()

    def close(self) -> None:
        gc.enable()


def rejected(source: str, record: RawRecord, field_: str, value: str, reason: str) -> Reject:
    """A refused record as the store keeps it: where from, which field and value, why, and the
    record itself (up to a size) so that it can be corrected and resent."""
    text = None if record.payload is None else _payload_text(record.payload)
    return Reject(
        source,
        record.location,
        field_,
        value,
        reason,
        None if text is None else text[:_KEPT_PAYLOAD],
    )


def _check_fence(session: BatchSession, expected: dict[tuple[str, int], int | None]) -> None:
    stored: dict[str, dict[int, int]] = {}
    for (topic, partition), start in expected.items():
        now = stored.setdefault(topic, session.offsets(topic)).get(partition)
        if now != start:
            raise StaleOffsetsError(
                f"{topic}[{partition}] is at offset {now} in the store, not {start} as this "
                "batch was read: another consumer has applied it; the batch is not written"
            )


def relabelled(contribution: Contribution, changed: dict[str, str]) -> Contribution:
    """The contribution with its event keys renamed (provisional labels to recorded ones)."""
    scopes = tuple(
        (scope, products, tuple(changed.get(e, e) for e in events))
        for scope, products, events in contribution.scopes
    )
    return contribution._replace(scopes=scopes)


def period_of(report: Report) -> str:
    """The received month (``YYYY-MM``) a report counts in, or ``UNKNOWN_PERIOD``."""
    received = report.received
    return UNKNOWN_PERIOD if received is None else f"{received.year:04d}-{received.month:02d}"


def _version_rows(
    versions: list[tuple[int, Version]], results: list[RecordResult | None]
) -> list[VersionRow]:
    """Every valid version of the batch with what it did: the cases' version history."""
    rows = []
    for index, version in versions:
        result = results[index]
        assert result is not None, "every applied version has its result"
        rows.append(
            VersionRow(
                version.owner,
                version.case_id,
                version.version,
                version.report_id,
                version.received,
                result.outcome,
                result.location,
            )
        )
    return rows


def batches(records: Iterable[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _payload_text(payload: bytes | str | dict[str, Any]) -> str:
    """The record as received, as text: what the store keeps of a case's latest version."""
    if isinstance(payload, dict):
        return orjson.dumps(payload, default=str).decode()
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="replace").rstrip("\n")
    return payload
