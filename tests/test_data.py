"""Loaders, leave-one-out splits and item text (cobra_hf.data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cobra_hf.data import (
    item_text,
    leave_one_out,
    load_dataset_folder,
    load_interactions,
    load_items,
    load_sequences,
    sequences_from_lists,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def make_folder(root: Path, sequences: str, items: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write(root / "sequences.txt", sequences)
    write(root / "items.jsonl", "".join(json.dumps(r) + "\n" for r in items))
    return root


# ------------------------------------------------------------------------------ load_sequences
def test_load_sequences_reads_users_in_order_and_skips_blank_lines(tmp_path):
    path = write(tmp_path / "sequences.txt", "u1 a b c\n\n  \nu2 c a\n")
    ds = load_sequences(path)
    assert ds["user_id"] == ["u1", "u2"]
    assert ds["item_ids"] == [["a", "b", "c"], ["c", "a"]]


@pytest.mark.parametrize(
    "content, line, words",
    [
        ("u1 a b\nu2\n", 2, "no items"),
        ("u1 a b\n\nu1 c d\n", 3, "already appeared on line 1"),
        (b"u1 a b\nu2 \xff\xfe c\n", 2, "UTF-8"),
    ],
)
def test_load_sequences_bad_lines_name_file_and_line(tmp_path, content, line, words):
    path = write(tmp_path / "sequences.txt", content)
    with pytest.raises(ValueError, match=words) as err:
        load_sequences(path)
    assert f"sequences.txt:{line}:" in str(err.value)


def test_load_sequences_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_sequences(tmp_path / "nope.txt")


# ---------------------------------------------------------------------------------- load_items
def test_load_items_fills_missing_fields_with_null(tmp_path):
    path = write(
        tmp_path / "items.jsonl",
        '{"item_id": "a", "title": "Red pen", "categories": ["Office", "Pens"], "extra": 1}\n'
        "\n"
        '{"item_id": 7, "brand": "Acme", "attributes": ["x1", "x2"], "description": null}\n',
    )
    ds = load_items(path)
    assert ds.column_names == ["item_id", "title", "brand", "categories", "description", "attributes"]
    assert ds["item_id"] == ["a", "7"]
    assert ds[0]["title"] == "Red pen" and ds[0]["brand"] is None and ds[0]["categories"] == ["Office", "Pens"]
    assert ds[1]["title"] is None and ds[1]["attributes"] == ["x1", "x2"]


@pytest.mark.parametrize(
    "content, line, words",
    [
        ('{"item_id": "a"}\n{"item_id": "b", "title": \n', 2, "invalid JSON"),
        ('{"item_id": "a"}\n{"title": "no id"}\n', 2, "missing 'item_id'"),
        ('{"item_id": "a"}\n[1, 2]\n', 2, "JSON object"),
        (b'{"item_id": "a"}\n{"item_id": "b", "title": "caf\xe9"}\n', 2, "UTF-8"),
    ],
)
def test_load_items_bad_lines_name_file_and_line(tmp_path, content, line, words):
    path = write(tmp_path / "items.jsonl", content)
    with pytest.raises(ValueError, match=words) as err:
        load_items(path)
    assert f"items.jsonl:{line}:" in str(err.value)


def test_load_items_duplicate_id_names_both_lines(tmp_path):
    path = write(tmp_path / "items.jsonl", '{"item_id": "a"}\n{"item_id": "b"}\n\n{"item_id": "a"}\n')
    with pytest.raises(ValueError, match=r"duplicate item_id 'a' \(first defined on line 1, again on line 4\)"):
        load_items(path)


# --------------------------------------------------------------------------- load_interactions
ROWS = [  # user, item, time: u1 has 3 events out of order, u2 has 2, item z is rare
    ("u1", "b", 20), ("u2", "a", 5), ("u1", "a", 10), ("u2", "b", 7), ("u1", "c", 30), ("u3", "z", 1),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_load_interactions_orders_by_time(tmp_path, fmt):
    import datasets

    table = datasets.Dataset.from_dict(
        {"uid": [r[0] for r in ROWS], "iid": [r[1] for r in ROWS], "ts": [r[2] for r in ROWS]}
    )
    path = tmp_path / f"events.{fmt}"
    if fmt == "csv":
        table.to_csv(str(path), index=False)
    elif fmt == "jsonl":
        table.to_json(str(path))
    else:
        table.to_parquet(str(path))
    ds = load_interactions(path, user_col="uid", item_col="iid", time_col="ts")
    assert dict(zip(ds["user_id"], ds["item_ids"])) == {"u1": ["a", "b", "c"], "u2": ["a", "b"], "u3": ["z"]}
    core = load_interactions(path, user_col="uid", item_col="iid", time_col="ts", min_count=2)
    assert dict(zip(core["user_id"], core["item_ids"])) == {"u1": ["a", "b"], "u2": ["a", "b"]}


def test_load_interactions_missing_column(tmp_path):
    path = write(tmp_path / "events.csv", "user,item\nu1,a\n")
    with pytest.raises(ValueError, match="missing column"):
        load_interactions(path, user_col="user", item_col="item")


# -------------------------------------------------------------------------- load_dataset_folder
ITEMS = [{"item_id": i, "title": f"item {i}"} for i in "abcde"]


def test_load_dataset_folder_unknown_items_raise_or_drop(tmp_path):
    folder = make_folder(tmp_path / "d", "u1 a b c x\nu2 a y z\nu3 c d e\n", ITEMS)
    with pytest.raises(ValueError, match=r"3 item\(s\).*'x', 'y', 'z'"):
        load_dataset_folder(folder)
    sequences, items = load_dataset_folder(folder, drop_unknown=True)
    # u2 keeps only "a": fewer than 3 items, so the user is dropped
    assert dict(zip(sequences["user_id"], sequences["item_ids"])) == {"u1": ["a", "b", "c"], "u3": ["c", "d", "e"]}
    assert len(items) == 5


def test_load_dataset_folder_missing_file(tmp_path):
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "sequences.txt", "u1 a b c\n")
    with pytest.raises(FileNotFoundError, match="items.jsonl"):
        load_dataset_folder(tmp_path / "d")


# ------------------------------------------------------------------------------- leave_one_out
def test_leave_one_out_splits_and_short_users():
    seqs = sequences_from_lists(["u1", "u2", "u3"], [list("abcde"), list("ab"), list("xyz")])
    splits = leave_one_out(seqs, max_history=20)
    assert splits.num_short_users == 1
    assert splits["train"]["item_ids"] == [list("abc")]  # u3's train part has one item: no transition
    assert splits["validation"][0] == {"user_id": "u1", "history": list("abc"), "target": "d"}
    assert splits["test"][0] == {"user_id": "u1", "history": list("abcd"), "target": "e"}
    assert splits["validation"][1] == {"user_id": "u3", "history": ["x"], "target": "y"}
    assert splits["test"]["user_id"] == ["u1", "u3"]


def test_leave_one_out_windows_keep_every_transition():
    items = [f"i{n}" for n in range(25)]
    splits = leave_one_out(sequences_from_lists(["u"], [items]), max_history=4)
    windows = splits["train"]["item_ids"]
    train = items[:-2]
    assert all(len(w) <= 5 for w in windows)
    assert windows[-1] == train[-5:]  # the newest window ends at the end
    transitions = {(w[i], w[i + 1]) for w in windows for i in range(len(w) - 1)}
    assert transitions == {(train[i], train[i + 1]) for i in range(len(train) - 1)}
    assert splits["validation"][0]["history"] == train[-4:]
    assert splits["test"][0]["history"] == items[:-1][-4:]


# ----------------------------------------------------------------------------------- item_text
def test_item_text_flattens_present_fields_and_truncates_description():
    row = {
        "item_id": "a", "title": "Red  pen", "brand": "Acme", "categories": ["Office", "Pens"],
        "attributes": ["a1", "a2"], "description": "word " * 100,
    }
    text = item_text(row, max_description_chars=30)
    assert text.startswith("title: Red pen; brand: Acme; categories: Office > Pens; attributes: a1 a2; description: word")
    assert len(text.split("description: ")[1]) <= 34
    assert item_text({"item_id": "a", "title": "T", "brand": None, "categories": []}) == "title: T"
    assert item_text({"item_id": "q"}) == "item: q"
    assert "description" not in item_text(row, max_description_chars=0)


@pytest.mark.skipif(not (SHARED_DATA / "scientific").is_dir(), reason="shared data not available")
def test_real_scientific_folder_loads():
    sequences, items = load_dataset_folder(SHARED_DATA / "scientific")
    assert len(items) == 4344 and len(sequences) == 8317
    assert sum(len(s) for s in sequences["item_ids"]) == 58492
    splits = leave_one_out(sequences)
    assert len(splits["test"]) == 8317 - splits.num_short_users
