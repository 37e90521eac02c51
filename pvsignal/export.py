"""Writing the pairs export (the columns of `pvsignal analyze`) as CSV, fast and exact."""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from detectors.mgps import Hyperparameters
from pvsignal.scoring import EXPORT_COLUMNS, STATISTICS, PairCounts, ScoringConfig, score

if TYPE_CHECKING:
    from pvsignal.casetable import CodedPairs

# Pairs scored and written at a time: the export's memory follows this, not the scope's size.
EXPORT_CHUNK = 50_000
COUNT_COLUMNS = ("a", "n_product", "n_event", "n_total")
FLAG_COLUMNS = ("signal_prr", "signal_ror", "signal_ic", "signal_ebgm")


Labels = np.ndarray | pa.Array


def export_table(product: Labels, event: Labels, statistics: dict[str, np.ndarray]) -> pa.Table:
    """The export as an Arrow table: counts as integers, flags as true/false, floats as is."""
    columns: dict[str, pa.Array] = {"product": _strings(product), "event": _strings(event)}
    for name in STATISTICS:
        values = statistics[name]
        if name in COUNT_COLUMNS:
            columns[name] = pa.array(np.asarray(values, dtype=np.int64))
        elif name in FLAG_COLUMNS:
            columns[name] = pc.if_else(pa.array(values, type=pa.bool_()), "true", "false")
        else:
            # From numpy, NaN stays NaN (written "nan"), never a missing value.
            columns[name] = pa.array(np.asarray(values, dtype=np.float64))
    return pa.table(columns)


def _strings(labels: Labels) -> pa.Array:
    return labels if isinstance(labels, pa.Array) else pa.array(labels, type=pa.string())


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
    _write_rows(table, sink)


# Rows formatted per task when the export is written on several threads.
_FORMAT_ROWS = 65_536


def _write_rows(table: pa.Table, sink: BinaryIO) -> None:
    """The rows, without header, as Arrow's CSV writer writes them, formatted on Arrow's
    threads a slice at a time (shortest exact floats are most of the cost; the writer
    releases the GIL) and written in order, with a few slices in flight at most."""
    threads = pa.cpu_count()
    if threads < 2 or table.num_rows <= _FORMAT_ROWS:
        pa_csv.write_csv(table, sink, write_options=_ROWS_ONLY)
        return
    starts = range(0, table.num_rows, _FORMAT_ROWS)
    jobs = (functools.partial(_formatted, table.slice(start, _FORMAT_ROWS)) for start in starts)
    for rows in in_order(jobs, workers=threads):
        sink.write(rows)


_ROWS_ONLY = pa_csv.WriteOptions(include_header=False)


def _formatted(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, write_options=_ROWS_ONLY)
    return sink.getvalue().to_pybytes()


# -- the export's CSV at the speed of its distinct rows ----------------------------------------

CSV_HEADER = (",".join(EXPORT_COLUMNS) + "\n").encode()
# Every combination of the four flags as written, with the end of the row (bit 3: signal_prr).
_FLAG_TEXTS = pa.array(
    [
        ",".join('"true"' if code >> (3 - k) & 1 else '"false"' for k in range(4)) + "\n"
        for code in range(16)
    ]
)
# What a pair's numbers are a function of: the statistics of pairs alike here are alike.
_KEY_COLUMNS = ("a", "n_product", "n_event", "expected")
_NUMBER_COLUMNS = EXPORT_COLUMNS[2:22]


def quoted_labels(labels: np.ndarray) -> pa.Array:
    """Each label as Arrow's CSV writer writes text: in double quotes, inner ones doubled."""
    return pa.array(['"' + label.replace('"', '""') + '"' for label in labels.tolist()])


def csv_rows(product: pa.Array, event: pa.Array, statistics: dict[str, np.ndarray]) -> pa.Buffer:
    """The CSV rows of these pairs (labels from :func:`quoted_labels`), byte for byte what
    :func:`write_csv` writes of their :func:`export_table`.

    Formatting numbers is most of the writer's time, and every number and flag of a pair is a
    function of its (a, n_product, n_event, E) under one prior and N, which a third of the
    pairs of FAERS-like data share with another pair. So each distinct row is formatted once
    (:func:`row_texts`) and taken for every pair (:func:`csv_lines`)."""
    n = len(product)
    flags = flag_codes(statistics, n)
    row, first = _distinct_rows([statistics[name] for name in _KEY_COLUMNS] + [flags], n)
    distinct = {name: np.broadcast_to(statistics[name], (n,))[first] for name in STATISTICS}
    return csv_lines(product, event, row_texts(distinct), row)


