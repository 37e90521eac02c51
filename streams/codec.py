"""Kafka message -> wire-format records for the Ingestor, and poison with its reason.

A consumer of exposures (``records="exposures"``) reads JSON exposure records only
(pvsignal.exposures); an invalid one is poison ``invalid_exposure``.

The ``content-type`` header names the payload: ``application/json`` (the default: one report
per message) or an E2B(R3) XML batch (``application/xml``, ``application/hl7-v3+xml``,
``text/xml``; one message may carry several reports). Media-type parameters are ignored.

A message is *poison* when it can never be applied, whatever is retried: larger than the size
limit, empty, of an unknown content type, not UTF-8, not JSON, a report that fails the schema,
an XML document with a DTD or entities (XML bombs, XXE), or one that is not well-formed.

Every message also gives the Ingestor at least one record, poison included (as the Ingestor
would see the same bytes read from a file, or as an error record), so the store keeps every
refused message among its rejects, located ``topic:partition@offset``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from pvsignal.exposures import Exposure
from pvsignal.readers import RawRecord
from pvsignal.readers.e2b import read_e2b_bytes
from pvsignal.reports import Report, problems_of

JSON = "application/json"
E2B_TYPES = frozenset({"application/xml", "application/hl7-v3+xml", "text/xml"})
DEFAULT_MAX_BYTES = 1 << 20
RECORDS = ("reports", "exposures")  # what a topic carries

# The closed set of poison reasons (metric labels, the DLQ's ``error`` header).
POISON_REASONS = (
    "oversize",
    "empty",
    "unknown_content_type",
    "not_utf8",
    "not_json",
    "invalid_report",
    "invalid_exposure",
    "xml_refused",
    "xml_malformed",
)
_DETAIL = 2_000  # characters of detail kept per poison


@dataclass(frozen=True, slots=True)
class Poison:
    """Why a message can never be applied: one of POISON_REASONS, and the detail."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one message gives: records for the Ingestor, and its poison if any."""

    records: tuple[RawRecord, ...]
    poison: Poison | None = None


def content_type(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """The media type of the ``content-type`` header, lower-cased; None when absent."""
    for key, value in headers or ():
        if key.lower() == "content-type":
            text = (value or b"").decode("utf-8", errors="replace")
            return text.split(";", 1)[0].strip().lower()
    return None


class Codec:
    """Decodes messages; ``max_bytes`` bounds a message before anything parses it."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, records: str = "reports") -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
        if records not in RECORDS:
            raise ValueError(f"records must be one of {', '.join(RECORDS)}, got {records!r}")
        self.max_bytes, self.records = max_bytes, records

    def decode(
        self,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes | None]] | None,
        location: str,
    ) -> Decoded:
        if not value:
            return _refused(location, Poison("empty", "the message has no value (a tombstone?)"))
        if len(value) > self.max_bytes:
            detail = f"{len(value)} bytes, more than the limit of {self.max_bytes}"
            return _refused(location, Poison("oversize", detail))
        kind = content_type(headers) or JSON
        if kind == JSON and self.records == "exposures":
            return _decode_exposure(value, location)
        if kind == JSON:
            return _decode_json(value, location)
        if kind in E2B_TYPES and self.records == "reports":
            return _decode_e2b(value, location)
        known = JSON if self.records == "exposures" else ", ".join(sorted({JSON, *E2B_TYPES}))
        detail = f"content-type {kind!r} is not one of {known}"
        return _refused(location, Poison("unknown_content_type", detail))


def _refused(location: str, poison: Poison) -> Decoded:
    """A message the Ingestor must only record as refused: nothing of it is parsed."""
    return Decoded((RawRecord(location, None, f"{poison.reason}: {poison.detail}"),), poison)


def _decode_json(value: bytes, location: str) -> Decoded:
    # Validated here: poison must reach the dead-letter topic before its batch (and offset) is
    # written. A good report travels on validated; the Ingestor rejects a bad one the same way.
    decoded = _validated_json(value, location, Report, "invalid_report")
    if isinstance(decoded, Decoded):
        return decoded
    return Decoded((RawRecord(location, value, report=decoded),))


def _decode_exposure(value: bytes, location: str) -> Decoded:
    """An exposure record (pvsignal.exposures), validated here as a report is."""
    decoded = _validated_json(value, location, Exposure, "invalid_exposure")
    if isinstance(decoded, Decoded):
        return decoded
    problem = decoded.missing()
    if problem is not None:
        return Decoded((RawRecord(location, value),), Poison("invalid_exposure", str(problem)))
    return Decoded((RawRecord(location, value),))


def _validated_json(
    value: bytes, location: str, model: type[Report] | type[Exposure], invalid: str
) -> Report | Exposure | Decoded:
    """The message as ``model``, or what it decodes to as poison (not UTF-8, not JSON,
    ``invalid``: a schema violation)."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as error:
        return _refused(location, Poison("not_utf8", str(error)[:_DETAIL]))
    try:
        return model.model_validate_json(value)
    except ValidationError as error:
        record = RawRecord(location, value)
        if any(item["type"] == "json_invalid" for item in error.errors(include_url=False)):
            return Decoded((record,), Poison("not_json", _describe(error)))
        return Decoded((record,), Poison(invalid, _describe(error)))


def _decode_e2b(value: bytes, location: str) -> Decoded:
    records = tuple(read_e2b_bytes(value, location))
    problems = []
    for record in records:
        if record.error is not None:
            problems.append((_xml_reason(record.error), f"{record.location}: {record.error}"))
            continue
        try:
            Report.model_validate(record.payload)
        except ValidationError as error:
            problems.append(("invalid_report", f"{record.location}: {_describe(error)}"))
    if not problems:
        return Decoded(records)
    # The message's reason is its first problem's; the Ingestor still applies its good reports.
    detail = "; ".join(text for _, text in problems)[:_DETAIL]
    return Decoded(records, Poison(problems[0][0], detail))


def _xml_reason(error: str) -> str:
    # The E2B reader's whole-document failures (see pvsignal.readers.e2b._read_source).
    if error.startswith("refused:"):
        return "xml_refused"
    if error.startswith("not well-formed XML"):
        return "xml_malformed"
    return "invalid_report"


def _describe(error: ValidationError) -> str:
    return "; ".join(str(problem) for problem in problems_of(error))[:_DETAIL]
