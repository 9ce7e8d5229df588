"""New items without retraining (cobra_hf.cold_start, cobra_hf.semantic_ids.assets, `cobra-hf add-items`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cobra_hf.cold_start import add_items, dedup_new_codes
from cobra_hf.hub.checkpoint import save_checkpoint
from cobra_hf.inference import check_compatible, load_checkpoint
from cobra_hf.semantic_ids import embed_texts, tokenize_with_vocab
from cobra_hf.semantic_ids.assets import ASSETS_DIR, load_catalog_assets
from cobra_hf.semantic_ids.embeddings import load_encoder_tokenizer

from conftest import COLD_FAST as FAST, COLD_MODEL as MODEL  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cold(tmp_path_factory, data_tiny_encoder):
    """A tiny catalog with 10% of the items held out and an untrained model's checkpoint on it."""
    from conftest import make_cold_start

    return make_cold_start(tmp_path_factory.mktemp("cold"), data_tiny_encoder)


def _load(cold):
    return load_checkpoint(str(cold["checkpoint"]))


def test_checkpoint_carries_quantizer_and_text_vocabulary(cold):
    folder = cold["checkpoint"] / ASSETS_DIR
    assert (folder / "quantizer" / "config.json").is_file() and (folder / "quantizer" / "model.safetensors").is_file()
    vocab = json.loads((folder / "item_text_vocab.json").read_text())
    assert vocab["encoder"] == str(cold["encoder"]) and vocab["max_text_tokens"] == 8
    from safetensors.torch import load_file

    source = load_file(str(cold["catalog"] / "item_text.safetensors"))["source_token_ids"]
    assert vocab["source_token_ids"] == source.tolist()


def test_new_items_get_the_quantizer_ids_and_the_compact_text(cold):
    model, tokenizer = _load(cold)
    before = tokenizer.num_items
    items = cold["heldout"]
    indices = add_items(model, tokenizer, items, cold["checkpoint"])
    assert indices == list(range(before, before + len(items)))
    assets = load_catalog_assets(cold["checkpoint"])
    texts = [item["text"] for item in items]  # build_catalog stored the flattened text it embedded
    expected = assets.quantizer.encode(embed_texts(texts, cold["encoder"], show_progress=False, max_length=64))
    assert torch.equal(model.item_codes[before:], expected)
    assert np.array_equal(tokenizer.item_codes[before:], expected.numpy())
    text = tokenize_with_vocab(texts, load_encoder_tokenizer(cold["encoder"]), assets.source_token_ids, 8)
    assert torch.equal(model.item_text_ids[before:, : text.shape[1]], text)
    assert model.config.num_items == tokenizer.num_items == before + len(items)
    assert model.config.catalog_hash == tokenizer.catalog_hash
    check_compatible(model, tokenizer)
    batch = tokenizer([[items[0]["item_id"], tokenizer.item_ids[0]]])  # histories may hold new items
    assert model.generate(**batch, top_k=5).item_indices.shape == (1, 5)


def test_catalog_folder_and_checkpoint_assets_agree(cold):
    from_checkpoint = load_catalog_assets(cold["checkpoint"])
    from_catalog = load_catalog_assets(cold["catalog"])
    x = torch.randn(7, from_catalog.quantizer.config.input_dim)
    assert torch.equal(from_checkpoint.quantizer.encode(x), from_catalog.quantizer.encode(x))
    assert torch.equal(from_checkpoint.source_token_ids, from_catalog.source_token_ids)


def test_bad_items_are_refused_and_nothing_changes(cold):
    model, tokenizer = _load(cold)
    hash_before, items_before = tokenizer.catalog_hash, model.config.num_items
    known = {"item_id": tokenizer.item_ids[3], "title": "again"}
    with pytest.raises(ValueError, match=tokenizer.item_ids[3]):
        add_items(model, tokenizer, [cold["heldout"][0], known], cold["checkpoint"])
    with pytest.raises(ValueError, match="no 'title'"):
        add_items(model, tokenizer, [{"item_id": "NEW1"}], cold["checkpoint"])
    with pytest.raises(ValueError, match="no 'item_id'"):
        add_items(model, tokenizer, [{"title": "red pen"}], cold["checkpoint"])
    with pytest.raises(ValueError, match="more than once"):
        add_items(model, tokenizer, [{"item_id": "N", "title": "a"}, {"item_id": "N", "title": "b"}], cold["checkpoint"])
    with pytest.raises(FileNotFoundError, match="item_text_vocab.json"):
        add_items(model, tokenizer, [{"item_id": "N", "title": "a"}], cold["root"])
    assert tokenizer.catalog_hash == hash_before and model.config.num_items == items_before