def flag_codes(statistics: dict[str, np.ndarray], n: int) -> np.ndarray:
    """The four flags of each row as one code, signal_prr its bit 3 (as _FLAG_TEXTS)."""
    flags = np.zeros(n, dtype=np.int8)
    for name in FLAG_COLUMNS:
        flags = (flags << 1) | np.asarray(statistics[name], dtype=np.int8)
    return flags


def row_texts(statistics: dict[str, np.ndarray]) -> pa.Array:
    """Each row's numbers and flags as written, after its labels: ``a,...,qn,flags\\n``."""
    n = np.asarray(statistics["a"]).size
    texts = [number_texts(values) for _, values in _numbers(statistics, n)]
    return pc.binary_join_element_wise(*texts, _FLAG_TEXTS.take(flag_codes(statistics, n)), "")


def _numbers(statistics: dict[str, np.ndarray], n: int) -> Iterator[tuple[str, np.ndarray]]:
    """Each number column of n rows, as the export table types it (counts int64)."""
    for name in _NUMBER_COLUMNS:
        kind = np.int64 if name in COUNT_COLUMNS else np.float64
        yield name, np.broadcast_to(statistics[name], (n,)).astype(kind)


def csv_lines(product: pa.Array, event: pa.Array, texts: pa.Array, row: np.ndarray) -> pa.Buffer:
    """The CSV rows of pairs whose numbers are ``texts[row]`` (of :func:`row_texts`)."""
    return _back_to_back([product, ",", event, ",", texts.take(row)], len(product))


# A pair in the JSON export's "pairs" list: indented by two a level, at the third level.
_JSON_PAIR = ('    {\n      "product": ', ',\n      "event": ')
_JSON_FLAG_TEXTS = pa.array(
    [
        "".join(
            f'\n      "{name}": "{"true" if code >> (3 - k) & 1 else "false"}"'
            + ("," if k < 3 else "\n    }")
            for k, name in enumerate(FLAG_COLUMNS)
        )
        for code in range(16)
    ]
)


def json_labels(labels: np.ndarray) -> pa.Array:
    """Each label as orjson writes a string."""
    return pa.array([orjson.dumps(label).decode() for label in labels.tolist()])


def json_row_texts(statistics: dict[str, np.ndarray]) -> pa.Array:
    """Each row's fields after its labels as :func:`write_json_chunks` lays them out (a comma,
    then ``"a": ...`` to ``"signal_ebgm": ...`` and the closing brace), numbers as orjson
    writes the export table's Python values (:func:`json_texts`)."""
    n = np.asarray(statistics["a"]).size
    parts: list[Any] = [","]
    for name, values in _numbers(statistics, n):
        parts += [f'\n      "{name}": ', json_texts(values)]
    parts.append(_JSON_FLAG_TEXTS.take(flag_codes(statistics, n)))
    return pc.binary_join_element_wise(*parts, "")


def json_elements(
    product: pa.Array, event: pa.Array, texts: pa.Array, row: np.ndarray
) -> pa.Buffer:
    """The elements of the "pairs" list of pairs whose fields are ``texts[row]`` (of
    :func:`json_row_texts`; labels of :func:`json_labels`), separated by ``,\\n``."""
    start, between = _JSON_PAIR
    parts = [start, product, between, event, texts.take(row), ",\n"]
    return _back_to_back(parts, len(product), trailing=2)


def _back_to_back(parts: list[Any], n: int, *, trailing: int = 0) -> pa.Buffer:
    """The n texts of ``parts`` joined element-wise, back to back in one buffer, without the
    last ``trailing`` bytes."""
    if n == 0:
        return pa.py_buffer(b"")
    rows = pc.binary_join_element_wise(*parts, "")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[rows.offset :]
    return rows.buffers()[2][offsets[0] : offsets[n] - trailing]


_COMMA = ord(",")


