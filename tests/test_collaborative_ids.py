"""Catalogs whose IDs come from residual k-means: over the sentence embeddings (`--quantizer rq-kmeans`) or over the
item vectors a trained checkpoint learned (`--ids-from MODEL`, collaborative IDs)."""

import json

import pytest
import torch

from conftest import COLD_FAST, COLD_MODEL, data_make_folder

from cobra_hf.cli.main import main as cli_main
from cobra_hf.hub.checkpoint import save_checkpoint
from cobra_hf.inference import load_checkpoint
from cobra_hf.semantic_ids import build_catalog
from cobra_hf.semantic_ids.catalog import rq_kmeans_codes
from cobra_hf.tokenization_cobra import CobraTokenizer
from cobra_hf.training.model_builder import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = {k: v for k, v in COLD_FAST.items() if k not in ("num_levels", "codebook_size")}


@pytest.fixture(scope="module")
def stage_one(tmp_path_factory, data_tiny_encoder):
    """A dataset, its text catalog and a (untrained, seeded) model checkpoint on it: the first stage."""
    root = tmp_path_factory.mktemp("collab")
    data = data_make_folder(root / "data", num_items=60, num_users=40)
    catalog = build_catalog(data, root / "catalog", encoder=data_tiny_encoder, max_text_tokens=8,
                            cache_dir=root / "cache", num_levels=2, codebook_size=8, **FAST)
    model, tokenizer = build_model(catalog, init_text_embeddings=False, use_item_embeddings=True, **COLD_MODEL)
    checkpoint = save_checkpoint(model, tokenizer, root / "model", catalog_dir=catalog)
    return {"root": root, "data": data, "encoder": data_tiny_encoder, "checkpoint": checkpoint}


def test_ids_from_a_model_are_the_rq_kmeans_codes_of_its_item_vectors(stage_one):
    root = stage_one["root"]
    out = build_catalog(stage_one["data"], root / "collab", encoder=stage_one["encoder"], max_text_tokens=8,
                        cache_dir=root / "cache", num_levels=2, codebook_size=4, dedup_level=True,
                        ids_from=stage_one["checkpoint"], **FAST)
    tokenizer = CobraTokenizer.from_pretrained(str(out))
    model, source = load_checkpoint(str(stage_one["checkpoint"]))
    order = torch.tensor([source.item_to_index[item] for item in tokenizer.item_ids])
    expected, sizes, _ = rq_kmeans_codes(model.all_item_vectors()[order], 2, 4, True, seed=0)
    assert tokenizer.level_sizes == sizes and sizes[:2] == [4, 4]
    codes = torch.tensor([tokenizer.semantic_id(item) for item in tokenizer.item_ids])
    assert torch.equal(codes, expected)
    assert torch.unique(codes, dim=0).shape[0] == len(codes)  # the collision level makes every ID unique
    prepare = json.loads((out / "prepare_args.json").read_text())
    assert prepare["quantizer"] == "rq-kmeans" and prepare["ids_from"] == str(stage_one["checkpoint"])
    assert not (out / "quantizer").exists()
    # the second stage trains on it like on any catalog
    model2, tokenizer2 = build_model(out, init_text_embeddings=False, **COLD_MODEL)
    assert model2.config.level_sizes == sizes


def test_rq_kmeans_over_text_and_the_cli(stage_one, capsys):
    root = stage_one["root"]
    assert cli_main(["prepare", str(stage_one["data"]), "--output", str(root / "rqk"), "--encoder",
                     str(stage_one["encoder"]), "--cache-dir", str(root / "cache"), "--quantizer", "rq-kmeans",
                     "--levels", "2", "--codebook-size", "8", "--max-text-tokens", "8", "--quiet"]) == 0
    stats = json.loads((root / "rqk" / "stats.json").read_text())
    assert stats["codebook_sizes"] == [8, 8] and stats["codes_used"] == [8, 8]


def test_rq_kmeans_catalog_takes_new_items(stage_one, tmp_path, capsys):
    """A text rq-kmeans catalog keeps its codebooks (catalog/quantizer), so add-items gives new items the IDs the
    catalog's own items would get: an item added again under a new id gets its twin's first codes."""
    from cobra_hf.semantic_ids.rq_kmeans import RQKMeans

    root = stage_one["root"]
    catalog = build_catalog(stage_one["data"], tmp_path / "rqk", encoder=stage_one["encoder"], max_text_tokens=8,
                            cache_dir=root / "cache", num_levels=2, codebook_size=4, dedup_level=True,
                            quantizer="rq-kmeans", **FAST)
    model, tokenizer = build_model(catalog, init_text_embeddings=False, **COLD_MODEL)
    checkpoint = save_checkpoint(model, tokenizer, tmp_path / "model", catalog_dir=catalog)
    from cobra_hf.semantic_ids.assets import load_catalog_assets

    assert isinstance(load_catalog_assets(checkpoint).quantizer, RQKMeans)
    rows = [json.loads(line) for line in (catalog / "items.jsonl").read_text().splitlines()[:3]]
    twins = [{**row, "item_id": row["item_id"] + "-twin"} for row in rows]
    items = tmp_path / "new.jsonl"
    items.write_text("".join(json.dumps(row) + "\n" for row in twins))
    assert cli_main(["add-items", str(checkpoint), str(items), "--output", str(tmp_path / "grown")]) == 0
    _, grown = load_checkpoint(str(tmp_path / "grown"))
    for row in rows:
        old, new = grown.semantic_id(row["item_id"]), grown.semantic_id(row["item_id"] + "-twin")
        assert new[:2] == old[:2] and new[2] > old[2]  # same codes, the next free collision code


def test_ids_from_catalog_refuses_new_items_in_one_line(stage_one, tmp_path, capsys):
    root = stage_one["root"]
    catalog = build_catalog(stage_one["data"], tmp_path / "collab", encoder=stage_one["encoder"], max_text_tokens=8,
                            cache_dir=root / "cache", num_levels=2, codebook_size=4, dedup_level=True,
                            ids_from=stage_one["checkpoint"], **FAST)
    model, tokenizer = build_model(catalog, init_text_embeddings=False, **COLD_MODEL)
    checkpoint = save_checkpoint(model, tokenizer, tmp_path / "model")  # as training saves it
    items = tmp_path / "new.jsonl"
    items.write_text(json.dumps({"item_id": "fresh", "title": "a new thing"}) + "\n")
    capsys.readouterr()
    assert cli_main(["add-items", str(checkpoint), str(items), "--output", str(tmp_path / "grown")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--ids-from" in err and "learned item vectors" in err
    assert not (tmp_path / "grown").exists()


def test_ids_from_a_model_of_other_items_is_refused(stage_one, tmp_path, capsys):
    other = data_make_folder(tmp_path / "other", num_items=70, num_users=40, seed=3)
    code = cli_main(["prepare", str(other), "--output", str(tmp_path / "cat"), "--encoder", str(stage_one["encoder"]),
                     "--ids-from", str(stage_one["checkpoint"]), "--levels", "2", "--codebook-size", "4",
                     "--max-text-tokens", "8", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "--ids-from" in err and "not in that model's catalog" in err and len(err.strip().splitlines()) == 1