def test_python_items_read_like_items_jsonl_rows(cold, tmp_path, monkeypatch):
    """add_items(items=[dict]) reads each dict as load_items reads an items.jsonl row: a string category, a dict of
    attributes and nested lists give the same text (hence embedding and ID) as `cobra-hf add-items` gives that row;
    an id with whitespace is refused (no history string could name it)."""
    import json

    import cobra_hf.cold_start as cold_start
    from cobra_hf.cold_start import load_items_jsonl
    from cobra_hf.data.item_text import item_text

    model, tokenizer = _load(cold)
    row = {"item_id": "N1", "title": " balm ", "categories": "Beauty", "attributes": {"color": "red", "size": None},
           "brand": 7}
    seen = []

    def capture(texts, *args, **kwargs):
        seen.extend(texts)
        raise RuntimeError("stop after the texts")

    monkeypatch.setattr(cold_start, "embed_texts", capture)
    with pytest.raises(RuntimeError, match="stop after the texts"):
        add_items(model, tokenizer, [row], cold["checkpoint"])
    (tmp_path / "items.jsonl").write_text(json.dumps(row) + "\n")
    assets = cold_start.load_catalog_assets(cold["checkpoint"])
    from_file = item_text(load_items_jsonl(tmp_path / "items.jsonl")[0], max_description_chars=assets.max_description_chars)
    assert seen[0] == from_file
    assert "categories: Beauty" in seen[0] and "color: red" in seen[0] and "B > e" not in seen[0]
    with pytest.raises(ValueError, match="contains whitespace"):
        add_items(model, tokenizer, [{"item_id": "A B", "title": "x"}], cold["checkpoint"])


def _favour(model, index: int) -> None:
    """Make the model predict item `index`: its codes get the top logits, every beam's dense vector is its vector."""
    codes = model.item_codes[index]
    with torch.no_grad():
        for level, head in enumerate(model.sparse_head):
            head.weight.zero_()
            head.bias.fill_(-5.0)
            head.bias[codes[level]] = 5.0
        model.dense_head.weight.zero_()
        model.dense_head.bias.copy_(model.all_item_vectors(normalized=False)[index])


@pytest.mark.parametrize("mode", ["cobra", "sparse", "no_fusion"])
def test_new_item_is_recommended_when_favoured(cold, mode):
    model, tokenizer = _load(cold)
    indices = add_items(model, tokenizer, cold["heldout"], cold["checkpoint"])
    target = indices[-1]
    _favour(model, target)
    sharing = int((model.item_codes == model.item_codes[target]).all(1).sum())
    batch = tokenizer([[tokenizer.item_ids[0], tokenizer.item_ids[5]]])
    out = model.generate(**batch, top_k=max(5, sharing), mode=mode)
    assert target in out.item_indices[0].tolist()
    if mode != "sparse":  # sparse ranks the items of one ID in catalog order: the new item comes last
        assert int(out.item_indices[0, 0]) == target


def test_save_and_reload_keeps_the_new_items(cold, tmp_path):
    model, tokenizer = _load(cold)
    add_items(model, tokenizer, cold["heldout"], cold["checkpoint"])
    new_id = cold["heldout"][0]["item_id"]
    batch = tokenizer([[new_id, tokenizer.item_ids[1]], [tokenizer.item_ids[2]]])
    expected = model.generate(**batch, top_k=8)
    save_checkpoint(model, tokenizer, tmp_path / "grown", catalog_dir=cold["checkpoint"])
    model2, tokenizer2 = load_checkpoint(str(tmp_path / "grown"))
    assert tokenizer2.num_items == tokenizer.num_items and tokenizer2.catalog_hash == model2.config.catalog_hash
    assert tokenizer2.semantic_id(new_id) == tokenizer.semantic_id(new_id)
    assert torch.equal(model2.item_text_ids, model.item_text_ids)
    got = model2.generate(**tokenizer2([[new_id, tokenizer.item_ids[1]], [tokenizer.item_ids[2]]]), top_k=8)
    assert torch.equal(got.item_indices, expected.item_indices)
    assert (tmp_path / "grown" / ASSETS_DIR / "item_text_vocab.json").is_file()  # can grow again


