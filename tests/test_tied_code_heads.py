"""config.tie_code_embeddings: the code heads read the backbone's own code embeddings (TIGER's tying)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

from cobra_hf import CobraForSequentialRecommendation  # noqa: E402
from cobra_hf.cobra_layers import TiedCodeHead  # noqa: E402

LEVELS = (4, 4, 3)


def _heads_and_embeddings(model):
    pairs = [(model.sparse_head, model.model.code_embed)]
    if model.id_trunk is not None:
        pairs.append((model.id_trunk.sparse_head, model.id_trunk.model.code_embed))
    return pairs


@pytest.mark.parametrize("id_trunk", [False, True])
def test_tied_heads_score_against_the_code_embeddings(id_trunk):
    model, tok = tiny_model(40, LEVELS, tie_code_embeddings=True, id_trunk=id_trunk)
    model.eval()
    keys = set(model.state_dict())
    assert not any(k.startswith(("sparse_head.", "id_trunk.sparse_head.")) and k.endswith(".weight") for k in keys)
    hidden = torch.randn(5, model.config.hidden_size)
    for heads, embed in _heads_and_embeddings(model):
        with torch.no_grad():
            for head in heads:
                head.bias.normal_()
        for level, (head, offset, size) in enumerate(zip(heads, model.config.level_offsets, LEVELS)):
            assert isinstance(head, TiedCodeHead)
            expected = hidden @ embed.weight[offset : offset + size].T + head.bias
            assert torch.allclose(head(hidden), expected, atol=1e-6)
    # the tie is live: an edit of the embedding moves the logits the model decodes with
    batch = tok([["i1", "i2", "i3"]])
    before = model(**batch).sparse_logits[0].clone()
    with torch.no_grad():
        for _, embed in _heads_and_embeddings(model):
            # not a constant shift: the decoder's output is layer-normalised, so it would cancel
            embed.weight[model.config.level_offsets[0]] += torch.randn(model.config.hidden_size)
    assert not torch.allclose(model(**batch).sparse_logits[0], before)


def test_tied_model_trains_its_embeddings_through_the_heads_and_reloads_bit_exact(tmp_path):
    model, tok = tiny_model(40, LEVELS, tie_code_embeddings=True, dense_loss_weight=0.0,
                            history_dense_loss_weight=0.0)
    batch = tok([["i1", "i2", "i3"], ["i4", "i5"]])
    out = model(**batch, labels=batch["input_ids"].clone())
    out.loss.backward()
    # a code token absent from the inputs gets its gradient through the heads alone
    level_tokens = set(range(model.config.level_offsets[1], model.config.level_offsets[1] + LEVELS[1]))
    unused = sorted(level_tokens - set(batch["input_ids"].flatten().tolist()))
    assert unused
    assert model.model.code_embed.weight.grad[unused].abs().sum() > 0
    model.save_pretrained(tmp_path)
    loaded = CobraForSequentialRecommendation.from_pretrained(tmp_path)
    assert loaded.config.tie_code_embeddings is True
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    model.eval(), loaded.eval()
    assert torch.equal(model(**batch).sparse_logits[1], loaded(**batch).sparse_logits[1])
    assert loaded.sparse_head[0]._code_embed[0] is loaded.model.code_embed


def test_untied_heads_are_unchanged():
    model, _ = tiny_model(40, LEVELS)
    assert all(isinstance(head, torch.nn.Linear) for head in model.sparse_head)
    assert {f"sparse_head.{n}.weight" for n in range(3)} <= set(model.state_dict())
