"""Readers turn source files into wire-format records, one per report version.

A reader never validates reports itself and never drops anything: each report it can
assemble becomes a :class:`RawRecord` with its payload (the JSON wire format, as text or as a
dict), and whatever it cannot read becomes a record with ``error`` set, so that the ingest
keeps it, with its location and reason, among the rejects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One report as read from a source, not yet validated."""

    location: str  # where it came from: "reports.jsonl:17", "DEMO20Q3.txt:primaryid=123"
    payload: bytes | str | dict[str, Any] | None  # wire-format JSON text or dict
    error: str | None = None  # the reader's reason when it could not assemble a payload