def test_item_embeddings_grow_with_zero_rows(data_tiny_encoder, cold, tmp_path):
    from cobra_hf.training.model_builder import build_model

    model, tokenizer = build_model(cold["catalog"], init_text_embeddings=False, use_item_embeddings=True,
                                   use_text_embeddings=True, **MODEL)
    before = tokenizer.num_items
    learned = model.model.item_embed.weight.detach().clone()
    add_items(model, tokenizer, cold["heldout"][:2], cold["catalog"], item_embeddings="zeros")
    assert model.model.item_embed.num_embeddings == before + 2
    assert torch.equal(model.model.item_embed.weight[:before], learned) and not model.model.item_embed.weight[before:].any()
    assert model.item_text_embeddings.shape == (before + 2, 16)
    check_compatible(model, tokenizer)


@pytest.mark.parametrize("id_trunk", [False, True], ids=["one-backbone", "id-trunk"])
def test_new_item_embeddings_start_from_their_id_neighbours(data_tiny_encoder, cold, id_trunk):
    """Each backbone's item embedding (an ID trunk has its own) gives a new item the mean row of its ID neighbours."""
    from cobra_hf.training.model_builder import build_model

    model, tokenizer = build_model(cold["catalog"], init_text_embeddings=False, use_item_embeddings=True,
                                   id_trunk=id_trunk, **MODEL)
    assert len(model.backbones()) == 1 + id_trunk
    before = tokenizer.num_items
    with torch.no_grad():
        for backbone in model.backbones():
            backbone.item_embed.weight.normal_()
    learned = [backbone.item_embed.weight.detach().clone() for backbone in model.backbones()]
    new = add_items(model, tokenizer, cold["heldout"][:3], cold["catalog"])  # default: "id_neighbours"
    old_codes = model.item_codes[:before]
    for backbone, rows in zip(model.backbones(), learned):
        assert torch.equal(backbone.item_codes, model.item_codes)
        for index in new:
            code = model.item_codes[index]
            for depth in range(code.shape[0], 0, -1):  # the longest shared prefix, by hand
                same = (old_codes[:, :depth] == code[:depth]).all(1)
                if same.any():
                    assert torch.allclose(backbone.item_embed.weight[index], rows[same].mean(0), atol=1e-6)
                    break
            else:
                assert not backbone.item_embed.weight[index].any()
        assert torch.equal(backbone.item_embed.weight[:before], rows)
    with pytest.raises(ValueError, match="item_embeddings"):
        add_items(model, tokenizer, cold["heldout"][3:4], cold["catalog"], item_embeddings="random")


def test_id_neighbour_rows_prefers_the_longest_shared_prefix():
    from cobra_hf.cold_start import id_neighbour_rows

    rows = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0], [0.0, 7.0]])
    codes = torch.tensor([[0, 1, 2], [0, 1, 2], [0, 2, 0], [1, 0, 0]])
    new = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 3, 3], [2, 0, 0]])
    got = id_neighbour_rows(rows, codes, new, [3, 4, 4])
    # whole ID -> mean of items 0, 1; two codes -> the same two; one code -> items 0, 1, 2; no shared code -> zero
    assert torch.allclose(got, torch.tensor([[2.0, 0.0], [2.0, 0.0], [4.0 / 3, 5.0 / 3], [0.0, 0.0]]))


def test_dedup_collision_codes_continue_after_the_catalog():
    existing = np.array([[0, 1, 0], [0, 1, 1], [2, 2, 0]])
    got = dedup_new_codes(existing, torch.tensor([[0, 1], [3, 3], [0, 1], [2, 2]]), level_size=4)
    assert got.tolist() == [[0, 1, 2], [3, 3, 0], [0, 1, 3], [2, 2, 1]]
    shared = dedup_new_codes(existing, torch.tensor([[0, 1], [0, 1]]), level_size=3)
    assert shared.tolist() == [[0, 1, 2], [0, 1, 2]]  # the level is full: the second shares an ID
    with pytest.raises(ValueError, match="collision code 3"):
        dedup_new_codes(existing, torch.tensor([[0, 1], [0, 1]]), level_size=3, on_overflow="error")


