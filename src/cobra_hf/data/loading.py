"""Read recommendation data into `datasets.Dataset` objects.

Two schemas are used throughout the package:

* **sequences**: one row per user, columns `user_id` (str) and `item_ids` (list[str], oldest first).
* **items**: one row per item, columns `item_id` (str), `title` (str | None), `brand` (str | None),
  `categories` (list[str] | None), `description` (str | None), `attributes` (list[str] | None).

Every loader turns bad input into a `ValueError` that names the file and the line, so the CLI can
print one sentence instead of a traceback.

Sequences and interaction logs are handled as Arrow columns (see `columnar`): a file is never walked as one
Python object per event, which is what lets a log of tens of millions of rows load in seconds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columnar import (INTERACTION_SUFFIXES, gather_ranges, k_core, list_chunks, list_column, read_interactions,
                       time_order)

logger = logging.getLogger(__name__)

SEQUENCES_FILE = "sequences.txt"
ITEMS_FILE = "items.jsonl"
ITEM_FIELDS = ("item_id", "title", "brand", "categories", "description", "attributes")

SEQUENCE_FEATURES = datasets.Features(
    {"user_id": datasets.Value("string"), "item_ids": datasets.Sequence(datasets.Value("string"))}
)
ITEM_FEATURES = datasets.Features(
    {
        "item_id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "brand": datasets.Value("string"),
        "categories": datasets.Sequence(datasets.Value("string")),
        "description": datasets.Value("string"),
        "attributes": datasets.Sequence(datasets.Value("string")),
    }
)


def _iter_lines(path: Path) -> Iterable[tuple[int, str]]:
    """Yield `(line_number, text)` (1-based, newline stripped), decoding each line strictly as UTF-8.

    Decoding line by line (rather than the whole file) is what lets a bad byte be reported with
    its line number.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{number}: invalid UTF-8 byte at column {err.start + 1}; "
                    "re-save the file as UTF-8"
                ) from None
            if number == 1:
                text = text.lstrip("\ufeff")  # tolerate a byte-order mark written by some editors
            yield number, text.rstrip("\r\n")


def _require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    return path


def sequences_from_lists(user_ids: list[str], item_ids: list[list[str]]) -> datasets.Dataset:
    """Build a sequences Dataset (`user_id`, `item_ids`) from plain Python lists."""
    return datasets.Dataset.from_dict(
        {"user_id": list(user_ids), "item_ids": [list(s) for s in item_ids]}, features=SEQUENCE_FEATURES
    )


def sequences_dataset(users: pa.Array | pa.ChunkedArray, values: pa.Array, take: np.ndarray,
                      offsets: np.ndarray) -> datasets.Dataset:
    """A sequences Dataset from Arrow columns: user r's items are `values.take(take[offsets[r]:offsets[r + 1]])`."""
    if isinstance(users, pa.ChunkedArray):
        users = users.combine_chunks()
    if users.type != pa.string():
        users = users.cast(pa.string())
    user_chunks, item_chunks = [], []
    for rows, lists in list_chunks(values, take, offsets):
        user_chunks.append(users.slice(rows.start, rows.stop - rows.start))
        item_chunks.append(lists)
    table = pa.table({"user_id": pa.chunked_array(user_chunks, pa.string()),
                      "item_ids": pa.chunked_array(item_chunks, pa.list_(pa.string()))})
    return arrow_dataset(table, SEQUENCE_FEATURES)


def arrow_dataset(table: pa.Table, features: datasets.Features) -> datasets.Dataset:
    """An in-memory Dataset over `table`, zero-copy. The fingerprint is random: by default `datasets` hashes the
    whole table by pickling it, which costs a second copy of the data (150 MB and 0.2 s at 5M interactions)."""
    from datasets.fingerprint import generate_random_fingerprint

    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features), fingerprint=generate_random_fingerprint())


def _lines(path: Path) -> pa.Array:
    """The file's lines (split at b"\n", as a binary file iterates) as one large_string array, zero-copy over the
    bytes read; a byte that is not UTF-8 is reported with its line and column by `_iter_lines`."""
    raw = path.read_bytes()
    while raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark written by some editors
        raw = raw[3:]
    whole = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), 1, [None, pa.array([0, len(raw)], pa.int64()).buffers()[1], pa.py_buffer(raw)]
    )
    lines = pc.split_pattern(whole, b"\n").values
    try:
        return lines.cast(pa.large_string())
    except pa.ArrowInvalid:
        for _ in _iter_lines(path):  # raises "<file>:<line>: invalid UTF-8 byte at column <c>"
            pass
        raise ValueError(f"{path}: invalid UTF-8; re-save the file as UTF-8") from None


