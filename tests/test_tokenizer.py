"""CobraTokenizer: item ids <-> semantic IDs <-> token ids, padding/truncation, save/load, errors."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_catalog  # noqa: E402

from cobra_hf import CobraTokenizer  # noqa: E402

LEVELS = (4, 4, 3)


@pytest.fixture(scope="module")
def catalog():
    return tiny_catalog(20, LEVELS)


@pytest.fixture()
def tok(catalog):
    item_ids, codes, _, titles = catalog
    return CobraTokenizer.from_items(item_ids, codes, titles, list(LEVELS), max_history=4)


def expected_tokens(codes_row, level_sizes=LEVELS):
    offsets = 2 + np.concatenate([[0], np.cumsum(level_sizes)[:-1]])
    return [int(c) + int(o) for c, o in zip(codes_row, offsets)]


def test_encode_layout_and_round_trip(tok, catalog):
    item_ids, codes, _, _ = catalog
    batch = tok([["i3", "i7"]])
    assert batch["input_ids"].tolist() == [expected_tokens(codes[3]) + expected_tokens(codes[7])]
    assert batch["attention_mask"].tolist() == [[1] * 6]
    assert batch["item_index"].tolist() == [[3, 7]]
    assert batch["input_ids"].dtype == torch.long
    # token ids -> semantic IDs -> item ids
    ids = tok.decode_semantic_ids(batch["input_ids"][0])
    assert ids == [tuple(codes[3].tolist()), tuple(codes[7].tolist())]
    assert "i3" in tok.items_with_id(ids[0]) and "i7" in tok.items_with_id(ids[1])
    assert tok.semantic_id("i7") == tuple(codes[7].tolist())
    # every item of the catalog maps back through its ID
    for n, item in enumerate(item_ids):
        assert item in tok.items_with_id(codes[n].tolist())
    assert tok.batch_decode_items(batch["item_index"]) == [["i3", "i7"]]
    assert tok.title("i5") == "item number 5"
    assert tok.vocab_size == 2 + sum(LEVELS) == len(tok.get_vocab())
    # the string token API agrees with the vector encoder
    assert tok.convert_tokens_to_ids(tok._tokenize("i3 i7")) == batch["input_ids"][0].tolist()
    assert tok.convert_ids_to_tokens(batch["input_ids"][0].tolist()) == tok._tokenize("i3 i7")


def test_single_history_and_string_inputs(tok):
    a = tok(["i1", "i2"])
    b = tok("i1 i2")
    c = tok([["i1", "i2"]])
    for key in ("input_ids", "attention_mask", "item_index"):
        assert torch.equal(a[key], c[key]) and torch.equal(b[key], c[key])


def test_left_truncation_to_max_history(tok):
    batch = tok([["i0", "i1", "i2", "i3", "i4", "i5"]])
    assert batch["item_index"].tolist() == [[2, 3, 4, 5]]  # the newest 4 kept
    assert batch["input_ids"].shape == (1, 4 * 3)
    assert tok([["i0", "i1", "i2", "i3", "i4", "i5"]], max_history=2)["item_index"].tolist() == [[4, 5]]
    with pytest.raises(ValueError, match="max_history"):
        tok([["i0"]], max_history=0)


def test_left_padding(tok, catalog):
    _, codes, _, _ = catalog
    batch = tok([["i1", "i2", "i3"], ["i9"]])
    assert batch["item_index"].tolist() == [[1, 2, 3], [0, 0, 9]]
    assert batch["attention_mask"].tolist() == [[1] * 9, [0] * 6 + [1] * 3]
    assert batch["input_ids"][1].tolist() == [0] * 6 + expected_tokens(codes[9])
    np_batch = tok([["i1", "i2", "i3"], ["i9"]], return_tensors="np")
    assert isinstance(np_batch["input_ids"], np.ndarray)
    assert np_batch["input_ids"].tolist() == batch["input_ids"].tolist()
    assert tok([["i1"], ["i2", "i3"]], return_tensors=None)["item_index"] == [[0, 1], [2, 3]]


def test_unknown_items(tok):
    with pytest.raises(KeyError) as err:
        tok([["i1", "nope", "i2", "missing"]])
    assert "nope" in str(err.value) and "missing" in str(err.value)
    dropped = tok([["i1", "nope", "i2"]], unknown_items="drop")
    assert dropped["item_index"].tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="unknown_items"):
        CobraTokenizer.from_items(["a"], [[0]], level_sizes=[2], unknown_items="ignore")
    # per call too: any other word used to drop the unknown ids ("raise" did the opposite of what it asks)
    for policy in ("raise", "skip"):
        with pytest.raises(ValueError, match=f"^unknown_items must be 'error' or 'drop', got '{policy}'"):
            tok([["i1", "nope"]], unknown_items=policy)
        with pytest.raises(ValueError, match="^unknown_items must be"):
            tok.items_to_indices(["i1"], unknown_items=policy)


def test_text_tokenizer_arguments_are_refused_not_ignored(tok):
    """padding=True / "longest" is what the tokenizer does anyway; truncation, max_length and padding="max_length"
    would do nothing, so they are refused (max_history is the cap)."""
    plain = tok([["i1"], ["i2", "i3"]])
    for padding in (True, "longest"):
        assert tok([["i1"], ["i2", "i3"]], padding=padding)["input_ids"].tolist() == plain["input_ids"].tolist()
    for kwargs, named in (({"truncation": True}, "truncation"), ({"max_length": 3}, "max_length"),
                          ({"padding": "max_length"}, "padding='max_length'")):
        with pytest.raises(ValueError, match=f"^CobraTokenizer does not take {named}: .*max_history"):
            tok([["i1"]], **kwargs)


def test_empty_history_raises(tok):
    with pytest.raises(ValueError, match="[Ee]mpty"):
        tok([["i1"], []])
    with pytest.raises(ValueError):
        tok([["nope"]], unknown_items="drop")
    with pytest.raises(ValueError):
        tok([])


def test_save_load_exact(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    assert (tmp_path / "item_catalog.json").exists()
    assert (tmp_path / "tokenization_cobra.py").exists(), "the code file must travel with the tokenizer"
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["auto_map"]["AutoTokenizer"][0] == "tokenization_cobra.CobraTokenizer"
    histories = [["i1", "i2", "i3", "i4", "i5"], ["i9"], ["i0", "i19"]]
    for loaded in (CobraTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert isinstance(loaded, CobraTokenizer)
        assert loaded.catalog_hash == tok.catalog_hash
        assert loaded.item_ids == tok.item_ids and loaded.titles == tok.titles
        assert np.array_equal(loaded.item_codes, tok.item_codes)
        assert loaded.max_history == 4 and loaded.padding_side == "left"
        a, b = tok(histories), loaded(histories)
        for key in ("input_ids", "attention_mask", "item_index"):
            assert torch.equal(a[key], b[key])


def test_corrupted_catalog(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    path = tmp_path / "item_catalog.json"
    good = path.read_text()
    path.write_text(good[: len(good) // 2])
    with pytest.raises(ValueError, match="item_catalog.json"):
        CobraTokenizer.from_pretrained(tmp_path)
    # valid JSON, edited codes: the recorded hash no longer matches
    payload = json.loads(good)
    payload["codes"][0][0] = (payload["codes"][0][0] + 1) % LEVELS[0]
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="corrupted"):
        CobraTokenizer.from_pretrained(tmp_path)
    payload = json.loads(good)
    del payload["level_sizes"]
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="level_sizes"):
        CobraTokenizer.from_pretrained(tmp_path)
    payload = json.loads(good)
    payload["format_version"] = 99
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="format_version"):
        CobraTokenizer.from_pretrained(tmp_path)


def test_bad_catalogs_refused():
    with pytest.raises(ValueError, match="twice"):
        CobraTokenizer.from_items(["a", "a"], [[0], [1]], level_sizes=[2])
    with pytest.raises(ValueError, match="outside"):
        CobraTokenizer.from_items(["a", "b"], [[0], [2]], level_sizes=[2])


def test_items_with_id_unknown_is_empty(tok):
    used = {tuple(row) for row in tok.item_codes.tolist()}
    free = next(
        (a, b, c) for a in range(LEVELS[0]) for b in range(LEVELS[1]) for c in range(LEVELS[2]) if (a, b, c) not in used
    )
    assert tok.items_with_id(free) == []
    assert tok.items_with_id([99, 99, 99]) == []


def test_decode_semantic_ids_rejects_non_code_tokens(tok):
    with pytest.raises(ValueError):
        tok.decode_semantic_ids([0, 1, 2])


def test_batch_decode_items(tok):
    out = torch.tensor([[3, -1, 5], [0, 1, 2]])
    assert tok.batch_decode_items(out) == [["i3", "i5"], ["i0", "i1", "i2"]]
    with pytest.raises(ValueError, match="catalog"):
        tok.batch_decode_items(torch.tensor([[20]]))
    with pytest.raises(ValueError):
        tok.batch_decode_items(out, with_scores=True)


def test_add_items(tok):
    old_hash = tok.catalog_hash
    free = [c for c in range(LEVELS[2])]
    new = tok.add_items(["new1", "new2"], [[0, 0, free[0]], [3, 3, 2]], titles=["New one", "New two"])
    assert new == [20, 21]
    assert tok.num_items == 22 and tok.catalog_hash != old_hash
    assert tok([["i1", "new2"]])["item_index"].tolist() == [[1, 21]]
    assert "new2" in tok.items_with_id([3, 3, 2])  # the id table was rebuilt
    assert tok.title("new1") == "New one"
    with pytest.raises(ValueError, match="already"):
        tok.add_items(["i1"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="outside"):
        tok.add_items(["x"], [[0, 0, 3]])
    with pytest.raises(ValueError, match="twice"):
        tok.add_items(["y", "y"], [[0, 0, 0], [0, 0, 1]])
    # codes given as [levels, items]: the same number of codes, which a reshape used to scramble without a word
    with pytest.raises(ValueError, match=r"codes must be \[2, 3\] \(items x levels\), got \[3, 2\]"):
        tok.add_items(["x", "y"], np.array([[0, 1], [1, 0], [2, 2]]))
    with pytest.raises(ValueError, match="items x levels"):
        CobraTokenizer.from_items(["a", "b", "c"], np.array([[0, 1, 1], [1, 0, 1]]), level_sizes=[4, 4])
    assert tok.num_items == 22  # failed additions change nothing