def number_texts(values: np.ndarray) -> pa.Array:
    """Each number as Arrow's cast to text (what its CSV writer writes) gives it, followed by a
    comma.

    orjson writes a numpy array 3-4x faster than Arrow casts it (shortest round-trip digits
    both, ~50 ns a float instead of ~130-200 ns); its text differs only in layout, for whole
    floats (orjson ``2.0``, Arrow ``2``), for 1e-6 <= |x| < 1e-5 and |x| >= 1e10 (Arrow
    writes ``0.0000015`` and ``1.5e+10``, orjson ``1.5e-6`` and ``15000000000.0``) and for
    nan and inf (orjson: ``null``). Those are Arrow's own cast, put in their places; the
    tests hold the rest to Arrow's cast, byte for byte, on random and edge values."""
    values = np.ascontiguousarray(values)
    texts = json_texts(values)
    if values.dtype.kind != "f" or values.size == 0:
        return texts
    magnitude = np.abs(values)
    with np.errstate(invalid="ignore"):
        laid_out_apart = (
            ~(magnitude < 1e10)
            | (values == np.trunc(values))
            | ((magnitude >= 1e-6) & (magnitude < 1e-5))
        )
    if not laid_out_apart.any():
        return texts
    arrow = pa.array(values[laid_out_apart]).cast(pa.string())
    return pc.replace_with_mask(
        texts, pa.array(laid_out_apart), pc.binary_join_element_wise(arrow, ",", "")
    )


def json_texts(values: np.ndarray) -> pa.Array:
    """Each number as orjson writes it (of a Python float or int alike: nan and inf as
    ``null``), followed by a comma."""
    values = np.ascontiguousarray(values)
    n = values.size
    if n == 0:
        return pa.array([], type=pa.string())
    text = bytearray(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY))
    text[-1] = _COMMA  # "[x,...,y]" -> "[x,...,y,": every number ends at a comma
    commas = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == _COMMA)
    if commas.size != n:
        raise RuntimeError(f"orjson wrote {commas.size} numbers for {n}: {bytes(text[:80])!r}")
    offsets = np.empty(n + 1, dtype=np.int32)
    offsets[0] = 1
    offsets[1:] = commas + 1
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


