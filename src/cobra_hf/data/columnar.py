"""Columnar building blocks of the data layer: interaction logs as integer codes, k-core, time order, sequences.

An interaction log is read record batch by record batch (CSV blocks, Parquet row groups, slices of a
`pyarrow.Table` / `datasets.Dataset`, batches of a streaming `datasets.IterableDataset`). Each batch's user and
item ids are dictionary-encoded at once, so what stays in memory is an int32 code per id (plus each batch's
distinct ids and the time column), never a Python object per row. Filtering, sorting and grouping then run on
numpy arrays of codes; strings are only touched again to build the output lists.

Semantics are those of the row-by-row implementation this replaced (`cobra_hf.data._rowwise`, checked by
tests/test_data_equivalence.py): ids are strings stripped of surrounding whitespace ("007" and "7" stay two ids),
events are ordered by time with ties kept in input order, users come out sorted by id (code-point order).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BATCH_ROWS = 1 << 20  # rows per slice of an in-memory table: bounds the transient string copies
CSV_BLOCK_BYTES = 16 << 20  # bigger blocks than pyarrow's 1 MB: fewer, better-deduplicated batch dictionaries
MAX_CHUNK_BYTES = (1 << 31) - 1  # a pyarrow string array holds at most 2 GiB of characters
INTERACTION_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
_DICT = pa.dictionary(pa.int32(), pa.string())


@dataclass
class Interactions:
    """An interaction log as codes: row r is user `users[user_codes[r]]`, item `items[item_codes[r]]`.

    `users` and `items` hold distinct, whitespace-stripped ids; `times` is None (file order), a numpy array
    (numeric keys) or a pyarrow string array (compared as text, e.g. ISO dates that are not numbers).
    """

    users: pa.Array
    items: pa.Array
    user_codes: np.ndarray
    item_codes: np.ndarray
    times: np.ndarray | pa.Array | None

    def __len__(self) -> int:
        return len(self.user_codes)


class _Reread(Exception):
    """A later CSV block did not fit the time type inferred from the first one: read the times as text."""


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _single_threaded_error(source, label, wanted, time_col, time_as_text) -> str | None:
    """The first line of the error that a one-thread re-read of a file `source` gives, or None. pyarrow's CSV reader
    parses blocks on several threads and then cannot say which row failed; read on one thread it names the row.
    Only the error path pays for it."""
    if not isinstance(source, (str, Path)):
        return None
    try:
        for _ in _file_batches(Path(source), wanted, time_col, time_as_text, use_threads=False):
            pass
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        return _first_line(err)
    except Exception:  # noqa: BLE001 - only a better message was sought; the caller reports the original error
        return None
    return None


def _file_batches(path: Path, wanted: list[str], time_col: str | None, time_as_text: bool,
                  use_threads: bool = True) -> Iterator[pa.RecordBatch]:
    """Record batches of `wanted` columns from a CSV/TSV, JSON/JSONL or Parquet file (ids read as text)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        import pyarrow.csv as pcsv

        parse = pcsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
        header = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 16), parse_options=parse)
        _check_columns(path, wanted, header.schema.names)
        header.close()
        # ids as dictionary-encoded text: "00123" stays "00123", and each block is deduplicated as it is parsed
        types = {name: _DICT for name in wanted[:2]}
        if time_col and time_as_text:
            types[time_col] = pa.string()
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=use_threads),
            parse_options=parse,
            convert_options=pcsv.ConvertOptions(column_types=types, include_columns=wanted),
        )
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as err:
                # ids are read as text, so a conversion error is the inferred time type failing a later block
                if time_col and not time_as_text and "conversion error" in str(err).lower():
                    raise _Reread() from None
                raise
            yield batch
    elif suffix in (".json", ".jsonl"):
        table = _read_json(path)
        _check_columns(path, wanted, table.column_names)
        yield from table.select(wanted).to_batches(max_chunksize=BATCH_ROWS)
    else:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        _check_columns(path, wanted, parquet.schema_arrow.names)
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted)


