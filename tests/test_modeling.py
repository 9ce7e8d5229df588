"""CobraForSequentialRecommendation.forward: shapes, losses (hand-checked), causality, padding, catalog checks."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from tiny import random_histories, tiny_catalog, tiny_model  # noqa: E402

from cobra_hf import CobraConfig, CobraTokenizer  # noqa: E402
from cobra_hf.cobra_losses import delete_items  # noqa: E402
from cobra_hf.modeling_cobra import info_nce  # noqa: E402

LEVELS = (4, 4, 3)


@pytest.fixture(scope="module")
def model_tok():
    model, tok = tiny_model(40, LEVELS)
    model.eval()
    return model, tok


def with_labels(batch):
    return dict(batch, labels=batch["input_ids"].clone())


def test_output_shapes(model_tok):
    model, tok = model_tok
    batch = tok([["i1", "i2", "i3", "i4"], ["i5", "i6"]])
    out = model(**batch)
    assert out.loss is None
    assert len(out.sparse_logits) == 3
    for logits, size in zip(out.sparse_logits, LEVELS):
        assert logits.shape == (2, 3, size)
    assert out.dense_predictions.shape == (2, 3, 32)
    assert out.item_vectors.shape == (2, 4, 32)
    assert out.last_hidden_state.shape == (2, 4 * 4, 32)
    assert torch.isfinite(out.last_hidden_state).all()
    # padding items get a zero vector
    assert torch.equal(out.item_vectors[1, :2], torch.zeros(2, 32))


def test_losses_finite_weighted_and_backward():
    model, tok = tiny_model(40, LEVELS)
    model.train()
    batch = with_labels(tok(random_histories(40, 6, max_len=6, seed=3)))
    out = model(**batch)
    for value in (out.loss, out.sparse_loss, out.dense_loss, out.history_dense_loss):
        assert value is not None and value.dim() == 0 and torch.isfinite(value)
    expected = out.sparse_loss + out.dense_loss + 0.5 * out.history_dense_loss
    assert torch.allclose(out.loss, expected, atol=1e-6)
    out.loss.backward()
    for name in ("model.item_encoder.token_embed.weight", "model.item_encoder.blocks.0.attn.qkv.weight",
                 "model.code_embed.weight", "sparse_head.0.weight", "sparse_head.2.weight", "dense_head.weight",
                 "history_dense_head.weight", "model.decoder.blocks.1.mlp.up.weight", "model.dense_in.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_history_dense_loss_off_by_default_weight():
    model, tok = tiny_model(40, LEVELS, history_dense_loss_weight=0.0)
    out = model(**with_labels(tok([["i1", "i2", "i3"]])))
    assert out.history_dense_loss is None
    assert torch.allclose(out.loss, out.sparse_loss + out.dense_loss)


def test_single_item_history_has_nothing_to_predict(model_tok):
    model, tok = model_tok
    with pytest.raises(ValueError, match="at least 2 items"):
        model(**with_labels(tok([["i1"], ["i2"]])))


def test_info_nce_hand_checked():
    predicted = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, -1.0]])
    items = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    targets = torch.tensor([0, 2])
    temperature = 0.5

    def cosine(a, b):
        dot = sum(x * y for x, y in zip(a, b))
        return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))

    losses = []
    for row, target in zip(predicted.tolist(), targets.tolist()):
        logits = [cosine(row, item) / temperature for item in items.tolist()]
        log_norm = math.log(sum(math.exp(x) for x in logits))
        losses.append(-(logits[target] - log_norm))
    expected = sum(losses) / len(losses)
    got = info_nce(predicted, targets, items, temperature)
    assert abs(got.item() - expected) < 1e-6
    # the temperature matters: the same inputs at t=1 give another value
    assert abs(info_nce(predicted, targets, items, 1.0).item() - expected) > 1e-3


def test_losses_match_hand_computation_with_duplicate_targets(model_tok):
    """Item i7 is the target twice; it must be ONE candidate of the InfoNCE softmax, not its own negative."""
    model, tok = model_tok
    histories = [["i1", "i7"], ["i2", "i7"], ["i3", "i4", "i5"]]
    batch = tok(histories)
    out = model(**with_labels(batch))
    # distinct items of the batch and their vectors (from the model's own item_vectors output)
    index, mask = batch["item_index"], batch["attention_mask"].view(3, -1, 3)[..., 0].bool()
    distinct = sorted(set(index[mask].tolist()))
    assert len(distinct) == 6
    vectors = {int(i): out.item_vectors[b, h] for b, h in mask.nonzero().tolist() for i in [index[b, h]]}
    temperature = model.config.contrastive_temperature
    dense_terms, sparse_terms = [], []
    for b in range(3):
        for t in range(index.shape[1] - 1):
            if not (mask[b, t] and mask[b, t + 1]):
                continue
            target = int(index[b, t + 1])
            pred = out.dense_predictions[b, t]
            logits = torch.stack([F.cosine_similarity(pred, vectors[i], dim=0) / temperature for i in distinct])
            dense_terms.append(-(logits[distinct.index(target)] - torch.logsumexp(logits, 0)))
            for level, logits_l in enumerate(out.sparse_logits):
                code = int(model.item_codes[target, level])
                sparse_terms.append(-torch.log_softmax(logits_l[b, t], -1)[code])
    assert len(dense_terms) == 4
    assert torch.allclose(out.dense_loss, torch.stack(dense_terms).mean(), atol=1e-5)
    assert torch.allclose(out.sparse_loss, torch.stack(sparse_terms).mean(), atol=1e-5)
    # had i7 been listed twice (once per occurrence), the value would differ: the check above can fail
    dup_terms = []
    for term_index, (b, t) in enumerate(((0, 1), (1, 1), (2, 0), (2, 1))):
        target = int(index[b, t + 1])
        pred = out.dense_predictions[b, t]
        logits = torch.stack([F.cosine_similarity(pred, vectors[i], dim=0) / temperature for i in distinct + [7]])
        dup_terms.append(-(logits[distinct.index(target)] - torch.logsumexp(logits, 0)))
    assert not torch.allclose(out.dense_loss, torch.stack(dup_terms).mean(), atol=1e-4)


def test_ignored_labels_are_not_predicted(model_tok):
    model, tok = model_tok
    batch = tok([["i1", "i2", "i3"]])
    full = model(**with_labels(batch))
    labels = batch["input_ids"].clone()
    labels[0, 6:] = -100  # do not predict i3
    part = model(**dict(batch, labels=labels))
    only = model(**with_labels(tok([["i1", "i2"]])))
    assert not torch.allclose(full.sparse_loss, part.sparse_loss)
    assert torch.allclose(part.sparse_loss, only.sparse_loss, atol=1e-5)


def test_causal_masking(model_tok):
    model, tok = model_tok
    levels = 3
    a = tok([["i1", "i2", "i3", "i4", "i5"]])
    b = tok([["i1", "i2", "i3", "i30", "i31"]])  # items 3 and 4 (0-based) changed
    assert not torch.equal(model.item_codes[4], model.item_codes[30])
    oa, ob = model(**a), model(**b)
    changed = 3
    keep = changed * (levels + 1)
    assert torch.allclose(oa.last_hidden_state[:, :keep], ob.last_hidden_state[:, :keep], atol=1e-6)
    assert not torch.allclose(oa.last_hidden_state[:, keep:], ob.last_hidden_state[:, keep:], atol=1e-4)
    # level 0 of item t+1 is read at v_t: unchanged for t < changed
    assert torch.allclose(oa.sparse_logits[0][:, :changed], ob.sparse_logits[0][:, :changed], atol=1e-6)
    # deeper levels and the dense prediction of item t+1 read item t+1's own codes: unchanged for t + 1 < changed
    for level in range(1, levels):
        assert torch.allclose(oa.sparse_logits[level][:, : changed - 1], ob.sparse_logits[level][:, : changed - 1], atol=1e-6)
    assert torch.allclose(oa.dense_predictions[:, : changed - 1], ob.dense_predictions[:, : changed - 1], atol=1e-6)
    assert not torch.allclose(oa.dense_predictions[:, changed - 1 :], ob.dense_predictions[:, changed - 1 :], atol=1e-4)


def test_left_padding_invariance(model_tok):
    model, tok = model_tok
    history = ["i4", "i8", "i15"]
    alone = model(**tok([history]))
    padded = model(**tok([["i1", "i2", "i3", "i5", "i6", "i7"], history, ["i9"]]))
    n = len(history)
    width = 3 + 1
    assert torch.allclose(padded.last_hidden_state[1, -n * width :], alone.last_hidden_state[0], atol=1e-5)
    for p, q in zip(padded.sparse_logits, alone.sparse_logits):
        assert torch.allclose(p[1, -(n - 1) :], q[0], atol=1e-5)
    assert torch.allclose(padded.dense_predictions[1, -(n - 1) :], alone.dense_predictions[0], atol=1e-5)
    assert torch.allclose(padded.item_vectors[1, -n:], alone.item_vectors[0], atol=1e-5)


@pytest.mark.parametrize("buckets", [2, 3, 64])
def test_length_buckets_give_the_same_losses_gradients_and_predictions(buckets):
    histories = random_histories(40, 11, max_len=8, seed=5) + [["i1"], ["i2", "i3"]]
    results = {}
    for groups in (1, buckets):
        model, tok = tiny_model(40, LEVELS, history_dense_loss_weight=0.5, length_buckets=groups)
        model.eval()
        batch = with_labels(tok(histories))
        out = model(**batch)
        out.loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results[groups] = (out, grads, batch)
    (one, one_grads, batch), (split, split_grads, _) = results[1], results[buckets]
    for name in ("loss", "sparse_loss", "dense_loss", "history_dense_loss"):
        assert torch.allclose(getattr(one, name), getattr(split, name), atol=1e-6), name
    assert one_grads.keys() == split_grads.keys()
    for name, grad in one_grads.items():
        assert torch.allclose(grad, split_grads[name], atol=1e-6), name
    items = batch["item_index"].shape[1]
    item_mask = batch["attention_mask"].view(len(histories), items, 3)[..., 0].bool()
    predicted = item_mask[:, :-1] & item_mask[:, 1:]
    assert torch.allclose(one.dense_predictions[predicted], split.dense_predictions[predicted], atol=1e-5)
    for a, b in zip(one.sparse_logits, split.sparse_logits):
        assert torch.allclose(a[predicted], b[predicted], atol=1e-5)


def test_length_buckets_cut_each_group_to_its_longest_row(monkeypatch):
    model, tok = tiny_model(40, LEVELS, length_buckets=2)
    model.eval()
    lengths = []
    original = model.model.decoder.forward

    def spy(x, key_mask, *args, **kwargs):
        lengths.append((x.shape[0], x.shape[1]))
        return original(x, key_mask, *args, **kwargs)

    monkeypatch.setattr(model.model.decoder, "forward", spy)
    histories = [["i1"] * 8, ["i2", "i3"], ["i4"] * 7, ["i5", "i6", "i7"]]
    model(**with_labels(tok(histories)))
    # rows sorted by length: (2, 3 items) then (7, 8 items); 4 tokens per item
    assert lengths == [(2, 3 * 4), (2, 8 * 4)]


def test_each_distinct_item_encoded_once(model_tok, monkeypatch):
    model, tok = model_tok
    rows = []
    original = model.model.item_encoder.forward

    def spy(token_ids, *args, **kwargs):
        rows.append(token_ids.shape[0])
        return original(token_ids, *args, **kwargs)

    monkeypatch.setattr(model.model.item_encoder, "forward", spy)
    histories = [["i1", "i2", "i1", "i3"], ["i2", "i3"], ["i3"], ["i5", "i5", "i5"]]
    model(**with_labels(tok(histories)))
    assert rows == [4]  # i1, i2, i3, i5 (not the padding index 0)


def test_model_refuses_tokenizer_of_other_catalog(model_tok):
    model, _ = model_tok
    # same sizes, other codes
    ids, codes, _, titles = tiny_catalog(40, LEVELS, seed=5)
    other = CobraTokenizer.from_items(ids, codes, titles, list(LEVELS))
    with pytest.raises(ValueError, match="different catalogs"):
        model(**other([["i1", "i2", "i3", "i4", "i5", "i6"]]))
    # more items than the model knows
    ids, codes, _, titles = tiny_catalog(60, LEVELS, seed=0)
    bigger = CobraTokenizer.from_items(ids, codes, titles, list(LEVELS))
    with pytest.raises(ValueError, match="catalog"):
        model(**bigger([["i55"]]))
    # another number of levels
    ids, codes, _, titles = tiny_catalog(40, (4, 4), seed=0)
    two_levels = CobraTokenizer.from_items(ids, codes, titles, [4, 4])
    with pytest.raises(ValueError, match="levels"):
        model(**two_levels([["i1", "i2", "i3"]]))


def test_set_catalog_validates(model_tok):
    model, _ = model_tok
    codes = model.item_codes.clone()
    text = model.item_text_ids.clone()
    with pytest.raises(ValueError, match="levels"):
        model.set_catalog(codes[:, :2], text)
    bad = codes.clone()
    bad[0, 2] = 3
    with pytest.raises(ValueError, match="level_sizes"):
        model.set_catalog(bad, text)
    with pytest.raises(ValueError, match="text_vocab_size"):
        model.set_catalog(codes, text + 100)
    with pytest.raises(ValueError, match="one row per item"):
        model.set_catalog(codes, text[:5])


# ------------------------------------------------------------------------------------------------ removed options
def test_a_config_with_the_removed_catalog_loss_loads_and_refuses_it_switched_on():
    """catalog_dense_loss_weight / catalog_refresh_steps (removed: no gain) load silently at their off values; a
    checkpoint that trained with the loss is refused in one line naming the field."""
    config = CobraConfig(level_sizes=list(LEVELS), catalog_dense_loss_weight=0.0, catalog_refresh_steps=10)
    assert not hasattr(config, "catalog_dense_loss_weight") and "catalog_refresh_steps" not in config.to_dict()
    with pytest.raises(ValueError, match="^catalog_dense_loss_weight=0.5: .*removed") as err:
        CobraConfig(level_sizes=list(LEVELS), catalog_dense_loss_weight=0.5)
    assert "\n" not in str(err.value)
    # within_id_loss_weight (issue 21, removed the same way): the research runs' configs carry it
    assert "within_id_loss_weight" not in CobraConfig(level_sizes=list(LEVELS), within_id_loss_weight=0.0).to_dict()
    with pytest.raises(ValueError, match="^within_id_loss_weight=1.0: .*removed"):
        CobraConfig(level_sizes=list(LEVELS), within_id_loss_weight=1.0)
    # id_trunk_shared_items (session 19: one run, no gain): a trunk trained on shared item vectors would decode wrongly
    assert "id_trunk_shared_items" not in CobraConfig(level_sizes=list(LEVELS), id_trunk_shared_items=False).to_dict()
    with pytest.raises(ValueError, match="^id_trunk_shared_items=True: .*removed"):
        CobraConfig(level_sizes=list(LEVELS), id_trunk=True, id_trunk_shared_items=True)
    # id_trunk_hidden_size (session 21: two seeds, half the full trunk's gain): a narrow trunk's weights fit no longer
    assert "id_trunk_hidden_size" not in CobraConfig(level_sizes=list(LEVELS), id_trunk_hidden_size=0).to_dict()
    with pytest.raises(ValueError, match="^id_trunk_hidden_size=64: an ID trunk narrower than the backbone was removed"):
        CobraConfig(level_sizes=list(LEVELS), id_trunk=True, id_trunk_hidden_size=64)
    # id_trunk_shared_decoder (sessions 20-21: two seeds, under the full trunk's gain at its cost)
    assert "id_trunk_shared_decoder" not in CobraConfig(level_sizes=list(LEVELS), id_trunk_shared_decoder=False).to_dict()
    with pytest.raises(ValueError, match="^id_trunk_shared_decoder=True: an ID trunk running the main backbone's"):
        CobraConfig(level_sizes=list(LEVELS), id_trunk=True, id_trunk_shared_decoder=True)
    # sparse_loss_valid_codes (session 27: one run, 3% / 4% below the baseline): its run's config carries True
    assert "sparse_loss_valid_codes" not in CobraConfig(level_sizes=list(LEVELS), sparse_loss_valid_codes=False).to_dict()
    with pytest.raises(ValueError, match="^sparse_loss_valid_codes=True: the semantic-ID cross-entropy over the codes"):
        CobraConfig(level_sizes=list(LEVELS), sparse_loss_valid_codes=True)
    # tie_code_embeddings (session 27: two seeds, 9% / 13% below the baseline): a tied checkpoint has no head weights
    assert "tie_code_embeddings" not in CobraConfig(level_sizes=list(LEVELS), tie_code_embeddings=False).to_dict()
    with pytest.raises(ValueError, match="^tie_code_embeddings=True: code heads tied to the input code embeddings"):
        CobraConfig(level_sizes=list(LEVELS), tie_code_embeddings=True)
    # sparse_label_smoothing (session 28: one seed, +0.7% / +0.2%, beams unchanged; session 29 removed it): training
    # with it is refused rather than silently trained without
    assert "sparse_label_smoothing" not in CobraConfig(level_sizes=list(LEVELS), sparse_label_smoothing=0.0).to_dict()
    with pytest.raises(ValueError, match="^sparse_label_smoothing=0.1: label smoothing of the code cross-entropy was"):
        CobraConfig(level_sizes=list(LEVELS), sparse_label_smoothing=0.1)
    # tie_item_output_embeddings (session 29: one seed on text IDs, NDCG@10 -4.9%): a tied checkpoint has no rows
    assert "tie_item_output_embeddings" not in CobraConfig(level_sizes=list(LEVELS),
                                                           tie_item_output_embeddings=False).to_dict()
    with pytest.raises(ValueError, match="^tie_item_output_embeddings=True: item output rows tied to the per-item"):
        CobraConfig(level_sizes=list(LEVELS), tie_item_output_embeddings=True)


def _kept_rows(item_index, item_mask) -> list[list[int]]:
    return [row[mask].tolist() for row, mask in zip(item_index, item_mask)]


def _is_subsequence(short: list[int], long: list[int]) -> bool:
    rest = iter(long)
    return all(any(item == other for other in rest) for item in short)


def test_item_deletion_gives_left_padded_subsequences():
    model, tok = tiny_model(40, LEVELS, item_deletion=0.5)
    model.train()
    histories = random_histories(40, 64, max_len=8, seed=7) + [["i1"], ["i2", "i3"]]
    batch = with_labels(tok(histories))
    items = batch["item_index"].shape[1]
    mask = batch["attention_mask"].view(len(histories), items, 3)[..., 0].bool()
    torch.manual_seed(0)
    ids, index, kept, labels = delete_items(batch["input_ids"], batch["item_index"], mask, batch["labels"], model.config.item_deletion, 3)
    before, after = _kept_rows(batch["item_index"], mask), _kept_rows(index, kept)
    for old, new in zip(before, after):
        assert _is_subsequence(new, old) and (len(new) >= 2 or new == old)
    assert sum(map(len, after)) < 0.75 * sum(map(len, before))  # about half the items went
    assert after[-2:] == before[-2:]  # one item cannot lose any; two would fall under 2
    # the same tensors as the tokenizer makes for the shortened sequences (left-padded to the same width)
    expected = with_labels(tok.encode_indices(after, max_history=items))
    width = expected["item_index"].shape[1]
    assert not kept[:, : items - width].any()
    assert torch.equal(index[:, items - width:], expected["item_index"])
    assert torch.equal(ids[:, (items - width) * 3:], expected["input_ids"])
    real = kept.repeat_interleave(3, 1)
    assert torch.equal(labels[real], expected["labels"][expected["attention_mask"].bool()])
    assert (labels[~real] == -100).all()


def test_item_deletion_trains_on_the_subsequences_and_is_off_in_eval():
    histories = random_histories(40, 24, max_len=8, seed=3)
    model, tok = tiny_model(40, LEVELS, item_deletion=0.4)
    batch = with_labels(tok(histories))
    model.train()
    torch.manual_seed(1)
    out = model(**batch)
    torch.manual_seed(1)  # the same draw (the tiny model has no dropout)
    items = batch["item_index"].shape[1]
    mask = batch["attention_mask"].view(len(histories), items, 3)[..., 0].bool()
    _, index, kept, _ = delete_items(batch["input_ids"], batch["item_index"], mask, batch["labels"], model.config.item_deletion, 3)
    model.config.item_deletion = 0.0
    direct = model(**with_labels(tok.encode_indices(_kept_rows(index, kept), max_history=items)))
    for name in ("loss", "sparse_loss", "dense_loss", "history_dense_loss"):
        assert torch.allclose(getattr(out, name), getattr(direct, name), atol=1e-6), name
    plain = model(**batch)
    assert not torch.allclose(out.loss, plain.loss)  # something was deleted
    model.config.item_deletion = 0.4
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).loss, model(**batch).loss)
        model.config.item_deletion = 0.0
        assert torch.equal(model(**batch).loss, plain.loss.detach())
