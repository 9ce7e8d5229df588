"""config.item_embedding_weight_decay: the per-item ID embeddings decay at their own rate, in their own optimizer
group, beside the per-item output rows' group."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

from cobra_hf.configuration_cobra import CobraConfig  # noqa: E402

LEVELS = (4, 4, 3)


def _optimizer(tmp_path, **config):
    from transformers import TrainingArguments

    from cobra_hf.training.trainer import CobraTrainer

    model, tok = tiny_model(30, LEVELS, seed=4, use_item_embeddings=True, **config)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), learning_rate=0.1, weight_decay=0.01, use_cpu=True,
                             report_to="none", disable_tqdm=True, save_strategy="no")
    return model, CobraTrainer(model=model, args=args, processing_class=tok).create_optimizer()


def _group_of(optimizer, weight):
    owners = [group for group in optimizer.param_groups if any(param is weight for param in group["params"])]
    assert len(owners) == 1
    return owners[0]


@pytest.mark.parametrize("decay", [-1.0, 0.0, 3.0])
def test_item_embedding_weight_decay_gives_the_id_embeddings_their_own_group(tmp_path, decay):
    """The embeddings (and only they) decay at that rate; -1 leaves the Trainer's groups. With zero gradients AdamW's
    step is the decay alone: p <- p * (1 - lr * weight_decay)."""
    model, optimizer = _optimizer(tmp_path, item_embedding_weight_decay=decay)
    table = model.model.item_embed.weight
    group = _group_of(optimizer, table)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    if decay < 0:
        assert len(optimizer.param_groups) == 2 and group["weight_decay"] == 0.01
        return
    assert group["params"] == [table] and group["weight_decay"] == decay
    matrix = model.sparse_head[0].weight
    with torch.no_grad():
        table.fill_(1.0)
        before = matrix.detach().clone()
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    assert torch.allclose(table, torch.full_like(table, 1.0 - 0.1 * decay))
    assert torch.allclose(matrix, before * (1.0 - 0.1 * 0.01))


def test_item_embedding_and_output_row_decays_make_two_groups(tmp_path):
    model, optimizer = _optimizer(tmp_path, item_embedding_weight_decay=2.0, item_output_embeddings=True,
                                  item_output_weight_decay=0.5)
    assert len(optimizer.param_groups) == 4
    assert _group_of(optimizer, model.model.item_embed.weight)["weight_decay"] == 2.0
    assert _group_of(optimizer, model.item_output.weight)["weight_decay"] == 0.5


def test_item_embedding_weight_decay_refuses_bad_values():
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="^item_embedding_weight_decay must be >= 0"):
            CobraConfig(level_sizes=list(LEVELS), use_item_embeddings=True, item_embedding_weight_decay=bad)
    with pytest.raises(ValueError, match="^item_embedding_weight_decay is the weight decay of the per-item ID"):
        CobraConfig(level_sizes=list(LEVELS), item_embedding_weight_decay=0.5)
