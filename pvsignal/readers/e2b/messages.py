"""Batches and messages: one pull parser for files, bytes and streamed chunks.

The parser is defusedxml's (DTDs, entity declarations and external references raise before
anything is expanded or fetched) fed chunk by chunk; each ``PORR_IN049016UV`` message is mapped
as soon as it closes, then cleared, so a large batch stays small and a caller can stop early.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from pvsignal.readers import RawRecord
from pvsignal.readers.e2b.hl7 import (
    BATCH,
    MESSAGE,
    NS,
    REPORT_ID,
    UnreadableError,
    attr,
    identifier,
)
from pvsignal.readers.e2b.icsr import report_of

_CHUNK = 1 << 16
_EVENT = "h:controlActProcess/h:subject/h:investigationEvent"


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """N.1 of a batch (MCCI_IN200100UV01); all None for a message sent without a batch."""

    batch_id: str | None = None  # N.1.2 batch number
    sender_id: str | None = None  # N.1.3 batch sender identifier
    receiver_id: str | None = None  # N.1.4 batch receiver identifier
    created: str | None = None  # N.1.5 date of batch transmission (HL7 timestamp as sent)


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """N.2.r of one ICSR message and its C.1.1; all None for a whole-document error."""

    message_id: str | None = None  # N.2.r.1 message identifier
    sender_id: str | None = None  # N.2.r.2 message sender identifier
    receiver_id: str | None = None  # N.2.r.3 message receiver identifier
    created: str | None = None  # N.2.r.4 date of message creation
    report_id: str | None = None  # C.1.1 sender's safety report unique identifier


@dataclass(slots=True)
class _Document:
    """What one document's parse has seen so far (the batch header closes after the messages)."""

    name: str
    batch: dict[str, str | None] = field(default_factory=dict)
    messages: int = 0
    root: str | None = None

    def header(self) -> BatchHeader:
        return BatchHeader(**self.batch)


def read_e2b(paths: Iterable[Path]) -> Iterator[RawRecord]:
    """Read E2B(R3) XML files (batches or single messages) into wire-format records.

    Parameters
    ----------
    paths
        Directories (searched recursively for ``*.xml``) or individual files.

    Yields
    ------
    RawRecord
        One per ICSR, located as ``batch.xml:message 2 (C.1.1 CN-HOSP-2024-0001)``; an error
        record for an element E2B(R3) does not allow (naming element and value), for a file
        refused because it declares a DTD or entities, for a file that is not well-formed (with
        its line), and for a file without any ICSR message. Nothing raises for bad input.
    """
    for given in map(Path, paths):
        if given.is_dir():
            files = sorted(
                p for p in given.rglob("*") if p.is_file() and p.suffix.lower() == ".xml"
            )
        elif given.is_file():
            files = [given]
        else:
            yield RawRecord(str(given), None, f"no such file or directory: {given}")
            continue
        for path in files:
            try:
                with path.open("rb") as stream:
                    chunks = iter(lambda: stream.read(_CHUNK), b"")
                    yield from _records(_Document(path.name), chunks)
            except OSError as error:
                yield RawRecord(str(path), None, f"cannot read {path.name}: {error}")


def read_e2b_bytes(data: bytes, name: str) -> Iterator[RawRecord]:
    """Read one E2B(R3) document held in memory (a Kafka message, an upload) like a file."""
    return _records(_Document(name), [data])


def read_e2b_stream(chunks: Iterable[bytes], source: str) -> Iterator[RawRecord]:
    """Read an E2B(R3) document arriving in chunks (a streamed HTTP body).

    Each ICSR's record is yielded as soon as its message element closes, so the caller may stop
    at a record-count limit without reading the rest. Same refusals and records as
    :func:`read_e2b_bytes`; an exception from ``chunks`` itself propagates.
    """
    return _records(_Document(source), chunks)


class E2BReading:
    """A document read as it arrives, keeping the headers an acknowledgement needs: iterate
    for (message header, record) pairs, or :meth:`records` for the records alone; ``headers``
    (one per record) and ``batch`` are complete once reading has ended (the batch sender and
    receiver follow the messages)."""

    def __init__(self, chunks: Iterable[bytes], source: str) -> None:
        self._document = _Document(source)
        self._chunks = chunks
        self.headers: list[MessageHeader] = []

    def __iter__(self) -> Iterator[tuple[MessageHeader, RawRecord]]:
        for header, record in _parse(self._document, self._chunks):
            self.headers.append(header)
            yield header, record

    def records(self) -> Iterator[RawRecord]:
        return (record for _, record in self)

    @property
    def batch(self) -> BatchHeader:
        return self._document.header()


