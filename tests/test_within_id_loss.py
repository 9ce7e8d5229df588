"""within_id_loss_weight: the ID-conditioned dense head's InfoNCE against only the items that share the target's
semantic ID (brute force against the grouped info_nce, and inside the model's forward)."""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

from cobra_hf import CobraConfig  # noqa: E402
from cobra_hf.cobra_losses import info_nce  # noqa: E402

LEVELS = (4, 4, 3)


def _grouped_by_hand(predicted, targets, columns, temperature, groups, log_q=None):
    """Per row: cross-entropy over the columns of the target's group only, then the mean."""
    terms = []
    for row, target in zip(predicted, targets.tolist()):
        members = [c for c in range(columns.shape[0]) if groups[c] == groups[target]]
        logits = F.cosine_similarity(row[None], columns[members], dim=-1) / temperature
        if log_q is not None:
            logits = logits - log_q[members]
        terms.append(-(logits[members.index(target)] - torch.logsumexp(logits, 0)))
    return torch.stack(terms).mean()


def test_grouped_info_nce_is_a_softmax_over_the_targets_group():
    gen = torch.Generator().manual_seed(0)
    predicted, columns = torch.randn(7, 5, generator=gen), torch.randn(9, 5, generator=gen)
    targets = torch.tensor([0, 1, 2, 3, 4, 8, 8])
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 4])  # column 8 is alone in its group
    log_q = torch.randn(9, generator=gen)
    for q in (None, log_q):
        expected = _grouped_by_hand(predicted, targets, columns, 0.3, groups, q)
        for chunk in (1 << 22, 10):  # one chunk, and rows split into several
            got = info_nce(predicted, targets, columns, 0.3, q, chunk_elements=chunk, groups=groups)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # a target alone in its group adds exactly 0
    alone = info_nce(predicted[5:], targets[5:], columns, 0.3, groups=groups)
    assert alone.item() == 0.0
    # the groups matter: without them the same inputs give the ordinary (larger) softmax
    assert info_nce(predicted, targets, columns, 0.3) > info_nce(predicted, targets, columns, 0.3, groups=groups)


def test_within_id_loss_in_forward_matches_the_catalog_items_of_each_target_id():
    model, tok = tiny_model(40, LEVELS, num_dense_negatives=-1, use_item_embeddings=True, within_id_loss_weight=0.5)
    model.eval()
    codes = model.item_codes
    ids = [tuple(row) for row in codes.tolist()]
    shared = [f"i{n}" for n in range(40) if ids.count(ids[n]) > 1]
    assert len(shared) >= 2, "the tiny catalog must have IDs shared by several items"
    batch = tok([["i1", shared[0], "i3"], ["i2", shared[1]], [shared[0], "i5", shared[1]]])
    batch = dict(batch, labels=batch["input_ids"].clone())
    out = model(**batch)
    with torch.no_grad():
        catalog = model.encode_items(torch.arange(40))
    index = batch["item_index"]
    mask = batch["attention_mask"].view(index.shape[0], -1, len(LEVELS))[..., 0].bool()
    valid = mask[:, :-1] & mask[:, 1:]
    groups = torch.tensor([ids.index(row) for row in ids])  # one key per distinct ID
    expected = _grouped_by_hand(out.dense_predictions[valid], index[:, 1:][valid], catalog,
                                model.config.contrastive_temperature, groups)
    torch.testing.assert_close(out.within_id_loss, expected, rtol=1e-5, atol=1e-5)
    assert out.within_id_loss > 0
    weighted = (model.config.sparse_loss_weight * out.sparse_loss + model.config.dense_loss_weight * out.dense_loss
                + model.config.history_dense_loss_weight * out.history_dense_loss + 0.5 * out.within_id_loss)
    torch.testing.assert_close(out.loss, weighted)
    # off by default: no such loss is computed
    model.config.within_id_loss_weight = 0.0
    assert model(**batch).within_id_loss is None


def test_within_id_loss_weight_is_validated():
    with pytest.raises(ValueError, match="within_id_loss_weight"):
        CobraConfig(within_id_loss_weight=-1.0)
