"""The dense InfoNCE's columns: whole-catalog negatives (a full softmax), sampled negatives encoded with the batch,
and the log Q correction of in-batch columns, each checked against a hand computation."""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

from cobra_hf.modeling_cobra import info_nce  # noqa: E402

LEVELS = (4, 4, 3)


def with_labels(batch):
    return dict(batch, labels=batch["input_ids"].clone())


def _dense_loss_by_hand(model, batch, out, columns):
    """Mean InfoNCE of the ID-conditioned predictions against every item of `columns` Float[I, D]."""
    index = batch["item_index"]
    mask = batch["attention_mask"].view(index.shape[0], -1, len(LEVELS))[..., 0].bool()
    predicted = out.dense_predictions[mask[:, :-1] & mask[:, 1:]]
    targets = index[:, 1:][mask[:, :-1] & mask[:, 1:]]
    logits = F.normalize(predicted, dim=-1) @ F.normalize(columns, dim=-1).T / model.config.contrastive_temperature
    return F.cross_entropy(logits, targets)


def test_whole_catalog_negatives_are_a_full_softmax():
    model, tok = tiny_model(40, LEVELS, num_dense_negatives=-1, use_item_embeddings=True)
    model.eval()
    batch = tok([["i1", "i7", "i3"], ["i2", "i7"]])
    out = model(**with_labels(batch))
    with torch.no_grad():
        catalog = model.encode_items(torch.arange(40))
    assert torch.allclose(out.dense_loss, _dense_loss_by_hand(model, batch, out, catalog), atol=1e-5)
    # the in-batch loss of the same batch is a different (smaller) softmax: the check above can fail
    model.config.num_dense_negatives = 0
    assert not torch.allclose(model(**with_labels(batch)).dense_loss, out.dense_loss, atol=1e-4)


def test_catalog_negatives_in_training_are_fresh_and_reach_items_outside_the_batch():
    model, tok = tiny_model(40, LEVELS, num_dense_negatives=-1, use_item_embeddings=True)
    model.train()  # dropout is 0 in the tiny config: training and evaluation vectors agree
    batch = tok([["i1", "i7", "i3"], ["i2", "i7"]])
    out = model(**with_labels(batch))
    with torch.no_grad():
        catalog = model.encode_items(torch.arange(40))
    assert torch.allclose(out.dense_loss, _dense_loss_by_hand(model, batch, out, catalog), atol=1e-5)
    out.loss.backward()
    grad = model.model.item_embed.weight.grad
    outside = [i for i in range(40) if i not in (1, 2, 3, 7)]
    assert grad[outside].abs().sum(1).gt(0).all()  # every catalog item is a negative, with a gradient


def test_sampled_negatives_are_encoded_with_the_batch_and_change_the_loss(monkeypatch):
    model, tok = tiny_model(40, LEVELS, num_dense_negatives=8)
    model.train()
    batch = tok([["i1", "i7", "i3"], ["i2", "i7"]])
    rows = []
    original = model.model.item_encoder.forward
    monkeypatch.setattr(model.model.item_encoder, "forward", lambda ids, *a, **k: rows.append(ids.shape[0]) or original(ids, *a, **k))
    torch.manual_seed(0)
    sampled = model(**with_labels(batch))
    torch.manual_seed(0)
    drawn = torch.unique(torch.cat([torch.tensor([1, 2, 3, 7]), torch.randint(40, (8,))]))
    assert rows == [len(drawn)]  # one encoder pass over the batch's items and the drawn ones
    model.config.num_dense_negatives = 0
    torch.manual_seed(0)
    in_batch = model(**with_labels(batch))
    assert torch.isfinite(sampled.dense_loss) and sampled.dense_loss > in_batch.dense_loss  # more negatives
    assert torch.equal(sampled.sparse_loss, in_batch.sparse_loss)