def read_e2b_batch(
    data: bytes, source: str
) -> tuple[BatchHeader, list[tuple[MessageHeader, RawRecord]]]:
    """Read a whole batch with the headers an acknowledgement needs.

    Returns the batch header (N.1) and, per ICSR, its message header (N.2.r, C.1.1) with its
    record. A whole-document error (refused, not well-formed, no ICSR) is a record with an
    empty :class:`MessageHeader`.
    """
    reading = E2BReading([data], source)
    found = list(reading)
    return reading.batch, found


def _records(document: _Document, chunks: Iterable[bytes]) -> Iterator[RawRecord]:
    return (record for _, record in _parse(document, chunks))


def _parse(
    document: _Document, chunks: Iterable[bytes]
) -> Iterator[tuple[MessageHeader, RawRecord]]:
    name, none = document.name, MessageHeader()
    try:
        yield from _messages(document, chunks)
    except DefusedXmlException as error:
        reason = (
            f"refused: {name} declares a DTD, entities or an external reference ({error}); "
            "it was not expanded or fetched, and no report was read"
        )
        yield none, RawRecord(name, None, reason)
        return
    except ET.ParseError as error:
        line = error.position[0] if error.position else 0
        yield none, RawRecord(f"{name}:{line}", None, f"not well-formed XML: {error}")
        return
    if document.messages == 0:
        reason = f"no PORR_IN049016UV ICSR message in {name} (root element {document.root})"
        yield none, RawRecord(name, None, reason)


def _messages(
    document: _Document, chunks: Iterable[bytes]
) -> Iterator[tuple[MessageHeader, RawRecord]]:
    parser = ET.XMLPullParser(
        events=("start", "end"),
        _parser=DefusedXMLParser(
            target=ET.TreeBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True
        ),
    )
    depth = 0
    for chunk in _then_none(chunks):  # None: the end, where close() checks the document
        if chunk is None:
            parser.close()
        else:
            parser.feed(chunk)
        for event, element in parser.read_events():
            if event == "start":
                depth += 1
                document.root = document.root or element.tag
                continue
            depth -= 1
            if element.tag == MESSAGE and depth <= 1:
                document.messages += 1
                yield from _read_message(element, f"{document.name}:message {document.messages}")
                element.clear()
            elif depth == 1 and document.root == BATCH:  # a batch header element (N.1)
                _batch_part(document, element)
                element.clear()


def _then_none(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    yield from chunks
    yield None


def _batch_part(document: _Document, element: ET.Element) -> None:
    """Note N.1.2 (id), N.1.5 (creationTime), N.1.3 (sender) and N.1.4 (receiver)."""
    tag = element.tag.rpartition("}")[2]
    if tag == "id":
        document.batch["batch_id"] = attr(element, ".", "extension")
    elif tag == "creationTime":
        document.batch["created"] = attr(element, ".", "value")
    elif tag in ("sender", "receiver"):
        document.batch[f"{tag}_id"] = attr(element, "h:device/h:id", "extension")


def _read_message(message: ET.Element, where: str) -> Iterator[tuple[MessageHeader, RawRecord]]:
    header = MessageHeader(
        message_id=attr(message, "h:id", "extension"),
        sender_id=attr(message, "h:sender/h:device/h:id", "extension"),
        receiver_id=attr(message, "h:receiver/h:device/h:id", "extension"),
        created=attr(message, "h:creationTime", "value"),
    )
    events = message.findall(_EVENT, NS)
    if not events:
        reason = "the message has no controlActProcess/subject/investigationEvent (the ICSR)"
        yield header, RawRecord(where, None, reason)
    created = attr(message, "h:controlActProcess/h:effectiveTime", "value")  # C.1.2
    for index, event in enumerate(events, start=1):
        report_id = identifier(event, REPORT_ID)
        location = where + (f" event {index}" if len(events) > 1 else "")
        location += f" (C.1.1 {report_id})" if report_id else ""
        icsr = dataclasses.replace(header, report_id=report_id)
        try:
            yield icsr, RawRecord(location, report_of(event, created))
        except UnreadableError as error:
            yield icsr, RawRecord(location, None, str(error))
