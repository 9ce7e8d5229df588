"""config.item_output_embeddings (cobra_item_output.py): hand-checked logits, a zero start equal to the model
without the table, gradients, save/load bit-exact, a growing catalog, the rows of an ID trunk, and their own weight
decay. The beam search's use of them is checked against brute force in test_generation.py."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

from cobra_hf import CobraForSequentialRecommendation  # noqa: E402
from cobra_hf.configuration_cobra import CobraConfig  # noqa: E402

LEVELS = (8, 8, 8)
ROWS = [{"history": [3, 1, 5], "target": 7}, {"history": [4, 8, 6, 2], "target": 13}]


def batch_of(tok, rows=ROWS):
    return tok.encode_indices([row["history"] + [row["target"]] for row in rows], max_history=8)


def randomised(model, seed: int = 0):
    with torch.no_grad():
        model.item_output.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed))
    return model


def test_extra_logits_are_the_mean_row_of_the_items_under_each_extended_prefix():
    model, _ = tiny_model(30, LEVELS, seed=4, item_output_embeddings=True)
    randomised(model)
    codes, rows = model.item_codes, model.item_output.weight.detach()
    hidden = torch.randn(3, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    for level in (1, 2):
        prefixes = codes[[0, 5, 11], :level]
        with torch.no_grad():
            extra = model.item_output.logits(model.id_index, hidden, prefixes)
        assert extra.shape == (3, LEVELS[level])
        for n in range(3):
            for code in range(LEVELS[level]):
                under = (codes[:, :level] == prefixes[n]).all(-1) & (codes[:, level] == code)
                expected = float(hidden[n] @ rows[under].mean(0)) if under.any() else 0.0
                assert float(extra[n, code]) == pytest.approx(expected, abs=1e-5)


def test_forward_adds_the_table_to_levels_after_the_first_given_the_true_prefix():
    model, tok = tiny_model(30, LEVELS, seed=4, item_output_embeddings=True)
    randomised(model).eval()
    batch = batch_of(tok)
    with torch.no_grad():
        out = model(**batch)
        model.item_output.weight.zero_()
        plain = model(**batch)
    target_codes = model.item_codes[torch.tensor([row["target"] for row in ROWS])]
    randomised(model)  # same rows again
    torch.testing.assert_close(out.sparse_logits[0], plain.sparse_logits[0])  # the first level: its head alone
    hidden = out.last_hidden_state
    grid = hidden.view(2, -1, len(LEVELS) + 1, hidden.shape[-1])
    for level in (1, 2):
        readout = grid[:, -1, level - 1]  # code `level` of the last item is read at its code level - 1
        with torch.no_grad():
            extra = model.item_output.logits(model.id_index, readout, target_codes[:, :level])
        torch.testing.assert_close(out.sparse_logits[level][:, -1], plain.sparse_logits[level][:, -1] + extra)


def test_zero_rows_start_as_the_model_without_the_table():
    """The table draws no random numbers and starts at zero: same seed, same other weights, same losses."""
    with_table, tok = tiny_model(30, LEVELS, seed=4, item_output_embeddings=True)
    without, _ = tiny_model(30, LEVELS, seed=4)
    state = without.state_dict()
    for name, tensor in with_table.state_dict().items():
        if name.startswith("item_output."):
            assert not tensor.any()
        else:
            assert torch.equal(tensor, state[name]), name
    batch = batch_of(tok)
    batch["labels"] = batch["input_ids"].clone()
    with torch.no_grad():
        torch.testing.assert_close(with_table.eval()(**batch).loss, without.eval()(**batch).loss)


def test_training_moves_the_rows_of_the_items_under_the_targets_prefixes():
    model, tok = tiny_model(30, LEVELS, seed=4, item_output_embeddings=True)
    model.train()
    batch = batch_of(tok)
    batch["labels"] = batch["input_ids"].clone()
    model(**batch).loss.backward()
    grad = model.item_output.weight.grad
    assert grad is not None and grad.abs().sum(-1).gt(0).any()
    # a row moves only if its item shares a first code with an item that is predicted in the batch
    predicted = {index for row in ROWS for index in (row["history"][1:] + [row["target"]])}
    first_codes = {int(model.item_codes[index, 0]) for index in predicted}
    for item in range(model.config.num_items):
        if int(model.item_codes[item, 0]) not in first_codes:
            assert not grad[item].any(), item


def test_save_load_bit_exact_and_generate_equal(tmp_path):
    model, tok = tiny_model(30, LEVELS, seed=4, item_output_embeddings=True)
    randomised(model).eval()
    model.save_pretrained(tmp_path)
    loaded = CobraForSequentialRecommendation.from_pretrained(tmp_path).eval()
    assert loaded.config.item_output_embeddings is True
    assert torch.equal(loaded.item_output.weight, model.item_output.weight)
    batch = tok.encode_indices([[3, 1, 5], [9, 2]])
    first = model.generate(**batch, num_beams=6, top_k=4, mode="sparse")
    second = loaded.generate(**batch, num_beams=6, top_k=4, mode="sparse")
    assert torch.equal(first.item_indices, second.item_indices)
    assert torch.equal(first.beam_scores, second.beam_scores)


def test_a_growing_catalog_keeps_the_old_rows_and_starts_new_items_at_zero():
    model, _ = tiny_model(30, LEVELS, seed=4, item_output_embeddings=True)
    randomised(model)
    old = model.item_output.weight.detach().clone()
    codes, text = model.item_codes, model.model.item_text_ids
    model.set_catalog(torch.cat([codes, codes[:2]]), torch.cat([text, text[:2]]), None, "grown")
    assert model.item_output.weight.shape[0] == 32
    assert torch.equal(model.item_output.weight[:30], old)
    assert not model.item_output.weight[30:].any()


def test_with_an_id_trunk_the_rows_are_the_trunks_and_train_with_it(tmp_path):
    """config.id_trunk: the trunk's code heads drive the beams, so the rows are the trunk's (the main backbone has
    none); forward's sparse logits are the trunk's heads plus its rows; the trunk's own phase
    (train_id_trunk_only) trains them; the Trainer gives them their own weight decay; save/load keeps them."""
    from transformers import TrainingArguments

    from cobra_hf.training.trainer import CobraTrainer

    model, tok = tiny_model(30, LEVELS, seed=4, id_trunk=True, item_output_embeddings=True,
                            item_output_weight_decay=0.5)
    table = model.id_trunk.item_output
    assert model.item_output is None and model.item_output_table is table
    with torch.no_grad():
        table.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(2))
    batch = batch_of(tok)
    labels = batch["input_ids"].clone()
    model.eval()
    with torch.no_grad():
        out = model(**batch, labels=labels)
        table.weight.zero_()
        plain = model(**batch, labels=labels)
    randomised_rows = torch.Generator().manual_seed(2)
    with torch.no_grad():
        table.weight.normal_(0.0, 1.0, generator=randomised_rows)
    torch.testing.assert_close(out.sparse_logits[0], plain.sparse_logits[0])
    assert not torch.allclose(out.sparse_logits[1], plain.sparse_logits[1])
    torch.testing.assert_close(out.backbone_sparse_loss, plain.backbone_sparse_loss)  # the main heads: no rows
    model.train_id_trunk_only()
    model.train()
    model(**batch, labels=labels).loss.backward()
    assert table.weight.grad is not None and table.weight.grad.abs().sum() > 0
    model.train_id_trunk_only(False)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), learning_rate=0.1, weight_decay=0.01, use_cpu=True,
                             report_to="none", disable_tqdm=True, save_strategy="no")
    optimizer = CobraTrainer(model=model, args=args, processing_class=tok).create_optimizer()
    owners = [group for group in optimizer.param_groups if any(param is table.weight for param in group["params"])]
    assert len(owners) == 1 and owners[0]["params"] == [table.weight] and owners[0]["weight_decay"] == 0.5
    model.eval().save_pretrained(tmp_path / "saved")
    loaded = CobraForSequentialRecommendation.from_pretrained(tmp_path / "saved").eval()
    assert torch.equal(loaded.id_trunk.item_output.weight, table.weight)
    histories = tok.encode_indices([[3, 1, 5], [9, 2]])
    first = model.generate(**histories, num_beams=6, top_k=4, mode="sparse")
    second = loaded.generate(**histories, num_beams=6, top_k=4, mode="sparse")
    assert torch.equal(first.item_indices, second.item_indices) and torch.equal(first.beam_scores, second.beam_scores)


@pytest.mark.parametrize("decay", [-1.0, 0.0, 2.5])
def test_item_output_weight_decay_gives_the_rows_their_own_group(tmp_path, decay):
    """config.item_output_weight_decay: the rows (and only they) decay at that rate, the other weight matrices at the
    run's --weight_decay; -1 leaves the Trainer's groups as they are. With zero gradients AdamW's step is the decay
    alone: p <- p * (1 - lr * weight_decay)."""
    from transformers import TrainingArguments

    from cobra_hf.training.trainer import CobraTrainer

    model, tok = tiny_model(30, LEVELS, seed=4, item_output_embeddings=True, item_output_weight_decay=decay)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), learning_rate=0.1, weight_decay=0.01, use_cpu=True,
                             report_to="none", disable_tqdm=True, save_strategy="no")
    trainer = CobraTrainer(model=model, args=args, processing_class=tok)
    optimizer = trainer.create_optimizer()
    assert trainer.create_optimizer() is optimizer  # a second call regroups nothing
    rows = model.item_output.weight
    owners = [group for group in optimizer.param_groups if any(param is rows for param in group["params"])]
    assert len(owners) == 1 and all(group["params"] for group in optimizer.param_groups)
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))
    if decay < 0:
        assert len(optimizer.param_groups) == 2 and owners[0]["weight_decay"] == 0.01
        return
    assert owners[0]["params"] == [rows] and owners[0]["weight_decay"] == decay and owners[0]["lr"] == 0.1
    matrix = model.sparse_head[0].weight
    with torch.no_grad():
        rows.fill_(1.0)
        before = matrix.detach().clone()
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    assert torch.allclose(rows, torch.full_like(rows, 1.0 - 0.1 * decay))
    assert torch.allclose(matrix, before * (1.0 - 0.1 * 0.01))


def test_item_output_weight_decay_refuses_bad_values():
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="^item_output_weight_decay must be >= 0"):
            CobraConfig(level_sizes=list(LEVELS), item_output_embeddings=True, item_output_weight_decay=bad)
    with pytest.raises(ValueError, match="^item_output_weight_decay is the weight decay of the per-item output rows"):
        CobraConfig(level_sizes=list(LEVELS), item_output_weight_decay=0.5)


def test_item_output_weight_decay_leaves_an_optimizer_the_user_gave_as_it_is(tmp_path):
    from transformers import TrainingArguments

    from cobra_hf.training.trainer import CobraTrainer

    model, tok = tiny_model(30, LEVELS, seed=4, item_output_embeddings=True, item_output_weight_decay=2.5)
    mine = torch.optim.SGD(model.parameters(), lr=0.1)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), use_cpu=True, report_to="none", disable_tqdm=True,
                             save_strategy="no")
    trainer = CobraTrainer(model=model, args=args, processing_class=tok, optimizers=(mine, None))
    assert trainer.create_optimizer() is mine and len(mine.param_groups) == 1
