"""Issue 19, cases 5, 6, 14, 17 (0-row batch, negative item_index) and 18 (short rows under exclude_history):
damaged weights are refused at load, the dense mode needs its trained head, every documented save is complete."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

from cobra_hf import CobraForSequentialRecommendation  # noqa: E402
from cobra_hf.hub.checkpoint import save_checkpoint  # noqa: E402
from cobra_hf.inference import load_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_model(text_embedding_dim=0)
    return model.eval(), tok


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    model, tok = tiny
    folder = tmp_path_factory.mktemp("integrity") / "model"
    save_checkpoint(model, tok, folder)
    return folder


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


# ------------------------------------------------------------------------------------------------ case 5
def test_every_written_file_has_its_sha256_recorded(saved):
    recorded = json.loads((saved / "checksums.json").read_text())["files"]
    for name in ("config.json", "model.safetensors", "generation_config.json", "item_catalog.json",
                 "tokenizer_config.json", "modeling_cobra.py"):
        assert name in recorded, name
        assert len(recorded[name]["sha256"]) == 64 and recorded[name]["size"] == (saved / name).stat().st_size
    assert "README.md" not in recorded  # the card is for people to edit


def test_bytes_overwritten_inside_the_tensor_data_are_refused_naming_the_file(saved, tmp_path):
    from transformers import AutoModel

    folder = _copy(saved, tmp_path)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096  # the header is intact: safetensors itself loads this
    weights.write_bytes(bytes(data))
    for load in (lambda: load_checkpoint(str(folder)), lambda: AutoModel.from_pretrained(str(folder)),
                 lambda: CobraForSequentialRecommendation.from_pretrained(folder)):
        with pytest.raises(ValueError, match=r"model\.safetensors is corrupted.*sha256"):
            load()


def test_edited_settings_are_left_to_their_own_checks(saved, tmp_path):
    folder = _copy(saved, tmp_path / "settings")
    config = json.loads((folder / "config.json").read_text())
    config["dropout"] = 0.2  # a setting changed by hand on purpose
    (folder / "config.json").write_text(json.dumps(config))
    assert load_checkpoint(str(folder))[0].config.dropout == 0.2


def _save_with(model, tok, folder, mutate) -> Path:
    """Saves a copy of `model` whose state was changed by mutate(state_dict) (no checksums: an older checkpoint)."""
    save_checkpoint(model, tok, folder)
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    mutate(state)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "checksums.json").unlink()
    return folder


def _model_with_embeddings():
    """A tiny model whose catalog carries sentence embeddings (catalog vectors Float[I, 4])."""
    from tiny import tiny_catalog

    from cobra_hf import CobraConfig, CobraTokenizer

    item_ids, codes, text, titles = tiny_catalog(40)
    tok = CobraTokenizer.from_items(item_ids, codes, titles, [4, 4, 3], max_history=8)
    config = CobraConfig(level_sizes=[4, 4, 3], num_items=40, text_vocab_size=30, max_text_tokens=8, hidden_size=32,
                         num_attention_heads=2, intermediate_size=64, max_history=8, text_embedding_dim=4)
    model = CobraForSequentialRecommendation(config)
    model.set_catalog(codes, text, torch.randn(40, 4), tok.catalog_hash)
    return model, tok


@pytest.mark.parametrize("name", [
    "model.decoder.blocks.0.attn.qkv.weight", "model.item_text_embeddings", "sparse_head.1.bias"])
def test_non_finite_tensors_are_refused_naming_the_tensor(tmp_path, name):
    model, tok = _model_with_embeddings()

    def poison(state):
        state[name].view(-1)[3] = float("nan") if "bias" not in name else float("inf")

    folder = _save_with(model.eval(), tok, tmp_path / "m", poison)
    with pytest.raises(ValueError, match=rf"'{name}' holds 1 non-finite value"):
        load_checkpoint(str(folder))


def test_weights_saved_non_finite_are_refused_at_load_and_clean_ones_are_not_scanned_twice(saved, tmp_path, monkeypatch):
    model, tok = tiny_model()
    with torch.no_grad():
        model.dense_head.weight[0, 0] = float("nan")  # a training run that diverged, then saved
    folder = tmp_path / "diverged"
    save_checkpoint(model.eval(), tok, folder)
    assert json.loads((folder / "checksums.json").read_text())["tensors_checked"] is False
    with pytest.raises(ValueError, match="'dense_head.weight' holds 1 non-finite value"):
        load_checkpoint(str(folder))
    # a clean save checked its tensors; a load whose sha256 match reads the bytes once (the hash), no second scan
    assert json.loads((saved / "checksums.json").read_text())["tensors_checked"] is True
    import cobra_hf.checkpoint_files as checkpoint_files

    scans = []
    monkeypatch.setattr(checkpoint_files, "check_loaded_model", lambda *args: scans.append(args))
    load_checkpoint(str(saved))
    assert scans == []


def test_catalog_codes_outside_the_level_sizes_are_refused(tmp_path):
    model, tok = tiny_model()

    def poison(state):
        state["model.item_codes"][5, 1] = -1

    folder = _save_with(model.eval(), tok, tmp_path / "m", poison)
    with pytest.raises(ValueError, match="'model.item_codes' holds"):
        CobraForSequentialRecommendation.from_pretrained(folder)


def test_checks_can_be_skipped_and_a_clean_checkpoint_loads_identically(saved, tiny):
    model, _ = tiny
    loaded = CobraForSequentialRecommendation.from_pretrained(saved, check_integrity=False)
    again = CobraForSequentialRecommendation.from_pretrained(saved)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value) and torch.equal(again.state_dict()[key], value)


# ------------------------------------------------------------------------------------------------ case 6
def test_dense_mode_is_refused_without_the_id_free_head(tmp_path):
    model, tok = tiny_model(history_dense_loss_weight=0.0)
    assert model.history_dense_head is None
    assert not any(key.startswith("history_dense_head") for key in model.state_dict())
    model.eval()
    batch = tok([["i1", "i2"]])
    with pytest.raises(ValueError, match="mode='dense' needs the ID-free dense head.*history_dense_loss_weight"):
        model.generate(**batch, mode="dense")
    with pytest.raises(ValueError, match="history_dense_loss_weight"):
        model.set_generation_defaults(recommend_mode="dense")
    assert model.generate(**batch, top_k=5).item_indices.shape == (1, 5)  # the other modes work


def test_recommend_mode_dense_is_one_line_and_exit_1_without_the_head(tmp_path, capsys):
    from cobra_hf.cli.main import main

    model, tok = tiny_model(history_dense_loss_weight=0.0)
    save_checkpoint(model.eval(), tok, tmp_path / "m")
    assert main(["recommend", str(tmp_path / "m"), "--history", "i1", "i2", "--mode", "dense", "--top-k", "5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("cobra-hf recommend: error:") and "history_dense_loss_weight" in err


def test_older_checkpoints_with_an_unused_head_load_without_warnings(tmp_path, caplog):
    model, tok = tiny_model(history_dense_loss_weight=0.5)
    folder = tmp_path / "old"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["history_dense_loss_weight"] = 0.0  # what a weight-0 model of an older cobra-hf looks like
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "checksums.json").unlink()
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            loaded, tok2 = load_checkpoint(str(folder))
    finally:
        hf_logging.disable_propagation()
    assert loaded.history_dense_head is None
    assert not [r for r in caplog.records if "history_dense_head" in r.getMessage() or "UNEXPECTED" in r.getMessage()]
    assert loaded.generate(**tok2([["i1", "i2"]]), top_k=5).item_indices.shape == (1, 5)


# ------------------------------------------------------------------------------------------------ case 17
def test_a_zero_row_batch_is_one_clear_error(tiny):
    model, tok = tiny
    batch = tok([["i1", "i2"]])
    empty = {key: value[:0] for key, value in batch.items()}
    with pytest.raises(ValueError, match="empty batch"):
        model.generate(**empty)
    with pytest.raises(ValueError, match="empty batch"):
        model(**empty)


def test_a_negative_item_index_is_reported_as_such(tiny):
    model, tok = tiny
    batch = tok([["i1", "i2"]])
    batch["item_index"][0, 0] = -3
    with pytest.raises(ValueError, match=r"item_index holds -3.*0 to 39"):
        model.generate(**batch)


def test_right_padded_raw_inputs_are_refused(tiny):
    """Raw tensors padded on the right (pad_sequence's default) pass every catalog check, but decoding reads the last
    position as the newest item: refused, naming the rows; the tokenizer's left padding decodes as before."""
    model, tok = tiny
    batch = tok([["i1", "i2", "i3"], ["i4"]])
    right = {key: value.clone() for key, value in batch.items()}
    levels = len(model.config.level_sizes)
    for key, width in (("input_ids", levels), ("attention_mask", levels), ("item_index", 1)):
        row = right[key][1]
        right[key][1] = torch.cat([row[-width:], row[:-width]])  # the one item first, its padding after it
    with pytest.raises(ValueError, match=r"^attention_mask rows \[1\] have padding after an item: .*left-padded"):
        model.generate(**right)
    assert model.generate(**batch, top_k=5).item_indices.shape == (2, 5)


# ------------------------------------------------------------------------------------------------ case 18
def test_short_rows_under_exclude_history_are_a_counted_warning(tiny):
    model, tok = tiny
    batch = tok([["i1", "i2"], ["i3"]])
    with pytest.warns(UserWarning, match=r"2 of 2 rows hold fewer than top_k=40 items.*exclude_history"):
        out = model.generate(**batch, top_k=40, exclude_history=True, num_beams=4)
    assert (out.item_indices[0] < 0).sum() == 2 and (out.item_indices[1] < 0).sum() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate(**batch, top_k=38, exclude_history=True, num_beams=4)  # room for every row: no warning


# ------------------------------------------------------------------------------------------------ case 14
FAST = dict(num_levels=2, codebook_size=8, rqvae_epochs=2, show_progress=False,
            rqvae_overrides={"hidden_dims": [32], "code_dim": 8, "batch_size": 64})
MODEL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, dropout=0.0, attention_dropout=0.0,
             max_history=8)


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_tiny_encoder):
    from conftest import data_make_folder

    from cobra_hf.semantic_ids import build_catalog
    from cobra_hf.training.model_builder import build_model

    root = tmp_path_factory.mktemp("complete")
    data = data_make_folder(root / "data", num_items=30, num_users=20)
    catalog = build_catalog(data, root / "catalog", encoder=data_tiny_encoder, max_text_tokens=8,
                            cache_dir=root / "cache", **FAST)
    model, tokenizer = build_model(catalog, init_text_embeddings=False, **MODEL)
    return {"root": root, "data": data, "catalog": catalog, "model": model.eval(), "tokenizer": tokenizer}