# ------------------------------------------------------------------------------------------------------ CLI
def _write_items(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cli_writes_a_new_folder_and_refuses_a_non_empty_one(cold, tmp_path, capsys):
    from cobra_hf.cli.main import main

    items = _write_items(tmp_path / "new.jsonl", cold["heldout"][:3])
    before = _snapshot(cold["checkpoint"])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert main(["add-items", str(cold["checkpoint"]), str(items), "--output", str(busy)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert (busy / "mine.txt").read_text() == "keep me" and len(list(busy.iterdir())) == 1

    out = tmp_path / "grown"
    assert main(["add-items", str(cold["checkpoint"]), str(items), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Added 3 items" in printed and all(row["item_id"] in printed for row in cold["heldout"][:3])
    model, tokenizer = load_checkpoint(str(out))
    assert all(row["item_id"] in tokenizer.item_to_index for row in cold["heldout"][:3])
    assert _snapshot(cold["checkpoint"]) == before  # the source checkpoint is untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_in_place_swaps_and_leaves_no_temp_folder(cold, tmp_path, capsys):
    import shutil

    from cobra_hf.cli.main import main

    model_dir = tmp_path / "model"
    shutil.copytree(cold["checkpoint"], model_dir)
    items = _write_items(tmp_path / "new.jsonl", cold["heldout"][:2])
    assert main(["add-items", str(model_dir), str(items), "--in-place"]) == 0
    model, tokenizer = load_checkpoint(str(model_dir))
    assert cold["heldout"][1]["item_id"] in tokenizer.item_to_index
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "new.jsonl"]
    # adding them again is refused, and the checkpoint stays as it was
    before = _snapshot(model_dir)
    assert main(["add-items", str(model_dir), str(items), "--in-place"]) == 1
    assert "already in the catalog" in capsys.readouterr().err
    assert _snapshot(model_dir) == before


def test_cli_failure_while_saving_keeps_the_old_checkpoint(cold, tmp_path, monkeypatch):
    import shutil

    import cobra_hf.hub.checkpoint as checkpoint_module
    from cobra_hf.cli.main import main

    model_dir = tmp_path / "model"
    shutil.copytree(cold["checkpoint"], model_dir)
    before = _snapshot(model_dir)
    items = _write_items(tmp_path / "new.jsonl", cold["heldout"][:2])

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "write_model_card", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["add-items", str(model_dir), str(items), "--in-place"])
    assert _snapshot(model_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "new.jsonl"]


def test_training_saves_the_catalog_assets(cold, tmp_path):
    from cobra_hf.training.train import parse_args, run_training

    cobra_args, training_args = parse_args([
        "--catalog", str(cold["catalog"]), "--output_dir", str(tmp_path / "run"), "--max_steps", "2",
        "--hidden_size", "32", "--num_attention_heads", "2", "--intermediate_size", "64", "--max_history", "8",
        "--per_device_train_batch_size", "16", "--eval_strategy", "no", "--save_strategy", "no",
        "--eval_users", "0", "--disable_tqdm", "True", "--use_cpu", "True", "--init_text_embeddings", "False",
    ])
    run_training(cobra_args, training_args)
    assets = load_catalog_assets(tmp_path / "run")
    model, tokenizer = load_checkpoint(str(tmp_path / "run"))
    assert add_items(model, tokenizer, cold["heldout"][:1], assets) == [tokenizer.num_items - 1]


def test_add_items_refuses_another_encoder_of_the_same_width(cold, tmp_path):
    """An encoder folder of the same width as the catalog's but other weights (another model) would quantize the
    new items in another space: refused, naming --encoder, and the model and tokenizer are unchanged."""
    import torch
    from transformers import BertModel

    other = tmp_path / "other_encoder"
    shutil.copytree(cold["encoder"], other)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        BertModel(BertModel.from_pretrained(str(cold["encoder"])).config).save_pretrained(str(other))
    model, tokenizer = load_checkpoint(str(cold["checkpoint"]))
    before = (tokenizer.catalog_hash, model.item_codes.clone())
    assets = load_catalog_assets(cold["checkpoint"])
    assert assets.encoder_signature is not None
    with pytest.raises(ValueError, match="embeds text unlike the one the catalog was made with.*--encoder"):
        add_items(model, tokenizer, cold["heldout"][:2], assets, encoder=other)
    assert tokenizer.catalog_hash == before[0] and torch.equal(model.item_codes, before[1])
    assert add_items(model, tokenizer, cold["heldout"][:2], assets, encoder=cold["encoder"])  # its own encoder


def test_prepare_records_a_relative_encoder_as_the_folder_it_named(cold, tmp_path, monkeypatch, capsys):
    """`prepare --encoder enc` from the encoder's parent folder: the catalog records the folder itself, so train and
    add-items run from anywhere else still find it (they read the recorded path)."""
    from cobra_hf.cli.main import main

    encoder = Path(cold["encoder"]).resolve()
    monkeypatch.chdir(encoder.parent)
    assert main(["prepare", str(cold["data"]), "--output", str(tmp_path / "cat"), "--encoder", encoder.name,
                 "--levels", "2", "--codebook-size", "8", "--epochs", "2", "--max-text-tokens", "8", "--quiet"]) == 0
    assert json.loads((tmp_path / "cat" / "prepare_args.json").read_text())["encoder"] == str(encoder)
    monkeypatch.chdir(tmp_path)
    assert load_catalog_assets(tmp_path / "cat").encoder_path() == str(encoder)