# ------------------------------------------------------------------------------------------------ log Q correction
def test_info_nce_log_q_is_subtracted_from_each_column():
    torch.manual_seed(0)
    predicted, items, targets = torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, 4, 2])
    log_q = torch.log(torch.tensor([0.9, 0.1, 0.5, 0.05, 0.3]))
    logits = F.normalize(predicted, dim=-1) @ F.normalize(items, dim=-1).T / 0.2
    expected = F.cross_entropy(logits - log_q, targets)
    assert torch.allclose(info_nce(predicted, targets, items, 0.2, log_q), expected, atol=1e-6)
    # built a few rows at a time (chunk_elements 10 = 2 rows of 5 columns, a ragged last chunk): the same loss
    assert torch.allclose(info_nce(predicted, targets, items, 0.2, log_q, chunk_elements=10), expected, atol=1e-6)
    # a constant shift of every column is no correction at all (softmax is shift-invariant)
    assert torch.allclose(info_nce(predicted, targets, items, 0.2, torch.full((5,), -3.0)),
                          info_nce(predicted, targets, items, 0.2), atol=1e-6)


def test_logq_correction_hand_checked_on_in_batch_columns():
    """Columns of the batch below: its distinct items 1, 2, 3, 7 (5 item slots); log Q = log(1 - exp(-5 f)),
    f = (count + 1) / (total + I): popular items are corrected down, so the loss moves."""
    model, tok = tiny_model(40, LEVELS, dense_logq_correction=True)
    model.eval()
    batch = tok([["i1", "i7", "i3"], ["i2", "i7"]])
    with pytest.raises(ValueError, match="set_item_frequencies"):
        model(**with_labels(batch))
    with pytest.raises(ValueError, match="shape"):
        model.set_item_frequencies(torch.ones(39))
    with pytest.raises(ValueError, match=">= 0"):
        model.set_item_frequencies(-torch.ones(40))
    counts = torch.zeros(40)
    counts[torch.tensor([1, 2, 3, 7])] = torch.tensor([50.0, 1.0, 4.0, 200.0])
    model.set_item_frequencies(counts)
    out = model(**with_labels(batch))

    columns_index = torch.tensor([1, 2, 3, 7])
    frequency = (counts[columns_index] + 1) / (counts.sum() + 40)
    log_q = torch.log(1 - torch.exp(-5 * frequency))
    with torch.no_grad():
        columns = model.encode_items(columns_index)
    index = batch["item_index"]
    mask = batch["attention_mask"].view(2, -1, len(LEVELS))[..., 0].bool()
    valid = mask[:, :-1] & mask[:, 1:]
    targets = torch.searchsorted(columns_index, index[:, 1:][valid])
    logits = F.normalize(out.dense_predictions[valid], dim=-1) @ F.normalize(columns, dim=-1).T / 0.2
    assert torch.allclose(out.dense_loss, F.cross_entropy(logits - log_q, targets), atol=1e-5)
    history = model.history_dense_head(out.last_hidden_state.view(2, -1, len(LEVELS) + 1, 32)[:, :-1, -1][valid])
    history_logits = F.normalize(history, dim=-1) @ F.normalize(columns, dim=-1).T / 0.2
    assert torch.allclose(out.history_dense_loss, F.cross_entropy(history_logits - log_q, targets), atol=1e-5)
    # the same batch without the correction is another loss (the check above can fail); the sparse loss is untouched
    model.config.dense_logq_correction = False
    plain = model(**with_labels(batch))
    assert not torch.allclose(plain.dense_loss, out.dense_loss, atol=1e-3)
    assert torch.equal(plain.sparse_loss, out.sparse_loss)
    # equal frequencies shift every column alike: the same loss as without the correction
    model.config.dense_logq_correction = True
    model.set_item_frequencies(torch.full((40,), 7.0))
    assert torch.allclose(model(**with_labels(batch)).dense_loss, plain.dense_loss, atol=1e-5)


def test_logq_correction_stays_off_for_whole_catalog_columns_and_goes_stale_with_the_catalog():
    model, tok = tiny_model(40, LEVELS, dense_logq_correction=True, num_dense_negatives=-1)
    batch = tok([["i1", "i7", "i3"], ["i2", "i7"]])
    model(**with_labels(batch))  # every item is a column (Q = 1): no frequencies needed
    model.config.num_dense_negatives = 0
    model.set_item_frequencies(torch.ones(40))
    codes, text = model.item_codes.clone(), model.item_text_ids.clone()
    model.set_catalog(torch.cat([codes, codes[:2]]), torch.cat([text, text[:2]]))  # two items added
    with pytest.raises(ValueError, match="set_item_frequencies"):
        model(**with_labels(batch))