def _read_json(path: Path) -> pa.Table:
    """JSON lines through pyarrow; a `.json` file holding one array of records through the json module."""
    import pyarrow.json as pj

    try:
        return pj.read_json(path)
    except pa.ArrowInvalid as err:
        if path.suffix.lower() != ".json":
            raise ValueError(f"{path}: not JSON lines ({_first_line(err)}); write one JSON object per line") from None
    import json

    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not JSON lines nor a JSON array of records ({_first_line(err)})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected JSON lines or a JSON array of objects")
    return pa.Table.from_pylist(records)


def _check_columns(label: Any, wanted: list[str], available: list[str]) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ValueError(f"{label}: missing column(s) {missing}; available: {list(available)}")


def _table_batches(table: pa.Table, label: str, wanted: list[str]) -> Iterator[pa.RecordBatch]:
    _check_columns(label, wanted, table.column_names)
    yield from table.select(wanted).to_batches(max_chunksize=BATCH_ROWS)


def _source_batches(source: Any, label: str, wanted: list[str], time_col: str | None,
                    time_as_text: bool) -> Iterator[pa.RecordBatch | pa.Table]:
    """Record batches of a file path, a `pyarrow.Table`, a `datasets.Dataset` or a `datasets.IterableDataset`."""
    if isinstance(source, (str, Path)):
        yield from _file_batches(Path(source), wanted, time_col, time_as_text)
    elif isinstance(source, pa.Table):
        yield from _table_batches(source, label, wanted)
    elif isinstance(source, pa.RecordBatch):
        yield from _table_batches(pa.Table.from_batches([source]), label, wanted)
    else:
        import datasets

        if isinstance(source, datasets.DatasetDict):
            raise ValueError(f"{label}: a DatasetDict holds several splits ({list(source)}); pass one, e.g. ds['train']")
        if isinstance(source, datasets.IterableDataset):  # streaming from the Hub: never all in memory at once
            _check_columns(label, wanted, list(source.column_names or wanted))
            for batch in source.select_columns(wanted).with_format("arrow").iter(batch_size=BATCH_ROWS):
                yield batch
        elif isinstance(source, datasets.Dataset):
            yield from _table_batches(source.with_format("arrow")[:], label, wanted)
        else:
            raise TypeError(f"{label}: expected a file path, a pyarrow.Table or a datasets.Dataset, "
                            f"got {type(source).__name__}")


