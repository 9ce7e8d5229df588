"""config.sparse_loss_valid_codes: the code heads' cross-entropy over the codes the catalog allows after the true
prefix equals the score the beam search gives the target's ID (training and decoding normalise alike)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

from cobra_hf import CobraConfig  # noqa: E402
from cobra_hf.cobra_generation import beam_search  # noqa: E402

LEVELS = (4, 4, 3)


def _loss(model, batch):
    return model(**batch, labels=batch["input_ids"].clone())


@pytest.mark.parametrize("id_trunk", [False, True])
def test_valid_code_loss_is_the_beam_score_of_the_target_id(id_trunk):
    model, tok = tiny_model(40, LEVELS, sparse_loss_valid_codes=True, id_trunk=id_trunk)
    model.eval()
    index = model.id_index
    for history, target in ((["i3"], "i7"), (["i12"], "i30")):
        # one item, then the target: the row's only prediction is the target's
        out = _loss(model, tok([history + [target]]))
        prefix = tok([history])
        item_mask = prefix["attention_mask"].view(1, -1, len(LEVELS))[..., 0].bool()
        with torch.no_grad():
            last_hidden, cache = model.prefill(prefix["input_ids"], item_mask, prefix["item_index"])
            # a beam as wide as the number of IDs keeps every valid prefix: the search is exhaustive
            codes, scores, _ = beam_search(model, last_hidden, cache, item_mask.sum(1), index.num_ids)
        assert bool(torch.isfinite(scores).all()) and codes.shape[1] == index.num_ids
        # the decoder's distribution over catalog IDs sums to one
        assert torch.allclose(scores.exp().sum(), torch.tensor(1.0), atol=1e-5)
        row = (codes[0] == torch.tensor(tok.semantic_id(target))).all(-1).nonzero().item()
        # sparse_loss is the mean over the levels of the one prediction
        assert torch.allclose(out.sparse_loss * len(LEVELS), -scores[0, row], atol=1e-5)


def test_valid_code_loss_is_at_most_the_full_softmax_loss_and_differs():
    full, tok = tiny_model(40, LEVELS)
    valid, _ = tiny_model(40, LEVELS, sparse_loss_valid_codes=True)
    full.eval(), valid.eval()
    valid.load_state_dict(full.state_dict())
    batch = tok([["i1", "i2", "i3", "i4"], ["i5", "i6"], ["i7", "i8", "i9"]])
    with torch.no_grad():
        a, b = _loss(full, batch), _loss(valid, batch)
    assert torch.equal(a.dense_loss, b.dense_loss)
    assert b.sparse_loss.item() < a.sparse_loss.item()  # fewer codes in each denominator
    # the returned logits are the heads' own, unmasked: decoding applies its masks itself
    for x, y in zip(a.sparse_logits, b.sparse_logits):
        assert torch.equal(x, y)


def test_valid_code_loss_trains_and_saves_its_switch(tmp_path):
    model, tok = tiny_model(40, LEVELS, sparse_loss_valid_codes=True)
    model.train()
    out = _loss(model, tok([["i1", "i2", "i3"], ["i4", "i5"]]))
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.sparse_head.parameters())
    model.config.save_pretrained(tmp_path)
    assert CobraConfig.from_pretrained(tmp_path).sparse_loss_valid_codes is True
    with pytest.raises(ValueError, match="sparse_loss_valid_codes must be true or false"):
        CobraConfig(sparse_loss_valid_codes="false")
