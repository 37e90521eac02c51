"""Registry files (products, institutions): YAML (a list of mappings) or CSV (lists
separated by '|'), each entry validated by its model, every error naming file, entry and field."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pvsignal.errors import InputError
from pvsignal.reports import problems_of

Entry = TypeVar("Entry", bound=BaseModel)


def load_registry_file(
    path: Path, model: type[Entry], what: str, list_fields: tuple[str, ...]
) -> list[Entry]:
    """Read and validate every entry of a ``what`` file (e.g. "products").

    Raises
    ------
    InputError
        Naming the file, the entry (YAML index or CSV line), the field and the value.
    """
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            entries = list(enumerate(yaml.safe_load(path.read_text(encoding="utf-8")) or []))
            where = "entry"
        elif suffix == ".csv":
            entries = list(_csv_entries(path, list_fields))
            where = "line"
        else:
            raise InputError(f"{what} file {str(path)!r}: use .yaml, .yml or .csv")
    except FileNotFoundError:
        raise InputError(f"{what} file {str(path)!r} does not exist") from None
    except (yaml.YAMLError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot parse {what} file {str(path)!r}: {error}") from None
    validated = []
    for position, entry in entries:
        if not isinstance(entry, dict):
            raise InputError(f"{what} file {str(path)!r} {where} {position}: not a mapping")
        try:
            validated.append(model.model_validate(entry))
        except ValidationError as error:
            detail = "; ".join(str(problem) for problem in problems_of(error))
            raise InputError(f"{what} file {str(path)!r} {where} {position}: {detail}") from None
    return validated


def _csv_entries(
    path: Path, list_fields: tuple[str, ...]
) -> Iterable[tuple[int, dict[str, object]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            entry: dict[str, object] = {k: v for k, v in row.items() if v not in ("", None)}
            for name in list_fields:
                if name in entry:
                    entry[name] = [item for item in str(entry[name]).split("|") if item.strip()]
            yield line, entry