def _as_dictionary(column: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    """Ids as a dictionary of text with int32 codes (numbers become their decimal text, as str() would)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        if column.type == _DICT:
            return column
        column = column.dictionary_decode()
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    return pc.dictionary_encode(column)


def _codes(chunks: list[pa.DictionaryArray]) -> tuple[pa.Array, np.ndarray, int | None]:
    """One dictionary of stripped ids for all batches -> (ids, int32 codes, first row (0-based) null or empty)."""
    if not chunks:
        return pa.array([], pa.string()), np.zeros(0, np.int32), None
    unified = pa.chunked_array(chunks, type=_DICT).unify_dictionaries()
    dictionary = unified.chunk(0).dictionary
    indices = pa.chunked_array([c.indices for c in unified.chunks], type=pa.int32())
    bad: int | None = None
    if indices.null_count:
        bad = int(np.flatnonzero(pc.is_null(indices).to_numpy(zero_copy_only=False))[0])
        indices = pc.fill_null(indices, 0)
    codes = indices.to_numpy()
    del unified, indices
    stripped = pc.utf8_trim_whitespace(dictionary)
    if not pc.all(pc.equal(stripped, dictionary)).as_py():  # " a" and "a" are one id once stripped
        merged = stripped.dictionary_encode()
        codes = merged.indices.to_numpy()[codes]
        stripped = merged.dictionary
    empty = np.flatnonzero(pc.equal(pc.utf8_length(stripped), 0).to_numpy(zero_copy_only=False))
    if len(empty):
        rows = np.flatnonzero(np.isin(codes, empty))
        if len(rows):
            bad = int(rows[0]) if bad is None else min(bad, int(rows[0]))
    return stripped, codes.astype(np.int32, copy=False), bad


def _time_keys(chunks: list[pa.Array], label: str, time_col: str) -> np.ndarray | pa.Array:
    """Sort keys of the time column: numbers (and number-like text) numerically, dates and times in time order,
    other text as text. An empty time is a ValueError naming its row."""
    times = pa.chunked_array(chunks).combine_chunks() if chunks else pa.array([], pa.int64())
    if times.null_count:
        row = int(np.flatnonzero(pc.is_null(times).to_numpy(zero_copy_only=False))[0]) + 1
        raise ValueError(f"{label}: row {row}: empty {time_col!r}")
    kind = times.type
    if pa.types.is_dictionary(kind):
        times, kind = times.dictionary_decode(), kind.value_type
    if pa.types.is_integer(kind):
        return times.to_numpy().astype(np.int64, copy=False)
    if pa.types.is_boolean(kind):
        return times.to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_temporal(kind):
        return pc.cast(times, pa.int64()).to_numpy()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:  # text that is all numbers sorts numerically ("9" before "10"), as float() did
            return pc.cast(pc.utf8_trim_whitespace(times), pa.float64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return times
    try:
        return pc.cast(times, pa.float64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pc.cast(times, pa.string())


def read_interactions(source: Any, user_col: str = "user_id", item_col: str = "item_id",
                      time_col: str | None = "timestamp", label: str | None = None) -> Interactions:
    """Read an interaction log by record batches into codes (see `Interactions`).

    `source` is a path to a .csv/.tsv/.jsonl/.json/.parquet file, a `pyarrow.Table`, a `datasets.Dataset` (e.g. a
    split of `datasets.load_dataset(...)`) or a streaming `datasets.IterableDataset`. Errors are one-line
    `ValueError`s naming `label` (the file by default): a missing column, an empty id or time with its row number
    (1-based, counting data rows).
    """
    if label is None:
        label = str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__}>"
    wanted = [user_col, item_col] + ([time_col] if time_col else [])
    for time_as_text in (False, True):
        users: list[pa.DictionaryArray] = []
        items: list[pa.DictionaryArray] = []
        times: list[pa.Array] = []
        try:
            for batch in _source_batches(source, label, wanted, time_col, time_as_text):
                users.append(_as_dictionary(batch.column(0)))
                items.append(_as_dictionary(batch.column(1)))
                if time_col:
                    column = batch.column(2)
                    times.append(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
                del batch
            break
        except _Reread:
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            detail = _single_threaded_error(source, label, wanted, time_col, time_as_text) or _first_line(err)
            raise ValueError(f"{label}: could not read the interactions ({detail})") from None
    user_ids, user_codes, bad_user = _codes(users)
    del users
    item_ids, item_codes, bad_item = _codes(items)
    del items
    pa.default_memory_pool().release_unused()  # hand the CSV blocks' pages back: the next steps use numpy
    bad = [row for row in (bad_user, bad_item) if row is not None]
    if bad:
        raise ValueError(f"{label}: row {min(bad) + 1}: empty {user_col!r} or {item_col!r}")
    keys = None
    if time_col:
        if len({c.type for c in times}) > 1:  # e.g. Parquet files whose row groups disagree
            times = [pc.cast(c, pa.string()) for c in times]
        keys = _time_keys(times, label, time_col)
    return Interactions(user_ids, item_ids, user_codes, item_codes, keys)


def k_core(user_codes: np.ndarray, item_codes: np.ndarray, k: int) -> np.ndarray:
    """Rows (ascending) of the iterative k-core: users and items with fewer than `k` interactions are dropped,
    again and again, until every kept user and item has at least `k` (a user can fall below k once a rare
    item is gone, and that can drop an item in turn)."""
    n = len(user_codes)
    rows = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    if k <= 0:
        return rows
    users, items = user_codes, item_codes
    while len(rows):
        # int32 counts: the per-row gathers below are then half the size of int64 ones
        user_count = np.bincount(users).astype(np.int32)
        item_count = np.bincount(items).astype(np.int32)
        keep = (user_count[users] >= k) & (item_count[items] >= k)
        if keep.all():
            break
        rows, users, items = rows[keep], users[keep], items[keep]  # compacting makes each round cheaper
    return rows


def _ranks(ids: pa.Array) -> np.ndarray:
    """rank[code] = position of ids[code] in code-point order (pyarrow compares UTF-8 bytes, which agrees)."""
    order = pc.sort_indices(ids).to_numpy()
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    return rank


def time_order(data: Interactions, rows: np.ndarray) -> np.ndarray:
    """`rows` reordered by (user id, time), ties in input order (a stable sort over ascending rows)."""
    user_rank = _ranks(data.users)[data.user_codes[rows]]
    keys = data.times
    if keys is None:
        return rows[np.argsort(user_rank, kind="stable")]
    if isinstance(keys, np.ndarray):
        times = keys[rows]
        if times.dtype.kind == "f" and len(times) and np.isfinite(times).all() and (times == np.round(times)).all() \
                and np.abs(times).max() < 2**62:
            times = times.astype(np.int64)  # whole-number floats (e.g. a CSV column with one "12.0") sort as ints
        if times.dtype.kind in "iu" and len(times):
            # one int64 key = user rank, then time: a single stable sort instead of a multi-key one, and no
            # rank table of the times (np.unique would cost a sort and three more arrays of the log's length)
            low = int(times.min())
            span = int(times.max()) - low + 1
            if (int(user_rank.max()) + 1) * span < 2**63:
                key = user_rank * span
                key += times - low
                del times
                return rows[np.argsort(key, kind="stable")]
        return rows[np.lexsort((times, user_rank))]  # lexsort is stable too: ties keep the order of `rows`
    table = pa.table({"u": user_rank, "t": keys.take(pa.array(rows))})
    # pyarrow's sort_indices is stable: equal (user, time) keep their order of `rows`
    return rows[pc.sort_indices(table, sort_keys=[("u", "ascending"), ("t", "ascending")]).to_numpy()]


def list_chunks(values: pa.Array, take: np.ndarray, offsets: np.ndarray) -> Iterator[tuple[slice, pa.ListArray]]:
    """`list<string>` rows: row r holds `values.take(take[offsets[r]:offsets[r + 1]])`, built in chunks that each
    hold under 2 GiB of text (the most one pyarrow string array can). Yields (row slice, list array) pairs."""
    rows = len(offsets) - 1
    if rows == 0:
        yield slice(0, 0), pa.ListArray.from_arrays(pa.array([0], pa.int32()), pa.array([], pa.string()))
        return
    sizes = pc.binary_length(values).to_numpy(zero_copy_only=False)
    if len(take) == 0 or int(sizes.max(initial=0)) * len(take) <= MAX_CHUNK_BYTES:
        row_bytes = np.zeros(rows + 1, dtype=np.int64)  # the usual case: everything fits one chunk
    else:
        item_bytes = np.zeros(len(take) + 1, dtype=np.int64)
        np.cumsum(sizes[take], out=item_bytes[1:])
        row_bytes = item_bytes[offsets]
    start = 0
    while start < rows:
        stop = int(np.searchsorted(row_bytes, row_bytes[start] + MAX_CHUNK_BYTES, side="right")) - 1
        stop = min(max(stop, start + 1), rows)
        lo, hi = int(offsets[start]), int(offsets[stop])
        local = pa.array((offsets[start:stop + 1] - lo).astype(np.int32))
        chunk = values.take(pa.array(take[lo:hi]))
        if chunk.type != pa.string():  # large_string input (a whole file's words): the chunk fits a string array
            chunk = chunk.cast(pa.string())
        yield slice(start, stop), pa.ListArray.from_arrays(local, chunk)
        start = stop


def list_column(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """A `list<string>` column as (flat values, int64 offsets), rebased past any slicing; null lists are empty."""
    column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_large_list(column.type) or pa.types.is_list(column.type):
        offsets = column.offsets.to_numpy().astype(np.int64)
        values = column.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        return values, offsets - offsets[0]
    raise TypeError(f"expected a list column, got {column.type}")


def gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ranges [start, start + length) laid end to end, and the offsets that cut them apart."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    shift = np.repeat(starts.astype(np.int64) - offsets[:-1], lengths)
    return np.arange(offsets[-1], dtype=np.int64) + shift, offsets