def _assert_complete(folder: Path) -> None:
    from cobra_hf.semantic_ids.assets import load_catalog_assets

    assert (folder / "catalog" / "item_text_vocab.json").is_file(), sorted(os.listdir(folder))
    load_catalog_assets(folder)  # what add-items reads
    recorded = json.loads((folder / "checksums.json").read_text())["files"]
    assert "catalog/quantizer/model.safetensors" in recorded
    load_checkpoint(str(folder))  # and the checksums hold


def test_a_damaged_quantizer_is_named(built, tmp_path):
    folder = save_checkpoint(built["model"], built["tokenizer"], tmp_path / "m")
    quantizer = folder / "catalog" / "quantizer" / "model.safetensors"
    data = bytearray(quantizer.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit: wrong semantic IDs for every item added later
    quantizer.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"catalog/quantizer/model\.safetensors is corrupted"):
        load_checkpoint(str(folder))


def test_save_checkpoint_without_catalog_dir_is_complete(built):
    folder = save_checkpoint(built["model"], built["tokenizer"], built["root"] / "readme_snippet")
    _assert_complete(folder)


def test_save_pretrained_of_a_built_and_of_a_loaded_model_is_complete(built):
    folder = built["root"] / "plain"
    built["model"].save_pretrained(folder)
    built["tokenizer"].save_pretrained(folder)
    _assert_complete(folder)
    model, tok = load_checkpoint(str(folder))
    again = built["root"] / "resaved"
    model.save_pretrained(again)
    tok.save_pretrained(again)
    _assert_complete(again)


