"""Read recommendation data into `datasets.Dataset` objects.

Two schemas are used throughout the package:

* **sequences**: one row per user, columns `user_id` (str) and `item_ids` (list[str], oldest first).
* **items**: one row per item, columns `item_id` (str), `title` (str | None), `brand` (str | None),
  `categories` (list[str] | None), `description` (str | None), `attributes` (list[str] | None).

Every loader turns bad input into a `ValueError` that names the file and the line, so the CLI can
print one sentence instead of a traceback.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import datasets

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


def load_sequences(path: str | Path) -> datasets.Dataset:
    """Read `sequences.txt`: one line per user, `USER ITEM ITEM ...` in time order (oldest first).

    Blank lines are skipped. A line with a user but no items, a user that appears on two lines, or
    bytes that are not UTF-8 raise `ValueError("<file>:<line>: ...")`.

    Returns:
        Dataset with columns `user_id` (str) and `item_ids` (list[str]), in file order.
    """
    path = _require_file(path)
    users: list[str] = []
    sequences: list[list[str]] = []
    seen: dict[str, int] = {}
    for number, line in _iter_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: user {fields[0]!r} has no items (expected 'USER ITEM ITEM ...')")
        user = fields[0]
        if user in seen:
            raise ValueError(f"{path}:{number}: user {user!r} already appeared on line {seen[user]}")
        seen[user] = number
        users.append(user)
        sequences.append(fields[1:])
    if not users:
        raise ValueError(f"{path}: no sequences found (expected lines 'USER ITEM ITEM ...')")
    return sequences_from_lists(users, sequences)


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
        item_id = record.get("item_id")
        if item_id is None or (isinstance(item_id, str) and not item_id.strip()):
            raise ValueError(f"{where}: missing 'item_id'")
        if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
            raise ValueError(f"{where}: 'item_id' must be a string, got {type(item_id).__name__}")
        item_id = str(item_id).strip()
        if any(ch.isspace() for ch in item_id):
            raise ValueError(f"{where}: item_id {item_id!r} contains whitespace (sequences.txt is space-separated)")
        if item_id in first_line:
            raise ValueError(
                f"{where}: duplicate item_id {item_id!r} (first defined on line {first_line[item_id]}, again on line {number})"
            )
        first_line[item_id] = number
        columns["item_id"].append(item_id)
        for field in ("title", "brand", "description"):
            columns[field].append(_as_text(record.get(field), field, where))
        for field in ("categories", "attributes"):
            columns[field].append(_as_text_list(record.get(field), field, where))
    if not columns["item_id"]:
        raise ValueError(f"{path}: no items found")
    return datasets.Dataset.from_dict(columns, features=ITEM_FEATURES)


_INTERACTION_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _read_table(path: Path, id_columns: tuple[str, ...]) -> datasets.Dataset:
    builder = _INTERACTION_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(f"{path}: unsupported interaction file type {path.suffix!r} (use .csv, .tsv, .jsonl, .json or .parquet)")
    if builder == "csv":
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        # keep ids as strings: "00123" must not become the integer 123
        converters = {column: str for column in id_columns}
        return datasets.Dataset.from_csv(str(path), sep=sep, converters=converters, keep_in_memory=True)
    if builder == "json":
        return datasets.Dataset.from_json(str(path), keep_in_memory=True)
    return datasets.Dataset.from_parquet(str(path), keep_in_memory=True)


def _k_core(users: list[str], items: list[str], k: int) -> list[bool]:
    """Iteratively drop users and items with fewer than `k` interactions; returns a keep mask."""
    keep = [True] * len(users)
    while True:
        user_counts = Counter(u for u, kept in zip(users, keep) if kept)
        item_counts = Counter(i for i, kept in zip(items, keep) if kept)
        changed = False
        for row, (u, i) in enumerate(zip(users, items)):
            if keep[row] and (user_counts[u] < k or item_counts[i] < k):
                keep[row] = False
                changed = True
        if not changed:
            return keep


def load_interactions(
    path: str | Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = "timestamp",
    min_count: int = 0,
) -> datasets.Dataset:
    """Turn an interaction table (CSV/TSV, JSON/JSONL or Parquet; one row per event) into sequences.

    Events are ordered by `time_col` per user (a stable sort: ties keep file order; `time_col=None`
    keeps file order). With `min_count=k > 0` an iterative k-core filter keeps only users and items
    with at least `k` interactions (repeated until nothing changes).

    Returns:
        Dataset `user_id` (str), `item_ids` (list[str], oldest first), users sorted by id.
    """
    path = _require_file(path)
    table = _read_table(path, (user_col, item_col))
    wanted = [user_col, item_col] + ([time_col] if time_col else [])
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; available: {table.column_names}")
    users = table[user_col]
    items = table[item_col]
    for number, (u, i) in enumerate(zip(users, items), start=1):
        if u is None or i is None or str(u).strip() == "" or str(i).strip() == "":
            raise ValueError(f"{path}: row {number}: empty {user_col!r} or {item_col!r}")
    users = [str(u).strip() for u in users]
    items = [str(i).strip() for i in items]
    if time_col:
        times = table[time_col]
        try:
            # numbers sort numerically, everything else (ISO dates) lexicographically
            keys = [float(t) for t in times]
        except (TypeError, ValueError):
            if any(t is None for t in times):
                bad = next(n for n, t in enumerate(times, start=1) if t is None)
                raise ValueError(f"{path}: row {bad}: empty {time_col!r}") from None
            keys = [str(t) for t in times]
    else:
        keys = list(range(len(users)))
    keep = _k_core(users, items, min_count) if min_count and min_count > 0 else [True] * len(users)
    order = sorted((r for r in range(len(users)) if keep[r]), key=lambda r: (users[r], keys[r], r))
    out_users: list[str] = []
    out_items: list[list[str]] = []
    for r in order:
        if not out_users or out_users[-1] != users[r]:
            out_users.append(users[r])
            out_items.append([])
        out_items[-1].append(items[r])
    if not out_users:
        raise ValueError(f"{path}: no interactions left after {min_count}-core filtering")
    return sequences_from_lists(out_users, out_items)


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
    known = set(items["item_id"])
    unknown: dict[str, None] = {}  # ordered set: report ids in order of first appearance
    for seq in sequences["item_ids"]:
        for item in seq:
            if item not in known:
                unknown[item] = None
    if not unknown:
        return sequences, items
    if not drop_unknown:
        shown = ", ".join(repr(i) for i in list(unknown)[:5])
        raise ValueError(
            f"{len(unknown)} item(s) in {data_dir / SEQUENCES_FILE} have no entry in {data_dir / ITEMS_FILE} "
            f"(e.g. {shown}); add them or pass drop_unknown=True (--drop-unknown)"
        )
    users, seqs = [], []
    dropped_events = dropped_users = 0
    for user, seq in zip(sequences["user_id"], sequences["item_ids"]):
        kept = [i for i in seq if i in known]
        dropped_events += len(seq) - len(kept)
        if len(kept) < min_items:
            dropped_users += 1
            continue
        users.append(user)
        seqs.append(kept)
    logger.warning(
        "dropped %d interactions with %d unknown items and %d users left with < %d items",
        dropped_events, len(unknown), dropped_users, min_items,
    )
    if not users:
        raise ValueError(f"{data_dir}: no user has {min_items} or more known items after dropping unknown items")
    return sequences_from_lists(users, seqs), items