def _distinct_rows(columns: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's code among the distinct rows of the columns (values alike bit for bit), and
    the first row of each code."""
    row = np.zeros(n, dtype=np.int64)
    for column in columns:
        bits = np.ascontiguousarray(np.broadcast_to(column, (n,)), dtype=np.float64)
        code, distinct = pd.factorize(bits.view(np.int64))
        row, _ = pd.factorize(row * len(distinct) + code)
    first = np.empty(int(row.max()) + 1, dtype=np.int64)
    first[row[::-1]] = np.arange(n - 1, -1, -1)
    return row, first


def chunks_of(n: int, config: ScoringConfig, chunk: int = 0) -> list[slice]:
    """The chunks (``chunk`` pairs, ``EXPORT_CHUNK`` by default) that n pairs are scored in:
    every statistic of a pair depends on its own counts and theta alone, except under the
    FDR rule, whose adjusted p-values need every pair's at once (one chunk then)."""
    step = max(n, 1) if config.fdr_q is not None else chunk or EXPORT_CHUNK
    return [slice(start, start + step) for start in range(0, max(n, 1), step)]


def score_part(
    counts: PairCounts, part: slice | np.ndarray, theta: Hyperparameters, config: ScoringConfig
) -> dict[str, np.ndarray]:
    """The statistics of the pairs in ``part`` (one of :func:`chunks_of`, or their indices)."""
    n_total = np.broadcast_to(np.asarray(counts.n_total, dtype=np.float64), counts.a.shape)
    scored = PairCounts(
        a=counts.a[part],
        n_product=counts.n_product[part],
        n_event=counts.n_event[part],
        n_total=n_total[part],
        expected=counts.expected[part],
    )
    return score(scored, theta, config)


T = TypeVar("T")


class PairExport:
    """Every pair of a scope (or of a case table), scored and written a chunk at a time, the
    chunks formatted on worker threads and written in order: the one way `pvsignal signals
    export` and `pvsignal analyze` write pairs.

    Every statistic of a pair is a function of its (a, n_product, n_event, E) under one prior
    (and N), except under the FDR rule: so, without it, each distinct such row of a chunk is
    scored and formatted once. (Finding the distinct rows of the whole scope first scores
    fewer rows, but its codes and statistics held a third of a GB more at 3.67M pairs and
    took longer than they saved.)"""

    def __init__(self, pairs: CodedPairs, theta: Hyperparameters, config: ScoringConfig) -> None:
        self.pairs, self.theta, self.config = pairs, theta, config

    def write_csv(self, sink: BinaryIO) -> dict[str, int]:
        """The header and every pair's row; how many pairs each measure flags."""
        signals = dict.fromkeys(FLAG_COLUMNS, 0)
        sink.write(CSV_HEADER)
        for rows in self._tallied(self._csv, signals):
            sink.write(rows)
        return signals

    def write_json(self, head: dict[str, Any], sink: BinaryIO) -> dict[str, int]:
        """:func:`write_json_chunks` of every pair; how many pairs each measure flags."""
        signals = dict.fromkeys(FLAG_COLUMNS, 0)
        # Half the CSV's chunk: a pair's JSON text and its parts in the making are ~3x its CSV's
        # (at 3.67M pairs: peak 0.83 GB with 50,000 pairs a chunk, 0.58 GB with 20,000).
        pairs = max(1, EXPORT_CHUNK // 2)
        write_json_chunks(head, self._tallied(self._json, signals, pairs), sink)
        return signals

    def _tallied(
        self,
        write: Callable[[slice], tuple[dict[str, int], T]],
        signals: dict[str, int],
        pairs: int = 0,
    ) -> Iterator[T]:
        """The chunks ``write`` makes of every ``pairs`` pairs (0: EXPORT_CHUNK), in order;
        each chunk's flag counts added to ``signals``."""
        parts = chunks_of(self.pairs.counts.a.size, self.config, pairs)
        for counts, chunk in in_order(functools.partial(write, part) for part in parts):
            for name, count in counts.items():
                signals[name] += count
            yield chunk

    def _part(self, part: slice) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The statistics of the distinct rows of these pairs, and each pair's row among them
        (under the FDR rule, one chunk of every pair, each its own row)."""
        counts = self.pairs.counts
        size = counts.a[part].size
        if self.config.fdr_q is not None:
            return score_part(counts, part, self.theta, self.config), np.arange(size)
        keys = [np.broadcast_to(getattr(counts, name), counts.a.shape) for name in _KEY_COLUMNS]
        row, first = _distinct_rows([key[part] for key in keys], size)
        return score_part(counts, first + part.start, self.theta, self.config), row

    @functools.cached_property
    def _quoted(self) -> tuple[pa.Array, pa.Array]:
        return quoted_labels(self.pairs.products), quoted_labels(self.pairs.events)

    @functools.cached_property
    def _json_labels(self) -> tuple[pa.Array, pa.Array]:
        return json_labels(self.pairs.products), json_labels(self.pairs.events)

    def _csv(self, part: slice) -> tuple[dict[str, int], pa.Buffer]:
        statistics, row = self._part(part)
        product, event = self._part_labels(part, self._quoted)
        return flag_counts(statistics, row), csv_lines(product, event, row_texts(statistics), row)

    def _json(self, part: slice) -> tuple[dict[str, int], pa.Buffer]:
        statistics, row = self._part(part)
        product, event = self._part_labels(part, self._json_labels)
        texts = json_row_texts(statistics)
        return flag_counts(statistics, row), json_elements(product, event, texts, row)

    def _part_labels(
        self, part: slice, labels: tuple[pa.Array, pa.Array]
    ) -> tuple[pa.Array, pa.Array]:
        products, events = labels
        return products.take(self.pairs.product_code[part]), events.take(
            self.pairs.event_code[part]
        )


def flag_counts(statistics: dict[str, np.ndarray], row: np.ndarray) -> dict[str, int]:
    """How many of the pairs (``statistics[...][row]``) each measure's rule flags."""
    pairs_per_row = np.bincount(row, minlength=np.asarray(statistics["a"]).size)
    return {
        name: int(pairs_per_row[np.asarray(statistics[name], dtype=bool)].sum())
        for name in FLAG_COLUMNS
    }


def in_order(jobs: Iterable[Callable[[], T]], *, workers: int = 2) -> Iterator[T]:
    """The jobs' results, in order, computed on worker threads a few jobs ahead: scoring
    (numpy) and CSV formatting (Arrow) release the GIL, so chunks run on several cores."""
    pending: collections.deque[Future[T]] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export") as pool:
        try:
            for job in jobs:
                pending.append(pool.submit(job))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # a reader that stopped early (a client gone) leaves no work behind
            for future in pending:
                future.cancel()


_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2


def write_json_chunks(head: dict[str, Any], chunks: Iterable[pa.Buffer], sink: BinaryIO) -> None:
    """``{**head, "pairs": [...]}`` indented by two, as orjson writes the whole document,
    written one chunk of pairs at a time (each chunk's elements from :func:`json_elements`)."""
    elements = (chunk for chunk in chunks if chunk.size)
    first = next(elements, None)
    if first is None:
        sink.write(orjson.dumps({**head, "pairs": []}, option=_JSON))
        return
    whole = orjson.dumps({**head, "pairs": [0]}, option=_JSON)
    opening, closing = whole.rsplit(b"\n    0\n", 1)
    sink.write(opening + b"\n")
    sink.write(first)
    for chunk in elements:
        sink.write(b",\n")
        sink.write(chunk)
    sink.write(b"\n" + closing)
