"""The dead-letter topic: poison messages, as received, with headers saying why and whence.

Each dead letter keeps the original key, value and headers, and adds ``error`` (the reason,
one of ``streams.codec.POISON_REASONS``), ``error-detail``, ``source-topic``,
``source-partition``, ``source-offset`` and ``source-timestamp``. Sending waits for the
broker's acknowledgement: the consumer writes a poison message's offset only afterwards. A crash
between the two sends it again, so readers of the DLQ deduplicate on the source headers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import MessageSizeTooLargeError

from streams import DLQ_TOPIC
from streams.codec import Poison

_OURS = frozenset(
    {
        "error",
        "error-detail",
        "source-topic",
        "source-partition",
        "source-offset",
        "source-timestamp",
        "value-omitted",
    }
)

log = logging.getLogger(__name__)


def dead_letter_headers(record: ConsumerRecord, poison: Poison) -> list[tuple[str, bytes]]:
    """The error and source headers, then the original headers (minus any of our names)."""
    ours = [
        ("error", poison.reason.encode()),
        ("error-detail", poison.detail.encode("utf-8", errors="replace")),
        ("source-topic", record.topic.encode()),
        ("source-partition", str(record.partition).encode()),
        ("source-offset", str(record.offset).encode()),
        ("source-timestamp", str(record.timestamp).encode()),
    ]
    original = [(key, value or b"") for key, value in record.headers or () if key not in _OURS]
    return ours + original


class DeadLetters:
    """Sends poison to the dead-letter topic and waits until the broker has it."""

    def __init__(
        self, producer: KafkaProducer, topic: str = DLQ_TOPIC, *, timeout: float = 10.0
    ) -> None:
        self.producer, self.topic, self.timeout = producer, topic, timeout

    def send(self, poisoned: Sequence[tuple[ConsumerRecord, Poison]]) -> None:
        """Produce every dead letter and wait for all acks; a KafkaError if one failed."""
        futures = [(record, poison, self._send(record, poison)) for record, poison in poisoned]
        self.producer.flush(timeout=self.timeout)
        for record, poison, future in futures:
            try:
                future.get(timeout=self.timeout)
            except MessageSizeTooLargeError:
                # The broker took the message on its topic but refuses it on ours: keep the
                # evidence (headers, key) rather than block the partition.
                self._send(record, poison, omit_value=True).get(timeout=self.timeout)

    def _send(self, record: ConsumerRecord, poison: Poison, *, omit_value: bool = False) -> Any:
        headers = dead_letter_headers(record, poison)
        if omit_value:
            size = len(record.value or b"")
            headers.insert(0, ("value-omitted", f"{size} bytes, too large".encode()))
            log.warning(
                "dead letter %s:%d@%d sent without its value (%d bytes)",
                record.topic,
                record.partition,
                record.offset,
                size,
            )
        try:
            return self.producer.send(
                self.topic,
                key=record.key,
                value=None if omit_value else record.value,
                headers=headers,
            )
        except MessageSizeTooLargeError:
            if omit_value:
                raise
            return self._send(record, poison, omit_value=True)