def test_trainer_save_model_is_complete(built):
    from transformers import TrainingArguments

    from cobra_hf.training import CobraDataCollator, CobraTrainer, index_splits

    model, tok = built["model"], built["tokenizer"]
    splits = index_splits(built["data"], tok, max_history=model.config.max_history)
    args = TrainingArguments(output_dir=str(built["root"] / "trainer"), max_steps=1, per_device_train_batch_size=8,
                             save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True)
    trainer = CobraTrainer(model=model, args=args, train_dataset=splits["train"], processing_class=tok,
                           data_collator=CobraDataCollator(tok, max_items=model.config.max_history + 1))
    trainer.train()
    model.eval()
    trainer.save_model(str(built["root"] / "trainer"))
    _assert_complete(built["root"] / "trainer")


def _example(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"integrity_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_training_and_finetuning_examples_save_complete_checkpoints(built, capsys):
    trained, tuned = built["root"] / "example_trained", built["root"] / "example_tuned"
    _example("train_with_trainer").main(["--catalog", str(built["catalog"]), "--data", str(built["data"]), "--output",
                                         str(trained), "--max-steps", "1", "--batch-size", "8", "--hidden-size", "32",
                                         "--eval-users", "5"])
    _assert_complete(trained)
    _example("finetune").main(["--model", str(trained), "--data", str(built["data"]), "--output", str(tuned),
                               "--max-steps", "1", "--batch-size", "8"])
    _assert_complete(tuned)
