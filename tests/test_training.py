"""Training pieces: the data collator, index_splits on real data, CobraTrainer's logs, and `cobra-hf train` end to end
(output files, refusing a non-empty folder, --overwrite, --init_from fine-tuning) on catalog_scientific."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cobra_hf.cli.main import main as cli_main
from cobra_hf.evaluation import sample_split
from cobra_hf.training import CobraDataCollator, CobraTrainer, build_model, index_splits, item_slot_counts, load_catalog

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

sys.path.pop(0)

TINY_TRAIN = ["--hidden_size", "32", "--num_attention_heads", "2", "--intermediate_size", "64", "--disable_tqdm", "True",
              "--use_cpu", "True", "--report_to", "none", "--seed", "0", "--per_device_train_batch_size", "16"]


def _data_dir(catalog) -> str:
    return json.loads((Path(catalog) / "prepare_args.json").read_text())["data_dir"]


# ------------------------------------------------------------------------------------------------ collator
def _tokens(tokenizer, index: int) -> list[int]:
    return (tokenizer.item_codes[index] + tokenizer.level_offsets).tolist()


def test_collator_train_rows_left_padded_with_labels():
    _, tok = tiny_model()  # 3 levels
    collate = CobraDataCollator(tok, max_items=9)
    batch = collate([{"item_index": [1, 2, 3]}, {"item_index": [4, 5]}])
    assert set(batch) == {"input_ids", "attention_mask", "item_index", "labels"}
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["labels"].shape == (2, 9)
    assert batch["item_index"].tolist() == [[1, 2, 3], [0, 4, 5]]
    assert batch["attention_mask"].tolist() == [[1] * 9, [0] * 3 + [1] * 6]
    assert batch["input_ids"][0].tolist() == _tokens(tok, 1) + _tokens(tok, 2) + _tokens(tok, 3)
    assert batch["input_ids"][1].tolist() == [0, 0, 0] + _tokens(tok, 4) + _tokens(tok, 5)  # newest item last
    assert torch.equal(batch["labels"], batch["input_ids"]) and batch["labels"].data_ptr() != batch["input_ids"].data_ptr()
    assert all(value.dtype == torch.long for value in batch.values())

    short = CobraDataCollator(tok, max_items=2)([{"item_index": [6, 7, 8, 9]}])  # keeps the newest max_items
    assert short["item_index"].tolist() == [[8, 9]] and short["input_ids"].shape == (1, 6)


def test_collator_validation_rows_append_the_target():
    _, tok = tiny_model()
    collate = CobraDataCollator(tok, max_items=9)
    rows = [{"user_id": "a", "history_index": [3, 1], "target_index": 7}, {"user_id": "b", "history_index": [2], "target_index": 0}]
    batch = collate(rows)
    assert batch["item_index"].tolist() == [[3, 1, 7], [0, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1] * 9, [0] * 3 + [1] * 6]
    assert batch["input_ids"][1].tolist() == [0, 0, 0] + _tokens(tok, 2) + _tokens(tok, 0)
    # only the held-out target is labelled: the history's items are training targets, not validation ones
    assert torch.equal(batch["labels"][:, -3:], batch["input_ids"][:, -3:])
    assert (batch["labels"][:, :-3] == -100).all()
    with pytest.raises(ValueError, match="item_index.*history_index"):
        collate([{"user_id": "a"}])


def test_validation_loss_is_the_held_out_items_loss_alone():
    """The eval loss of validation rows equals the cross-entropy of the target's codes at the last position, computed
    from the logits by hand, and differs from the loss of the same sequences labelled in full."""
    model, tok = tiny_model()
    model.eval()
    rows = [{"user_id": "a", "history_index": [3, 1, 5], "target_index": 7},
            {"user_id": "b", "history_index": [2], "target_index": 9},
            {"user_id": "c", "history_index": [4, 8, 6, 11, 12], "target_index": 13}]
    batch = CobraDataCollator(tok, max_items=9)(rows)
    with torch.no_grad():
        out = model(**batch)
        full = model(**{**batch, "labels": batch["input_ids"].clone()})
    codes = model.item_codes[torch.tensor([row["target_index"] for row in rows])]  # [B, L], per-level codes
    by_hand = sum(torch.nn.functional.cross_entropy(logits[:, -1], codes[:, level], reduction="sum")
                  for level, logits in enumerate(out.sparse_logits)) / (len(rows) * len(out.sparse_logits))
    torch.testing.assert_close(out.sparse_loss, by_hand)
    assert not torch.isclose(out.sparse_loss, full.sparse_loss)


def test_index_splits_on_real_data(catalog_scientific):
    tokenizer, _, _ = load_catalog(catalog_scientific)
    data = Path(_data_dir(catalog_scientific))
    splits = index_splits(str(data), tokenizer, max_history=5)
    assert set(splits) == {"train", "validation", "test"}
    train = splits["train"]["item_index"]
    assert train and all(2 <= len(row) <= 6 for row in train)
    assert splits["train"].column_names == ["item_index"]
    assert all(0 <= i < tokenizer.num_items for row in train for i in row)

    sequences = {line.split()[0]: line.split()[1:] for line in (data / "sequences.txt").read_text().splitlines()}
    long_users = {user for user, items in sequences.items() if len(items) >= 3}
    for name, offset in (("validation", 2), ("test", 1)):
        split = splits[name]
        assert set(split.column_names) == {"user_id", "history_index", "target_index"}
        assert set(split["user_id"]) == long_users  # every target is in the catalog: no user lost
        for user, history, target in zip(split["user_id"], split["history_index"], split["target_index"]):
            items = sequences[user]
            assert 0 <= target < tokenizer.num_items and tokenizer.item_ids[target] == items[-offset]
            assert [tokenizer.item_ids[i] for i in history] == items[:-offset][-5:]
    validation = dict(zip(splits["validation"]["user_id"], splits["validation"]["target_index"]))
    for user, history in zip(splits["test"]["user_id"], splits["test"]["history_index"]):
        assert history[-1] == validation[user]  # leave-one-out: the validation target ends the test history


def test_item_slot_counts_on_real_data(catalog_scientific):
    tokenizer, _, _ = load_catalog(catalog_scientific)
    train = index_splits(_data_dir(catalog_scientific), tokenizer, max_history=20)["train"]
    counts = item_slot_counts(train, tokenizer.num_items)
    assert counts.shape == (tokenizer.num_items,) and int(counts.sum()) == sum(len(row) for row in train["item_index"])
    first = train["item_index"][0][0]
    assert int(counts[first]) == sum(row.count(first) for row in train["item_index"])
    with pytest.raises(ValueError, match="outside the catalog"):
        item_slot_counts(train, 3)


# ------------------------------------------------------------------------------------------------ CobraTrainer
def test_trainer_logs_loss_components_and_recommendation_metrics(catalog_scientific, tmp_path, one_torch_thread):
    from transformers import TrainingArguments

    model, tokenizer = build_model(catalog_scientific, init_text_embeddings=False, hidden_size=32, num_attention_heads=2,
                                   intermediate_size=64, max_history=10)
    splits = index_splits(_data_dir(catalog_scientific), tokenizer, max_history=10)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=4, logging_steps=2, eval_strategy="steps",
                             eval_steps=4, save_strategy="no", per_device_train_batch_size=16, per_device_eval_batch_size=16,
                             use_cpu=True, report_to="none", disable_tqdm=True, learning_rate=1e-3, seed=0)
    trainer = CobraTrainer(model=model, args=args, train_dataset=splits["train"],
                           eval_dataset=splits["validation"].select(range(12)),
                           data_collator=CobraDataCollator(tokenizer, max_items=11), processing_class=tokenizer,
                           recommendation_split=splits["validation"], recommendation_users=10,
                           generate_kwargs={"num_beams": 4})
    trainer.train()
    history = trainer.state.log_history
    train_logs = [entry for entry in history if "loss" in entry]
    assert len(train_logs) == 2
    for entry in train_logs:
        assert entry["sparse_loss"] > 0 and entry["dense_loss"] > 0 and torch.isfinite(torch.tensor(entry["loss"]))
    assert any("eval_loss" in entry for entry in history)
    evals = [entry for entry in history if "eval_recall@10" in entry]
    assert evals and all(0.0 <= evals[-1][f"eval_{m}@{k}"] <= 1.0 for m in ("recall", "ndcg") for k in (5, 10))
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and "eval_recall@10" in metrics and "eval_ndcg@5" in metrics
    assert trainer.args.remove_unused_columns is False


# ------------------------------------------------------------------------------------------------ cobra-hf train
def _snapshot(folder: Path) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_train_cli_end_to_end_refuses_overwrites_and_fine_tunes(catalog_scientific, tmp_path, capsys, one_torch_thread):
    from cobra_hf.inference import load_checkpoint

    out = tmp_path / "model"
    base = ["train", "--catalog", str(catalog_scientific), "--output_dir", str(out), *TINY_TRAIN]
    assert cli_main([*base, "--max_steps", "3", "--eval_strategy", "steps", "--eval_steps", "3", "--save_strategy", "no",
                     "--eval_users", "8", "--logging_steps", "1"]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["global_step"] == 3 and 0.0 <= final["eval_recall@10"] <= 1.0
    names = {path.name for path in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "item_catalog.json", "README.md",
            "training_summary.json", "catalog"} <= names
    assert (out / "catalog" / "quantizer" / "model.safetensors").is_file()
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_step"] == 3 and summary["data_dir"] == _data_dir(catalog_scientific)
    assert summary["cobra_args"]["hidden_size"] == 32
    assert [entry["step"] for entry in summary["log_history"] if "loss" in entry] == [1, 2, 3]
    assert any("eval_loss" in entry for entry in summary["log_history"])
    model, tokenizer = load_checkpoint(str(out))
    assert model.config.hidden_size == 32 and tokenizer.num_items == load_catalog(catalog_scientific)[0].num_items

    # the same folder again: refused, nothing touched
    before = _snapshot(out)
    assert cli_main([*base, "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no"]) == 1
    err = capsys.readouterr().err
    assert "already holds files" in err and "--overwrite" in err
    assert _snapshot(out) == before
    # ... unless --overwrite
    assert cli_main([*base, "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no", "--eval_users", "0",
                     "--overwrite", "True"]) == 0
    capsys.readouterr()
    assert json.loads((out / "training_summary.json").read_text())["global_step"] == 1

    # --init_from: fine-tune the checkpoint (its shape wins over the default --hidden_size 128)
    start = load_file(str(out / "model.safetensors"))
    tuned = tmp_path / "tuned"
    assert cli_main(["train", "--catalog", str(catalog_scientific), "--init_from", str(out), "--output_dir", str(tuned),
                     "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--eval_users", "0",
                     "--use_cpu", "True", "--disable_tqdm", "True", "--report_to", "none",
                     "--per_device_train_batch_size", "16"]) == 0
    capsys.readouterr()
    tuned_model, tuned_tok = load_checkpoint(str(tuned))
    assert tuned_model.config.hidden_size == 32 and tuned_tok.catalog_hash == tokenizer.catalog_hash
    weights = load_file(str(tuned / "model.safetensors"))
    assert weights.keys() == start.keys()
    assert any(not torch.equal(weights[name], start[name]) for name in weights)  # it trained
    assert json.loads((tuned / "training_summary.json").read_text())["global_step"] == 2


def test_train_only_id_trunk_trains_the_trunk_of_a_checkpoint_and_nothing_else(catalog_scientific, tmp_path, capsys,
                                                                               one_torch_thread):
    """--init_from CKPT --train_only id_trunk: every weight outside the ID trunk is saved unchanged, the trunk's
    changed, and the checkpoint loads (also from a checkpoint whose catalog/ an older version wrote); without
    --init_from, on a checkpoint without a trunk, or with another part, one line and exit 1."""
    from cobra_hf.inference import load_checkpoint
    from cobra_hf.integrity import record_checksums

    out = tmp_path / "trunk"
    quiet = ["--eval_strategy", "no", "--save_strategy", "no", "--eval_users", "0"]
    assert cli_main(["train", "--catalog", str(catalog_scientific), "--output_dir", str(out), *TINY_TRAIN,
                     "--id_trunk", "True", "--max_steps", "2", *quiet]) == 0
    start = load_file(str(out / "model.safetensors"))
    # a checkpoint whose catalog/ an older cobra-hf wrote (same IDs, other bytes): the tuned one still loads
    vocab = out / "catalog" / "item_text_vocab.json"
    vocab.write_text(json.dumps(json.loads(vocab.read_text()), indent=2))
    record_checksums(out, ["catalog/item_text_vocab.json"])
    tuned = tmp_path / "tuned"
    more = ["train", "--catalog", str(catalog_scientific), "--use_cpu", "True", "--disable_tqdm", "True",
            "--report_to", "none", "--per_device_train_batch_size", "16", "--max_steps", "2", *quiet]
    assert cli_main([*more, "--init_from", str(out), "--output_dir", str(tuned), "--train_only", "id_trunk"]) == 0
    weights = load_file(str(tuned / "model.safetensors"))
    assert weights.keys() == start.keys()
    changed = {name for name in weights if not torch.equal(weights[name], start[name])}
    assert changed and all(name.startswith("id_trunk.") for name in changed)
    summary = json.loads((tuned / "training_summary.json").read_text())
    assert summary["cobra_args"]["train_only"] == "id_trunk" and summary["global_step"] == 2
    load_checkpoint(str(tuned))  # every recorded checksum holds
    assert (tuned / "catalog" / "item_text_vocab.json").read_bytes() == vocab.read_bytes()
    capsys.readouterr()
    plain = tmp_path / "plain"
    assert cli_main(["train", "--catalog", str(catalog_scientific), "--output_dir", str(plain), *TINY_TRAIN,
                     "--max_steps", "1", "--recipe", "joint", *quiet]) == 0  # a checkpoint without a trunk
    capsys.readouterr()
    for flags, message in (([], "pass its checkpoint with --init_from"),
                           (["--init_from", str(plain)], "has no ID trunk"),
                           (["--init_from", str(out), "--train_only", "decoder"], "unknown part 'decoder'")):
        if "--train_only" not in flags:
            flags = [*flags, "--train_only", "id_trunk"]
        assert cli_main([*more, *flags, "--output_dir", str(tmp_path / "refused")]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_catalog_model_and_evaluation_work_without_datasets(catalog_scientific):
    """A bare accelerator machine with torch and transformers only can build, train and score a model in a plain loop."""
    import subprocess

    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'datasets' or name.startswith('datasets.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'datasets'\")\n"
        "sys.meta_path.insert(0, Block())\n"
        "from cobra_hf.training import build_model, CobraDataCollator\n"
        "from cobra_hf.evaluation import evaluate_model\n"
        f"model, tokenizer = build_model({str(catalog_scientific)!r}, init_text_embeddings=False, hidden_size=32,"
        " num_attention_heads=2, intermediate_size=64)\n"
        "model.eval()\n"
        "print(evaluate_model(model, tokenizer, [[0, 1], [2]], [3, 4], show_progress=False)['users'])\n"
        "assert 'datasets' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "2"


def test_train_cli_with_logq_correction_and_model_flags_from_the_config(catalog_scientific, tmp_path, capsys,
                                                                       one_torch_thread):
    """--dense_logq_correction sets the frequencies from the training split; every model flag is a CobraConfig field
    (--length_buckets here), --model_config gives others as JSON and the flags override it; the removed catalog-bank
    loss is no flag any more."""
    out = tmp_path / "model"
    assert cli_main(["train", "--catalog", str(catalog_scientific), "--output_dir", str(out), *TINY_TRAIN,
                     "--model_config", '{"length_buckets": 5, "item_deletion": 0.1}',
                     "--dense_logq_correction", "True", "--length_buckets", "3", "--max_steps", "2", "--eval_strategy",
                     "steps", "--eval_steps", "2", "--save_strategy", "no", "--eval_users", "3", "--logging_steps", "1"]) == 0
    capsys.readouterr()
    config = json.loads((out / "config.json").read_text())
    assert config["dense_logq_correction"] is True
    assert (config["length_buckets"], config["item_deletion"]) == (3, 0.1)
    assert "catalog_dense_loss_weight" not in config
    history = json.loads((out / "training_summary.json").read_text())["log_history"]
    losses = [entry["dense_loss"] for entry in history if "dense_loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) and loss > 0 for loss in losses)
    assert any("eval_loss" in entry for entry in history)  # the evaluation loss is corrected too


def test_model_flags_are_cobra_config_fields_and_refuse_what_they_cannot_set():
    from cobra_hf import CobraConfig
    from cobra_hf.training.train import CATALOG_FIELDS, model_arguments, parse_args

    names = {item.name for item in dataclasses.fields(model_arguments())}
    config_fields = set(inspect.signature(CobraConfig.__init__).parameters) - {"self", "kwargs"}
    assert names == config_fields - set(CATALOG_FIELDS)
    cobra_args, _ = parse_args(["--catalog", "c", "--output_dir", "o", "--hidden_size", "64", "--use_text_embeddings"])
    assert cobra_args.model_overrides == {"hidden_size": 64, "text_embedding_dim": -1}
    cobra_args, _ = parse_args(["--catalog", "c", "--output_dir", "o", "--use_text_embeddings", "False"])
    assert cobra_args.model_overrides == {"text_embedding_dim": 0}
    for spelled, dim in (("t", -1), ("Y", -1), ("n", 0), ("0", 0)):  # transformers' boolean spellings
        cobra_args, _ = parse_args(["--catalog", "c", "--output_dir", "o", f"--use_text_embeddings={spelled}"])
        assert cobra_args.model_overrides == {"text_embedding_dim": dim}
    with pytest.raises(ValueError, match="^--use_text_embeddings takes True or False, got 'ture'"):  # meant off
        parse_args(["--catalog", "c", "--output_dir", "o", "--use_text_embeddings", "ture"])
    with pytest.raises(ValueError, match="^--model_config: num_items is not a CobraConfig field"):
        parse_args(["--catalog", "c", "--output_dir", "o", "--model_config", '{"num_items": 3}'])
    with pytest.raises(ValueError, match="^--hidden_size: a model flag does nothing with --init_from"):
        parse_args(["--catalog", "c", "--output_dir", "o", "--init_from", "m", "--hidden_size", "64"])
    with pytest.raises(ValueError, match="weight_average_decay"):  # removed options are no flags
        parse_args(["--catalog", "c", "--output_dir", "o", "--weight_average_decay", "0.9"])


def test_train_cli_generation_defaults_and_extra_eval_modes(catalog_scientific, tmp_path, capsys, one_torch_thread):
    """--generation sets the generate() defaults every validation uses and the checkpoint saves; --eval_modes
    logs the other modes' metrics on the same users; bad values stop the run before it trains."""
    from cobra_hf.evaluation import evaluate_split
    from cobra_hf.inference import load_checkpoint

    base = ["train", "--catalog", str(catalog_scientific), *TINY_TRAIN, "--history_dense_loss_weight", "0.5"]
    for flags, named in ((["--generation", "beam_fusion=joint"], "--generation"),
                         (["--generation", '["joint"]'], "--generation"),
                         (["--generation", '{"num_beams": 0}'], "num_beams"),
                         (["--eval_modes", "dense,fancy"], "fancy")):
        bad = tmp_path / "bad"
        assert cli_main([*base, "--output_dir", str(bad), "--max_steps", "1", *flags]) == 1
        assert named in capsys.readouterr().err
        assert not bad.exists() or not any(bad.iterdir())
    out = tmp_path / "model"
    tuned = {"beam_fusion": "joint", "dense_guided_ids": 3, "beam_fusion_tau": 0.2, "beam_fusion_psi": 2,
             "beam_fusion_dense_psi": 8, "num_beams": 4}
    assert cli_main([*base, "--output_dir", str(out), "--max_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
                     "--save_strategy", "no", "--eval_users", "8", "--generation", json.dumps(tuned),
                     "--eval_modes", "dense, sparse"]) == 0
    capsys.readouterr()
    saved = json.loads((out / "generation_config.json").read_text())
    assert {key: saved[key] for key in tuned} == tuned
    evals = [entry for entry in json.loads((out / "training_summary.json").read_text())["log_history"]
             if "eval_recall@10" in entry]
    assert len(evals) == 1 and evals[0]["step"] == 2
    logged = evals[0]
    # the run stopped at its evaluation, so the saved model is the one evaluated: same users, same numbers
    model, tokenizer = load_checkpoint(str(out))
    validation = index_splits(_data_dir(catalog_scientific), tokenizer, max_history=model.config.max_history)["validation"]
    users = sample_split(validation, 8)
    for mode, prefix in ((None, "eval"), ("dense", "eval_dense"), ("sparse", "eval_sparse")):
        settings = {} if mode is None else {"mode": mode}
        result = evaluate_split(model, tokenizer, users, show_progress=False, **settings)
        for key in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
            assert logged[f"{prefix}_{key}"] == pytest.approx(result[key]), (prefix, key)
    # `cobra-hf evaluate` without fusion flags uses the saved settings too
    assert cli_main(["evaluate", str(out), "--data", _data_dir(catalog_scientific), "--split", "validation",
                     "--max-users", "8"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    first = evaluate_split(model, tokenizer, validation, max_users=8, show_progress=False)
    assert printed["recall@10"] == pytest.approx(first["recall@10"]) and printed["ndcg@5"] == pytest.approx(first["ndcg@5"])


def test_sample_split_is_seeded_spread_and_capped(catalog_scientific):
    _, tokenizer = build_model(catalog_scientific, init_text_embeddings=False, hidden_size=32, num_attention_heads=2,
                               intermediate_size=64)
    validation = index_splits(_data_dir(catalog_scientific), tokenizer)["validation"]
    users = sample_split(validation, 50)
    assert len(users) == 50 and users["user_id"] == sample_split(validation, 50)["user_id"]
    position = {user: row for row, user in enumerate(validation["user_id"])}
    rows = [position[user] for user in users["user_id"]]
    assert rows == sorted(rows) and len(set(rows)) == 50
    assert rows[-1] > len(validation) // 2  # drawn from the whole split, not its first users
    assert sample_split(validation, 10, seed=1)["user_id"] != sample_split(validation, 10)["user_id"]
    assert sample_split(validation, None) is validation and sample_split(validation, 10**9) is validation


def test_train_args_pin_memory_only_with_an_accelerator():
    """Pinned memory only speeds copies to an accelerator; on a CPU-only machine the default is off (torch warns
    otherwise), and a flag given on the command line still wins."""
    from cobra_hf.training.train import parse_args

    _, training_args = parse_args(["--catalog", "c", "--output_dir", "o"])
    assert training_args.dataloader_pin_memory is torch.accelerator.is_available()
    _, training_args = parse_args(["--catalog", "c", "--output_dir", "o", "--dataloader_pin_memory", "True"])
    assert training_args.dataloader_pin_memory is True


def test_length_grouped_batches_are_refused_in_one_line():
    """group_by_length was measured to train a worse model and its length column is gone: refused, not half-run."""
    from cobra_hf.training.train import parse_args

    with pytest.raises(ValueError, match="group_by_length is not supported"):
        parse_args(["--catalog", "x", "--output_dir", "y", "--train_sampling_strategy", "group_by_length"])


def test_eval_users_0_validates_no_user(catalog_scientific, tmp_path, capsys):
    """--eval_users 0 is "none": no validation loss either (it came from one random user, and could pick the best
    model by it); below -1, or 0 with --load_best_model_at_end, is one line."""
    out = tmp_path / "model"
    base = ["train", "--catalog", str(catalog_scientific), *TINY_TRAIN, "--max_steps", "2", "--eval_strategy", "steps",
            "--eval_steps", "1", "--save_strategy", "no", "--logging_steps", "1"]
    assert cli_main([*base, "--output_dir", str(out), "--eval_users", "0"]) == 0
    history = json.loads((out / "training_summary.json").read_text())["log_history"]
    assert history and not any(key.startswith("eval_") for entry in history for key in entry)
    capsys.readouterr()
    assert cli_main([*base, "--output_dir", str(tmp_path / "a"), "--eval_users", "-5"]) == 1
    assert "--eval_users must be -1 (all), 0 (none) or a count of users, got -5" in capsys.readouterr().err
    best = ["train", "--catalog", str(catalog_scientific), *TINY_TRAIN, "--max_steps", "2", "--eval_strategy",
            "steps", "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1", "--load_best_model_at_end",
            "True"]
    assert cli_main([*best, "--output_dir", str(tmp_path / "b"), "--eval_users", "0"]) == 1
    assert "--load_best_model_at_end has nothing to pick by" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
