"""JSON Lines: one wire-format report per line (blank lines are not records)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pvsignal.readers import RawRecord


def read_jsonl(paths: list[Path]) -> Iterator[RawRecord]:
    """Each non-blank line of each file, unparsed (validation parses it once, in Rust)."""
    for path in paths:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield RawRecord(f"{path.name}:{number}", line)
