"""The columnar data layer gives what the row-by-row one (cobra_hf.data._rowwise) gave: on the real data folders,
on interaction logs made from them, and on the edge cases (ties in time, ids that look like numbers, users who fall
below k only after items are filtered, whitespace, text times, Hub datasets, CSV blocks that change type)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cobra_hf.data import _rowwise, columnar, leave_one_out, load_dataset_folder, load_interactions, load_sequences
from cobra_hf.data.loading import SEQUENCE_FEATURES

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL = [name for name in ("beauty", "scientific") if (SHARED_DATA / name).is_dir()]


def same(new: datasets.Dataset, old: datasets.Dataset) -> None:
    assert new.features == old.features
    assert new.to_dict() == old.to_dict()


def same_splits(new: datasets.DatasetDict, old: datasets.DatasetDict) -> None:
    assert new.num_short_users == old.num_short_users
    for name in ("train", "validation", "test"):
        same(new[name], old[name])


def write_log(path: Path, rows: list[tuple], names=("user_id", "item_id", "timestamp")) -> Path:
    """rows -> CSV/TSV/JSONL/Parquet by suffix (ids as text, so "007" survives every format)."""
    if path.suffix == ".parquet":
        pq.write_table(pa.table({name: [r[i] for r in rows] for i, name in enumerate(names)}), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(names, r))) + "\n" for r in rows), encoding="utf-8")
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        lines = [sep.join(names)] + [sep.join(str(v) for v in r) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def both(path, **kwargs) -> datasets.Dataset:
    new = load_interactions(path, **kwargs)
    same(new, _rowwise.load_interactions(path, **kwargs))
    return new


# ------------------------------------------------------------------------------------------- real data folders
@pytest.mark.parametrize("name", REAL)
def test_real_folders_sequences_and_splits_match(name):
    folder = SHARED_DATA / name
    sequences, items = load_dataset_folder(folder, drop_unknown=True)
    old_sequences, old_items = _rowwise.load_dataset_folder(folder, drop_unknown=True)
    same(sequences, old_sequences)
    same(items, old_items)
    for max_history in (20, 3):
        same_splits(leave_one_out(sequences, max_history), _rowwise.leave_one_out(old_sequences, max_history))


@pytest.mark.parametrize("name", REAL)
def test_real_folders_as_interaction_logs_match(name, tmp_path):
    """Each real folder turned into a shuffled log with tied times, read back with a 5-core filter."""
    sequences = load_sequences(SHARED_DATA / name / "sequences.txt")
    rows = [(u, item, position // 2) for u, seq in zip(sequences["user_id"], sequences["item_ids"])
            for position, item in enumerate(seq)]
    random.Random(0).shuffle(rows)
    path = write_log(tmp_path / "log.csv", rows)
    assert sum(map(len, both(path, min_count=5)["item_ids"])) == len(rows)  # the folders are 5-cores already
    core = both(path, min_count=6)  # cascades: scientific keeps 3,502 of 58,492 events
    assert 0 < sum(map(len, core["item_ids"])) < len(rows)
    same_splits(leave_one_out(core), _rowwise.leave_one_out(core))


# ------------------------------------------------------------------------------------------------- edge cases
TIES = [("u1", "b", 5), ("u1", "a", 5), ("u2", "c", 1), ("u1", "c", 5), ("u2", "a", 1), ("u1", "d", 2)]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_ties_in_time_keep_input_order(tmp_path, suffix):
    ds = both(write_log(tmp_path / f"log{suffix}", TIES))
    assert ds.to_dict() == {"user_id": ["u1", "u2"], "item_ids": [["d", "b", "a", "c"], ["c", "a"]]}


def test_ids_that_look_like_numbers_stay_text(tmp_path):
    rows = [("007", "01", 1), ("7", "1", 2), ("007", "1", 3), ("7", "01", 4), (" 7", "1 ", 5), ("10", "2", 1),
            ("9", "2", 1)]
    for suffix in (".csv", ".jsonl", ".parquet"):
        ds = both(write_log(tmp_path / f"log{suffix}", rows))
        assert ds["user_id"] == ["007", "10", "7", "9"]  # text order, " 7" is stripped into "7"
        assert ds["item_ids"][0] == ["01", "1"] and ds["item_ids"][2] == ["1", "01", "1"]


def test_users_who_fall_below_k_after_items_go_iterate_to_a_fixed_point(tmp_path):
    """k=2: item x is rare, so u3 drops below 2, which makes item y rare, which drops u4: three rounds."""
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 3), ("u2", "b", 4), ("u3", "x", 5), ("u3", "y", 6),
            ("u4", "y", 7), ("u4", "z", 8), ("u5", "z", 9), ("u5", "a", 10)]
    ds = both(write_log(tmp_path / "log.csv", rows), min_count=2)
    assert ds.to_dict() == {"user_id": ["u1", "u2"], "item_ids": [["a", "b"], ["a", "b"]]}
    with pytest.raises(ValueError, match="no interactions left after 9-core"):
        load_interactions(tmp_path / "log.csv", min_count=9)


def test_text_times_sort_as_text_and_number_text_as_numbers(tmp_path):
    dates = [("u", "a", "2021-03-01"), ("u", "b", "2020-12-31"), ("u", "c", "2021-03-01")]
    assert both(write_log(tmp_path / "dates.jsonl", dates))["item_ids"] == [["b", "a", "c"]]
    stamps = [("u", "a", "2021-03-01 10:00:00"), ("v", "b", "2020-12-31 23:59:59"), ("u", "c", "2021-03-01 09:59:59"),
              ("u", "d", "2021-03-01 10:00:00")]  # pyarrow's CSV reader makes these timestamps, pandas left text
    assert both(write_log(tmp_path / "stamps.csv", stamps))["item_ids"] == [["c", "a", "d"], ["b"]]
    numbers = [("u", "a", "10"), ("u", "b", "9"), ("u", "c", "-1.5")]  # as text "10" < "9"; as numbers not
    assert both(write_log(tmp_path / "numbers.jsonl", numbers))["item_ids"] == [["c", "b", "a"]]
    assert both(write_log(tmp_path / "order.csv", TIES), time_col=None)["item_ids"][0] == ["b", "a", "c", "d"]


def test_unicode_ids_and_columns_named_otherwise(tmp_path):
    rows = [("Zoë", "café", 2), ("Ängel", "naïve", 1), ("Zoë", "日本", 1), ("Ängel", "café", 3)]
    path = write_log(tmp_path / "log.csv", rows, names=("uid", "iid", "ts"))
    ds = both(path, user_col="uid", item_col="iid", time_col="ts")
    assert ds["user_id"] == sorted(["Zoë", "Ängel"])


def test_a_log_of_random_ties_and_cores_matches(tmp_path):
    rng = random.Random(1)
    rows = [(f"u{rng.randint(0, 60)}", f"{rng.randint(0, 40):0{rng.randint(1, 3)}d}", rng.randint(0, 5))
            for _ in range(3000)]
    path = write_log(tmp_path / "log.csv", rows)
    for k in (0, 1, 3, 8, 20):
        both(path, min_count=k)


def test_csv_blocks_whose_time_type_changes_are_reread_as_text(tmp_path, monkeypatch):
    """pyarrow infers the time type from the first block; a later block of decimals must not fail the read."""
    monkeypatch.setattr(columnar, "CSV_BLOCK_BYTES", 1 << 10)
    rows = [(f"u{n % 7}", f"i{n % 11}", n) for n in range(400)] + [("u1", "i3", "12.5"), ("u2", "i4", "1e2")]
    both(write_log(tmp_path / "log.csv", rows), min_count=2)


def test_lists_are_cut_into_chunks_under_the_string_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(columnar, "MAX_CHUNK_BYTES", 40)
    rows = [(f"u{n % 9}", f"item{n % 13}", n) for n in range(300)]
    ds = both(write_log(tmp_path / "log.csv", rows))
    assert ds.data.table.column("item_ids").num_chunks > 1
    same_splits(leave_one_out(ds, 4), _rowwise.leave_one_out(ds, 4))


def test_a_hub_dataset_a_table_and_a_streaming_dataset_take_the_same_path(tmp_path):
    rows = [(u, i, t) for u, i, t in TIES] + [("007", "7", 0), ("7", "007", 0)]
    expected = both(write_log(tmp_path / "log.csv", rows)).to_dict()
    table = pa.table({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "timestamp": [r[2] for r in rows]})
    hub = datasets.Dataset(table)
    assert load_interactions(table).to_dict() == expected
    assert load_interactions(hub).to_dict() == expected
    assert load_interactions(hub.to_iterable_dataset(num_shards=2)).to_dict() == expected
    assert load_interactions(hub.shuffle(seed=0).sort("timestamp")).features == SEQUENCE_FEATURES
    with pytest.raises(ValueError, match=r"<DatasetDict>.*pass one"):
        load_interactions(datasets.DatasetDict({"train": hub}))
    with pytest.raises(ValueError, match=r"<Dataset>: missing column\(s\) \['when'\]"):
        load_interactions(hub, time_col="when")


@pytest.mark.parametrize(
    "rows, words",
    [
        ([("u1", "a", 1), ("", "b", 2)], "row 2: empty 'user_id' or 'item_id'"),
        ([("u1", "a", 1), ("u2", "  ", 2), ("", "b", 3)], "row 2: empty 'user_id' or 'item_id'"),
        ([("u1", "a", 1), ("u2", "b", None)], "row 2: empty 'timestamp'"),
    ],
)
def test_empty_ids_and_times_name_the_row(tmp_path, rows, words):
    path = write_log(tmp_path / "log.jsonl", rows)
    with pytest.raises(ValueError, match=words) as err:
        load_interactions(path)
    assert str(path) in str(err.value) and len(str(err.value).splitlines()) == 1


def test_bad_files_fail_with_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\nu1,a,1\nu2,b\n")
    with pytest.raises(ValueError, match="bad.csv: could not read") as err:
        load_interactions(bad)
    assert len(str(err.value).splitlines()) == 1
    bad.write_bytes(b"user_id,item_id,timestamp\nu1,a,1\nu2,caf\xe9,2\n")
    with pytest.raises(ValueError, match=r"bad.csv: could not read.*Row #3.*UTF8") as err:  # pyarrow counts lines
        load_interactions(bad)
    assert len(str(err.value).splitlines()) == 1
    with pytest.raises(ValueError, match="unsupported interaction file type '.xlsx'"):
        load_interactions(write_log(tmp_path / "log.csv", TIES).rename(tmp_path / "log.xlsx"))


# ------------------------------------------------------------------------------------------------ sequences.txt
def test_sequences_txt_whitespace_bom_and_crlf_match(tmp_path):
    text = "\ufeff\ufeffu1 a\tb  c \r\n\n \x0b \nu2\u3000c\x1cd\x85e\r\n  u3 007 7\n"
    path = tmp_path / "sequences.txt"
    path.write_text(text, encoding="utf-8")
    same(load_sequences(path), _rowwise.load_sequences(path))
    assert load_sequences(path)["item_ids"] == [["a", "b", "c"], ["c", "d", "e"], ["007", "7"]]


@pytest.mark.parametrize(
    "content",
    ["u1 a b\n  u2  \n", "u1 a b\nu2 c d\n\nu1 e f\n", b"u1 a b\nu2 ok \xff\xfe c\n", "\n  \n", ""],
)
def test_sequences_txt_errors_match(tmp_path, content):
    path = tmp_path / "sequences.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError) as new:
        load_sequences(path)
    with pytest.raises(ValueError) as old:
        _rowwise.load_sequences(path)
    assert str(new.value) == str(old.value)


def test_dataset_folder_unknown_items_match(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "sequences.txt").write_text("u1 a b c x\nu2 a y z\nu3 c d e\nu4 z a b y c\n")
    (folder / "items.jsonl").write_text("".join(json.dumps({"item_id": i}) + "\n" for i in "abcde"))
    with pytest.raises(ValueError) as new:
        load_dataset_folder(folder)
    with pytest.raises(ValueError) as old:
        _rowwise.load_dataset_folder(folder)
    assert str(new.value) == str(old.value) and "'x', 'y', 'z'" in str(new.value)
    for min_items in (1, 3):
        same(load_dataset_folder(folder, drop_unknown=True, min_items=min_items)[0],
             _rowwise.load_dataset_folder(folder, drop_unknown=True, min_items=min_items)[0])
    with pytest.raises(ValueError, match="no user has 4 or more known items"):
        load_dataset_folder(folder, drop_unknown=True, min_items=4)


def test_leave_one_out_of_selected_rows_and_edge_lengths():
    lengths = [1, 2, 3, 4, 5, 6, 7, 11, 12, 23, 24, 25, 60]
    seqs = datasets.Dataset.from_dict(
        {"user_id": [f"u{n}" for n in lengths], "item_ids": [[f"i{n}_{j}" for j in range(n)] for n in lengths]},
        features=SEQUENCE_FEATURES,
    )
    for ds in (seqs, seqs.select([12, 0, 5, 3, 9]), seqs.filter(lambda r: len(r["item_ids"]) % 2 == 1)):
        for max_history in (1, 2, 4, 5, 20, 100):
            same_splits(leave_one_out(ds, max_history), _rowwise.leave_one_out(ds, max_history))


# ------------------------------------------------------------------------------- index_splits (catalog indices)
def _rowwise_index_splits(data_dir, tokenizer, max_history, unknown_items):
    """index_splits as it was: the row-by-row splits, each row through tokenizer.items_to_indices."""
    sequences, _ = _rowwise.load_dataset_folder(data_dir, drop_unknown=True)
    splits = _rowwise.leave_one_out(sequences, max_history=max_history)
    lookup = tokenizer.item_to_index
    train = [tokenizer.items_to_indices(items, unknown_items) for items in splits["train"]["item_ids"]]
    out = {"train": {"item_index": [t for t in train if len(t) >= 2]}}
    for name in ("validation", "test"):
        rows = {"user_id": [], "history_index": [], "target_index": []}
        for user, history, target in zip(splits[name]["user_id"], splits[name]["history"], splits[name]["target"]):
            if target not in lookup:
                continue
            index = tokenizer.items_to_indices(history, unknown_items)
            if index:
                rows["user_id"].append(user)
                rows["history_index"].append(index)
                rows["target_index"].append(lookup[target])
        out[name] = rows
    coverage = {}
    for name in ("validation", "test"):
        unknown, skipped, unknown_targets = set(), 0, 0
        for history, target in zip(splits[name]["history"], splits[name]["target"]):
            unknown.update(item for item in (*history, target) if item not in lookup)
            unknown_targets += target not in lookup
            skipped += target not in lookup or not any(item in lookup for item in history)
        coverage[name] = {"users_in_split": len(splits[name]), "users_skipped": skipped,
                          "unknown_targets": unknown_targets, "unknown_items": len(unknown)}
    return out, coverage


def _catalog_tokenizer(item_ids):
    import torch

    from cobra_hf import CobraTokenizer

    gen = torch.Generator().manual_seed(0)
    codes = torch.stack([torch.randint(0, 8, (len(item_ids),), generator=gen) for _ in range(3)], 1)
    return CobraTokenizer.from_items(list(item_ids), codes, [f"t {i}" for i in item_ids], [8, 8, 8], max_history=20)


@pytest.mark.parametrize("name", REAL[-1:])
def test_index_splits_match_with_items_held_out_of_the_catalog(name):
    from cobra_hf.training.datasets import index_splits, item_slot_counts

    folder = SHARED_DATA / name
    _, items = load_dataset_folder(folder)
    catalog = [item for n, item in enumerate(items["item_id"]) if n % 10 != 3]  # a tenth are "cold-start" items
    tokenizer = _catalog_tokenizer(catalog)
    for max_history in (20, 4):
        splits = index_splits(str(folder), tokenizer, max_history=max_history)
        expected, coverage = _rowwise_index_splits(folder, tokenizer, max_history, "drop")
        for split in ("train", "validation", "test"):
            assert splits[split].to_dict() == expected[split]
        assert splits.coverage == coverage and coverage["test"]["unknown_items"] > 0
    counts = item_slot_counts(splits["train"], len(catalog))
    assert int(counts.sum()) == sum(len(row) for row in expected["train"]["item_index"])
    with pytest.raises(KeyError) as new:
        index_splits(str(folder), tokenizer, unknown_items="error")
    with pytest.raises(KeyError) as old:
        _rowwise_index_splits(folder, tokenizer, 20, "error")
    assert str(new.value) == str(old.value)