def load_sequences(path: str | Path) -> datasets.Dataset:
    """Read `sequences.txt`: one line per user, `USER ITEM ITEM ...` in time order (oldest first).

    Blank lines are skipped; fields are separated by any whitespace (as `str.split()`). A line with a user but no
    items, a user that appears on two lines, or bytes that are not UTF-8 raise `ValueError("<file>:<line>: ...")`.

    Returns:
        Dataset with columns `user_id` (str) and `item_ids` (list[str]), in file order.
    """
    path = _require_file(path)
    # trimmed first: pyarrow keeps an empty word for leading/trailing whitespace, str.split() does not
    lines = pc.utf8_trim_whitespace(_lines(path))
    fields = pc.utf8_split_whitespace(lines)
    counts = pc.list_value_length(fields).to_numpy(zero_copy_only=False).copy()
    counts[pc.equal(pc.binary_length(lines), 0).to_numpy(zero_copy_only=False)] = 0  # a blank line is [""]
    del lines
    lonely = np.flatnonzero(counts == 1)
    if len(lonely):
        user = fields[int(lonely[0])].as_py()[0]
        raise ValueError(f"{path}:{lonely[0] + 1}: user {user!r} has no items (expected 'USER ITEM ITEM ...')")
    line_of_row = np.flatnonzero(counts > 0)  # 0-based line of each user
    if not len(line_of_row):
        raise ValueError(f"{path}: no sequences found (expected lines 'USER ITEM ITEM ...')")
    starts = fields.offsets.to_numpy()[line_of_row].astype(np.int64)
    words = fields.values
    users = words.take(pa.array(starts))
    encoded = users.dictionary_encode()
    if len(encoded.dictionary) < len(users):
        codes = encoded.indices.to_numpy()
        first = np.full(len(encoded.dictionary), len(codes))
        np.minimum.at(first, codes, np.arange(len(codes)))
        again = int(np.flatnonzero(first[codes] != np.arange(len(codes)))[0])
        raise ValueError(
            f"{path}:{line_of_row[again] + 1}: user {users[again].as_py()!r} already appeared on line "
            f"{line_of_row[first[codes[again]]] + 1}"
        )
    take, offsets = gather_ranges(starts + 1, counts[line_of_row] - 1)
    return sequences_dataset(users, words, take, offsets)


