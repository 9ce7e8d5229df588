"""The row-by-row data layer that the columnar one replaced (issue 22), kept as the reference it is checked against.

tests/test_data_equivalence.py asserts that `cobra_hf.data` gives the same sequences and splits as these functions
on the real data folders and on edge cases, and benchmarks/bench_data_layer.py times them side by side. Nothing
else should import this module: it walks Python lists row by row (about 3 minutes for 5M interactions).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets

from .loading import ITEMS_FILE, SEQUENCES_FILE, _iter_lines, _require_file, load_items, sequences_from_lists
from .splits import EVAL_FEATURES, TRAIN_FEATURES

_INTERACTION_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def load_sequences(path: str | Path) -> datasets.Dataset:
    """`sequences.txt` -> sequences Dataset, one Python list per line."""
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


def _read_table(path: Path, id_columns: tuple[str, ...]) -> datasets.Dataset:
    builder = _INTERACTION_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(f"{path}: unsupported interaction file type {path.suffix!r}")
    if builder == "csv":
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
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


def load_interactions(path, user_col="user_id", item_col="item_id", time_col="timestamp", min_count=0):
    """Interaction file -> sequences Dataset (users sorted by id, items oldest first), row by row."""
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


def load_dataset_folder(data_dir, drop_unknown=False, min_items=3):
    """`sequences.txt` + `items.jsonl` -> (sequences, items), unknown items checked with Python sets."""
    data_dir = Path(data_dir)
    sequences = load_sequences(data_dir / SEQUENCES_FILE)
    items = load_items(data_dir / ITEMS_FILE)
    known = set(items["item_id"])
    unknown: dict[str, None] = {}
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
    for user, seq in zip(sequences["user_id"], sequences["item_ids"]):
        kept = [i for i in seq if i in known]
        if len(kept) >= min_items:
            users.append(user)
            seqs.append(kept)
    if not users:
        raise ValueError(f"{data_dir}: no user has {min_items} or more known items after dropping unknown items")
    return sequences_from_lists(users, seqs), items


def _windows(items: list[str], size: int, step: int) -> list[list[str]]:
    if len(items) <= size:
        return [items]
    out = []
    end = len(items)
    while True:
        start = max(0, end - size)
        out.append(items[start:end])
        if start == 0:
            break
        end -= step
    return out[::-1]


def leave_one_out(sequences: datasets.Dataset, max_history: int = 20) -> datasets.DatasetDict:
    """Last item = test, second to last = validation, the rest = train (windows), over Python lists."""
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    train = {"user_id": [], "item_ids": []}
    valid = {"user_id": [], "history": [], "target": []}
    test = {"user_id": [], "history": [], "target": []}
    short = 0
    for user, items in zip(sequences["user_id"], sequences["item_ids"]):
        if len(items) < 3:
            short += 1
            continue
        head = items[:-2]
        if len(head) >= 2:
            for window in _windows(head, max_history + 1, max_history):
                train["user_id"].append(user)
                train["item_ids"].append(window)
        valid["user_id"].append(user)
        valid["history"].append(head[-max_history:])
        valid["target"].append(items[-2])
        test["user_id"].append(user)
        test["history"].append(items[:-1][-max_history:])
        test["target"].append(items[-1])
    result = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(train, features=TRAIN_FEATURES),
            "validation": datasets.Dataset.from_dict(valid, features=EVAL_FEATURES),
            "test": datasets.Dataset.from_dict(test, features=EVAL_FEATURES),
        }
    )
    result.num_short_users = short
    return result
