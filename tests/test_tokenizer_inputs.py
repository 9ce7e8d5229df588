"""Issue 19, cases 7 and 11: what the tokenizer reads as a batch of histories, and decoding generate() outputs with the
usual transformers calls (decode / batch_decode) gives item ids."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

from cobra_hf import CobraTokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def numeric():
    """A catalog whose item ids are numbers, as in many datasets: "1" and "2" exist, and so does "12"."""
    ids = [str(n) for n in range(30)] + ["1490", "2177"]
    codes = [[n % 4, (n // 4) % 4, n % 3] for n in range(len(ids))]
    return CobraTokenizer.from_items(ids, codes, level_sizes=[4, 4, 3], max_history=8)


def _rows(encoding) -> list[list[int]]:
    mask = encoding["attention_mask"][:, :: 3].bool()
    return [row[keep].tolist() for row, keep in zip(encoding["item_index"], mask)]


def _index(tok, *ids):
    return [tok.item_to_index[i] for i in ids]


# ------------------------------------------------------------------------------------------------ case 7
def test_a_string_in_a_batch_is_never_read_as_characters(numeric):
    rows = _rows(numeric([["0"], "12"]))
    assert rows == [_index(numeric, "0"), _index(numeric, "12")]  # not the items "1" and "2"
    assert _rows(numeric([["0"], "12 3"])) == [_index(numeric, "0"), _index(numeric, "12", "3")]  # like tok("12 3")


def test_a_flat_list_of_int_ids_is_one_history(numeric):
    expected = numeric([["1490", "2177"]])
    for given in ([1490, 2177], [1490, "2177"], np.array([1490, 2177]), torch.tensor([1490, 2177]), ["1490", "2177"]):
        got = numeric(given)
        for key in ("input_ids", "attention_mask", "item_index"):
            assert torch.equal(got[key], expected[key]), (given, key)
    batch = numeric([[1490, 2177], [3]])  # ints inside histories, and a 2-D array, are a batch
    assert _rows(batch) == [_index(numeric, "1490", "2177"), _index(numeric, "3")]
    assert torch.equal(numeric(np.array([[1490, 2177], [3, 4]]))["item_index"],
                       numeric([["1490", "2177"], ["3", "4"]])["item_index"])
    assert _rows(numeric([["0"], 12])) == [_index(numeric, "0"), _index(numeric, "12")]  # a bare id row: one item


@pytest.mark.parametrize("given, words", [
    ([[1.5]], "1.5 is not an item id"),
    ([True, 2], "True is not an item id"),
    ([["0"], {"a": 1}], "row 1"),
])
def test_values_that_are_not_item_ids_are_one_line_errors(numeric, given, words):
    with pytest.raises(ValueError, match=words) as info:
        numeric(given)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------ case 11
@pytest.fixture(scope="module")
def generated():
    model, tok = tiny_model()
    model.eval()
    out = model.generate(**tok([["i1", "i2"], ["i3"]]), top_k=5, num_beams=4)
    return tok, out


def test_batch_decode_and_decode_of_generate_outputs_give_item_ids(generated):
    tok, out = generated
    items = tok.batch_decode_items(out)
    texts = [" ".join(row) for row in items]
    assert tok.batch_decode(out.item_indices) == texts
    assert tok.batch_decode(out.item_indices, skip_special_tokens=True) == texts
    assert tok.batch_decode(out) == texts
    assert tok.batch_decode(out.item_indices.tolist()) == texts
    assert tok.decode(out.item_indices[0]) == texts[0]
    assert tok.decode(out.item_indices[1].tolist()) == texts[1]
    assert tok.decode(out) == texts  # a batch decodes to a list, as transformers' decode does
    assert tok.decode(int(out.item_indices[0, 0])) == items[0][0]
    assert tok(texts[0])["item_index"][0].tolist() == out.item_indices[0].tolist()  # the text reads back


def test_decoding_skips_padding_and_refuses_indices_outside_the_catalog(generated):
    tok, _ = generated
    assert tok.batch_decode(torch.tensor([[3, -1], [0, 1]])) == ["i3", "i0 i1"]
    with pytest.raises(ValueError, match="40.*outside"):
        tok.decode([3, 40])
    with pytest.raises(ValueError, match="-2"):
        tok.decode([-2])


def test_decoding_an_encoding_gives_its_histories(generated):
    tok, _ = generated
    histories = [["i1", "i2", "i9"], ["i3"]]
    assert tok.batch_decode(tok(histories)) == ["i1 i2 i9", "i3"]