def _as_text(value: Any, field: str, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    raise ValueError(f"{where}: field {field!r} must be a string or null, got {type(value).__name__}")


def _as_text_list(value: Any, field: str, where: str) -> list[str] | None:
    """Lists stay lists; a single string becomes a one-element list; a dict becomes `key: value` strings."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, dict):
        value = [f"{k}: {v}" for k, v in value.items() if v is not None]
    if not isinstance(value, list):
        raise ValueError(f"{where}: field {field!r} must be a list of strings or null, got {type(value).__name__}")
    out = []
    for entry in value:
        if entry is None:
            continue
        if isinstance(entry, list):  # nested category paths, e.g. [["Beauty", "Makeup"]]
            out.extend(str(e).strip() for e in entry if e is not None and str(e).strip())
        elif str(entry).strip():
            out.append(str(entry).strip())
    return out


def item_record(record: dict, where: str) -> dict:
    """One item as `load_items` reads it, {field: value} over ITEM_FIELDS: item_id a string without whitespace, text
    fields stripped (None when empty), list fields as lists of strings (a string -> [string], a dict -> "key: value"
    strings, nested lists flattened). Errors are ValueErrors starting with `where`. Shared with the Python add_items,
    so that an item gets the same text, embedding and semantic ID whichever way it comes in."""
    item_id = record.get("item_id")
    if item_id is None or (isinstance(item_id, str) and not item_id.strip()):
        raise ValueError(f"{where}: missing 'item_id'")
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
        raise ValueError(f"{where}: 'item_id' must be a string, got {type(item_id).__name__}")
    item_id = str(item_id).strip()
    if any(ch.isspace() for ch in item_id):
        raise ValueError(f"{where}: item_id {item_id!r} contains whitespace (sequences.txt is space-separated)")
    row = {"item_id": item_id}
    for field in ("title", "brand", "description"):
        row[field] = _as_text(record.get(field), field, where)
    for field in ("categories", "attributes"):
        row[field] = _as_text_list(record.get(field), field, where)
    return row


def load_items(path: str | Path) -> datasets.Dataset:
    """Read `items.jsonl`: one JSON object per line with `item_id` and optional text fields.

    Fields `title`, `brand`, `description` (str) and `categories`, `attributes` (list[str]) may be null
    or missing; other keys are ignored. Blank lines are skipped. Errors are `ValueError`s naming the
    file and line: bad JSON, a line that is not an object, a missing/empty `item_id`, a duplicate
    `item_id` (naming both lines), or bytes that are not UTF-8 (no silent replacement: a corrupted
    title would otherwise silently change the item's embedding and semantic ID).

    Returns:
        Dataset with the columns of `ITEM_FIELDS`, in file order.
    """
    path = _require_file(path)
    columns: dict[str, list] = {name: [] for name in ITEM_FIELDS}
    first_line: dict[str, int] = {}
    for number, line in _iter_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            # err.msg may end in "at" ("Unterminated string starting at"): the position goes after a colon
            raise ValueError(f"{where}: invalid JSON ({err.msg}: column {err.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        row = item_record(record, where)
        item_id = row["item_id"]
        if item_id in first_line:
            raise ValueError(
                f"{where}: duplicate item_id {item_id!r} (first defined on line {first_line[item_id]}, again on line {number})"
            )
        first_line[item_id] = number
        for field in ITEM_FIELDS:
            columns[field].append(row[field])
    if not columns["item_id"]:
        raise ValueError(f"{path}: no items found")
    return datasets.Dataset.from_dict(columns, features=ITEM_FEATURES)


def load_interactions(
    path: Any,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = "timestamp",
    min_count: int = 0,
) -> datasets.Dataset:
    """Turn an interaction table (one row per event) into sequences.

    `path` is a CSV/TSV, JSON lines (or JSON array) or Parquet file, or the table itself: a `pyarrow.Table`, a
    `datasets.Dataset` (e.g. `datasets.load_dataset(...)["train"]` of a Hub interaction log) or a streaming
    `datasets.IterableDataset`; all take the same columnar path, read by record batches. Ids are text, stripped of
    surrounding whitespace ("007" and "7" are two items). Events are ordered by `time_col` per user (a stable
    sort: ties keep input order; `time_col=None` keeps input order); times that are all numbers compare as
    numbers, dates as dates, other text as text. With `min_count=k > 0` an iterative k-core filter keeps only
    users and items with at least `k` interactions (repeated until nothing changes).

    Returns:
        Dataset `user_id` (str), `item_ids` (list[str], oldest first), users sorted by id.
    """
    if isinstance(path, (str, Path)):
        path = _require_file(path)
        if path.suffix.lower() not in INTERACTION_SUFFIXES:
            raise ValueError(f"{path}: unsupported interaction file type {path.suffix!r} "
                             "(use .csv, .tsv, .jsonl, .json or .parquet)")
    label = str(path) if isinstance(path, Path) else f"<{type(path).__name__}>"
    data = read_interactions(path, user_col, item_col, time_col, label=label)
    rows = k_core(data.user_codes, data.item_codes, min_count or 0)
    if not len(rows):
        raise ValueError(f"{label}: no interactions left after {min_count}-core filtering")
    order = time_order(data, rows)
    del rows
    users = data.user_codes[order]
    items = data.item_codes[order]
    del order
    starts = np.flatnonzero(np.concatenate([[True], users[1:] != users[:-1]]))
    offsets = np.append(starts, len(users)).astype(np.int64)
    return sequences_dataset(data.users.take(pa.array(users[starts])), data.items, items, offsets)


def load_dataset_folder(
    data_dir: str | Path, drop_unknown: bool = False, min_items: int = 3
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Load `DATA_DIR/sequences.txt` and `DATA_DIR/items.jsonl` and check that they agree.

    Every item in the sequences must have a row in items.jsonl. By default a mismatch raises
    `ValueError` naming the number of unknown ids and up to 5 of them. With `drop_unknown=True`
    unknown items are removed from the sequences, and users left with fewer than `min_items`
    items (too short for a leave-one-out split) are dropped; both counts are logged.

    Returns:
        `(sequences, items)` Datasets (see the module docstring for their columns).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    for name in (SEQUENCES_FILE, ITEMS_FILE):
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"{data_dir} has no {name} (a data folder holds {SEQUENCES_FILE} and {ITEMS_FILE})")
    sequences = load_sequences(data_dir / SEQUENCES_FILE)
    items = load_items(data_dir / ITEMS_FILE)
    table = sequences.data.table
    values, offsets = list_column(table.column("item_ids"))
    known = pc.is_in(values, value_set=items.data.table.column("item_id").combine_chunks()).to_numpy(zero_copy_only=False)
    if known.all():
        return sequences, items
    unknown = pc.unique(values.filter(pa.array(~known)))  # in order of first appearance
    if not drop_unknown:
        shown = ", ".join(repr(i) for i in unknown[:5].to_pylist())
        raise ValueError(
            f"{len(unknown)} item(s) in {data_dir / SEQUENCES_FILE} have no entry in {data_dir / ITEMS_FILE} "
            f"(e.g. {shown}); add them or pass drop_unknown=True (--drop-unknown)"
        )
    cum = np.concatenate([[0], np.cumsum(known, dtype=np.int64)])
    kept = cum[offsets[1:]] - cum[offsets[:-1]]
    keep_user = kept >= min_items
    logger.warning(
        "dropped %d interactions with %d unknown items and %d users left with < %d items",
        int((~known).sum()), len(unknown), int((~keep_user).sum()), min_items,
    )
    if not keep_user.any():
        raise ValueError(f"{data_dir}: no user has {min_items} or more known items after dropping unknown items")
    user_of_value = np.repeat(keep_user, np.diff(offsets))
    take = np.flatnonzero(known & user_of_value)
    new_offsets = np.concatenate([[0], np.cumsum(kept[keep_user])])
    users = table.column("user_id").combine_chunks().filter(pa.array(keep_user))
    return sequences_dataset(users, values, take, new_offsets), items
