"""Weight averaging (`--weight_average_decay`): the moving-average arithmetic, swapping it in for evaluation, and
`cobra-hf train` on real data: checkpoints keep the average, the run saves it, a resumed run continues it exactly."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from cobra_hf.cli.main import main as cli_main
from cobra_hf.training.weight_averaging import WEIGHT_AVERAGE_FILE, WeightAverage

sys.path.insert(0, os.path.dirname(__file__))
from test_training import TINY_TRAIN, _data_dir  # noqa: E402
from tiny import tiny_model  # noqa: E402

sys.path.pop(0)


def _trainable(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def test_average_follows_the_ramped_decay_and_swaps_back_exactly():
    model, _ = tiny_model()
    average = WeightAverage(0.5)
    average.attach(model)
    start = _trainable(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()  # n = 0: decay min(0.5, 1/10) = 0.1
    after_one = _trainable(model)
    expected = {name: 0.1 * start[name] + 0.9 * after_one[name] for name in start}
    for name, avg in zip(average.names, average.average):
        torch.testing.assert_close(avg, expected[name])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    average.update()  # n = 1: decay min(0.5, 2/11) = 2/11
    raw = _trainable(model)
    for name, avg in zip(average.names, average.average):
        torch.testing.assert_close(avg, 2 / 11 * expected[name] + 9 / 11 * raw[name])

    averaged = {name: avg.clone() for name, avg in zip(average.names, average.average)}
    model.eval()
    vectors_raw = model.all_item_vectors().clone()
    with average.swapped_in(model):
        for name, p in model.named_parameters():
            if name in averaged:
                assert torch.equal(p, averaged[name]), name
        assert not torch.equal(model.all_item_vectors(), vectors_raw)  # the catalog cache follows the weights
    for name, p in model.named_parameters():  # the raw weights come back bit for bit
        assert torch.equal(p, raw[name]), name
    assert torch.equal(model.all_item_vectors(), vectors_raw)
    average.copy_to_model(model)
    for name, p in model.named_parameters():
        assert torch.equal(p, averaged[name]), name


def test_decay_out_of_range_is_refused():
    for decay in (0.0, 1.0, -0.5, 2):
        with pytest.raises(ValueError, match="decay"):
            WeightAverage(decay)


def test_a_saved_average_that_does_not_fit_the_model_is_refused(tmp_path):
    model, _ = tiny_model()
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    writer = WeightAverage(0.9)
    writer.attach(model)
    writer.save(folder)
    assert not list(folder.glob("*.tmp"))
    reader = WeightAverage(0.9, resume_from=folder)
    reader.attach(model, global_step=3)
    assert reader.updates == 3
    saved = load_file(str(folder / WEIGHT_AVERAGE_FILE))
    name = next(iter(saved))
    saved[name] = torch.zeros(3, 3)
    save_file(saved, str(folder / WEIGHT_AVERAGE_FILE))
    with pytest.raises(ValueError, match="does not match the model"):
        WeightAverage(0.9, resume_from=folder).attach(model)
    (folder / WEIGHT_AVERAGE_FILE).unlink()  # a checkpoint from a run without averaging: restart from its weights
    fresh = WeightAverage(0.9, resume_from=folder)
    fresh.attach(model)
    for p, avg in zip(fresh.params, fresh.average):
        assert torch.equal(p, avg)


def test_train_cli_saves_and_resumes_the_average(catalog_scientific, tmp_path, capsys, one_torch_thread):
    """4 steps, checkpoints at 2 and 4: each holds the average beside the raw weights; the saved model is the final
    average (not the raw weights); validation scored it; resuming from checkpoint-2 ends bit-identical."""
    from cobra_hf.evaluation import evaluate_split
    from cobra_hf.inference import load_checkpoint
    from cobra_hf.training import index_splits, validation_sample

    def train(out, *extra):
        return cli_main(["train", "--catalog", str(catalog_scientific), "--output_dir", str(out), *TINY_TRAIN,
                         "--weight_average_decay", "0.6", "--max_steps", "4", "--eval_strategy", "steps",
                         "--eval_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--eval_users", "8",
                         "--learning_rate", "1e-2", "--history_dense_loss_weight", "0.5", *extra])

    out = tmp_path / "full"
    assert train(out) == 0
    capsys.readouterr()
    saved = load_file(str(out / "model.safetensors"))
    final_average = load_file(str(out / "checkpoint-4" / WEIGHT_AVERAGE_FILE))
    raw = load_file(str(out / "checkpoint-4" / "model.safetensors"))
    assert (out / "checkpoint-2" / WEIGHT_AVERAGE_FILE).is_file()
    assert final_average.keys() <= saved.keys()
    for name, tensor in final_average.items():
        assert torch.equal(saved[name], tensor), name
    assert any(not torch.equal(raw[name], final_average[name]) for name in final_average)

    model, tokenizer = load_checkpoint(str(out))
    history = json.loads((out / "training_summary.json").read_text())["log_history"]
    logged = next(entry for entry in history if "eval_recall@10" in entry)
    validation = index_splits(_data_dir(catalog_scientific), tokenizer, max_history=model.config.max_history)["validation"]
    result = evaluate_split(model, tokenizer, validation_sample(validation, 8), show_progress=False)
    for key in ("recall@10", "ndcg@5"):
        assert logged[f"eval_{key}"] == pytest.approx(result[key]), key

    resumed = tmp_path / "resumed"
    assert train(resumed, "--resume_from_checkpoint", str(out / "checkpoint-2")) == 0
    capsys.readouterr()
    again = load_file(str(resumed / "model.safetensors"))
    for name in saved:
        assert torch.equal(again[name], saved[name]), name
