"""A checkpoint folder is the product: exact save/load, the files it must hold, loading where cobra_hf is not importable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
from tiny import random_histories, tiny_catalog  # noqa: E402

import cobra_hf  # noqa: E402,F401  (registers the Auto classes)
from cobra_hf import CobraConfig, CobraForSequentialRecommendation, CobraTokenizer  # noqa: E402

LEVELS = (4, 4, 3)
CODE_FILES = ("configuration_cobra.py", "modeling_cobra.py", "cobra_layers.py", "cobra_generation.py", "cobra_fusion.py",
              "cobra_catalog_index.py", "cobra_losses.py", "legacy_keys.py", "cobra_backbone.py", "cobra_id_trunk.py")
HISTORIES = random_histories(40, 6, max_len=7, seed=21)
GENERATE_ARGS = dict(num_beams=6, top_k=5, num_candidates=3)


def generate_json(model, tok) -> dict:
    out = model.generate(**tok(HISTORIES), **GENERATE_ARGS)
    return {
        "items": tok.batch_decode_items(out),
        "item_indices": out.item_indices.tolist(),
        "scores": out.scores.tolist(),
        "semantic_ids": out.semantic_ids.tolist(),
        "beam_scores": out.beam_scores.tolist(),
        "beam_vectors": out.beam_vectors.tolist(),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny trained-looking model saved with its tokenizer; returns (folder, model, tokenizer)."""
    item_ids, codes, text, titles = tiny_catalog(40, LEVELS)
    tok = CobraTokenizer.from_items(item_ids, codes, titles, list(LEVELS), max_history=8)
    config = CobraConfig(level_sizes=list(LEVELS), num_items=40, text_vocab_size=30, max_text_tokens=8, hidden_size=32,
                         num_attention_heads=2, intermediate_size=64, max_history=8, text_embedding_dim=5,
                         history_dense_loss_weight=0.5)
    model = CobraForSequentialRecommendation(config)
    embeddings = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    model.set_catalog(codes, text, embeddings, tok.catalog_hash)
    with torch.no_grad():  # non-default values everywhere (LayerNorms included)
        gen = torch.Generator().manual_seed(1)
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=gen))
    model.eval()
    folder = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, model, tok


def test_folder_contents(saved):
    folder, model, _ = saved
    names = set(os.listdir(folder))
    for name in ("config.json", "model.safetensors", "generation_config.json", "item_catalog.json",
                 "tokenizer_config.json", "tokenization_cobra.py", *CODE_FILES):
        assert name in names, name
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "cobra"
    assert config["auto_map"]["AutoConfig"] == "configuration_cobra.CobraConfig"
    assert config["auto_map"]["AutoModel"] == "modeling_cobra.CobraForSequentialRecommendation"
    assert config["catalog_hash"] == model.config.catalog_hash != ""
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["do_sample"] is False
    assert generation["num_beams"] == model.generation_config.num_beams
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tok_config["auto_map"]["AutoTokenizer"][0] == "tokenization_cobra.CobraTokenizer"
    # the saved code is flat: no absolute or package-level imports of cobra_hf that remote code could not resolve
    for name in (*CODE_FILES, "tokenization_cobra.py"):
        text = (folder / name).read_text()
        assert "import cobra_hf" not in text and "from cobra_hf" not in text, name
        assert "from . import" not in text, name
    # the catalog buffers are saved
    tensors = load_file(folder / "model.safetensors")
    for name in ("item_codes", "item_text_ids", "item_text_embeddings"):
        assert f"model.{name}" in tensors, name  # in the backbone, CobraModel (base_model_prefix "model")
    assert "level_offsets" not in tensors  # derived, not persistent


def test_reload_bit_identical(saved):
    from transformers import AutoModel, AutoTokenizer

    folder, model, tok = saved
    expected = generate_json(model, tok)
    for loaded in (CobraForSequentialRecommendation.from_pretrained(folder), AutoModel.from_pretrained(folder)):
        assert isinstance(loaded, CobraForSequentialRecommendation)
        assert not loaded.training, "from_pretrained must return an eval-mode model"
        a, b = model.state_dict(), loaded.state_dict()
        assert set(a) == set(b)
        for name in a:
            assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
        assert loaded.generation_config.do_sample is False
        assert generate_json(loaded, tok) == expected
    loaded_tok = AutoTokenizer.from_pretrained(folder)
    assert isinstance(loaded_tok, CobraTokenizer) and loaded_tok.catalog_hash == tok.catalog_hash
    assert loaded_tok.catalog_hash == model.config.catalog_hash
    assert generate_json(model, loaded_tok) == expected


FRESH_PROCESS = r"""
import importlib.abc, json, sys
sys.path[:] = [p for p in sys.path if not p.startswith(REPO + "/src") and p not in ("", ".", REPO)]

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "cobra_hf" or name.startswith("cobra_hf."):
            raise ImportError("cobra_hf is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
try:
    import cobra_hf  # noqa
    raise SystemExit("cobra_hf is still importable")
except ImportError:
    pass
from transformers import AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained(FOLDER, trust_remote_code=True)
model = AutoModel.from_pretrained(FOLDER, trust_remote_code=True)
assert "cobra_hf" not in sys.modules
model.eval()
out = model.generate(**tok(HISTORIES), **ARGS)
print("RESULT" + json.dumps({
    "module": type(model).__module__, "tok_module": type(tok).__module__,
    "items": tok.batch_decode_items(out), "item_indices": out.item_indices.tolist(), "scores": out.scores.tolist(),
    "semantic_ids": out.semantic_ids.tolist(), "beam_scores": out.beam_scores.tolist(),
    "beam_vectors": out.beam_vectors.tolist(),
}))
"""


def test_fresh_process_without_cobra_hf(saved, tmp_path):
    folder, model, tok = saved
    expected = generate_json(model, tok)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        f"REPO = {repo!r}\nFOLDER = {str(folder)!r}\nHISTORIES = {HISTORIES!r}\nARGS = {GENERATE_ARGS!r}\n" + FRESH_PROCESS
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "PYTHON", "TRANSFORMERS"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONNOUSERSITE="1", HF_HUB_DISABLE_TELEMETRY="1")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT"))
    result = json.loads(line[len("RESULT"):])
    assert result.pop("module").startswith("transformers_modules")
    assert result.pop("tok_module").startswith("transformers_modules")
    assert result == expected  # bit-exact: floats go through JSON as their shortest exact repr


def test_truncated_weights_raise(saved, tmp_path):
    from transformers import AutoModel

    folder, _, _ = saved
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in os.listdir(folder):
        data = (folder / name).read_bytes()
        if name == "model.safetensors":
            data = data[: len(data) // 2]
        (broken / name).write_bytes(data)
    # transformers/safetensors raise SafetensorError("Error while deserializing header: incomplete metadata, file not
    # fully covered"): an error, though it does not name the file.
    with pytest.raises(Exception, match="deserializ|truncat|corrupt|model.safetensors") as err:
        AutoModel.from_pretrained(broken)
    assert not isinstance(err.value, (AssertionError, KeyError))


def test_mismatched_catalog_refused_after_load(saved, tmp_path):
    """A tokenizer saved with a changed catalog cannot drive the saved model."""
    folder, model, tok = saved
    other = CobraTokenizer.from_items(tok.item_ids, (torch.from_numpy(tok.item_codes) + 1) % torch.tensor(LEVELS),
                                      tok.titles, list(LEVELS))
    assert other.catalog_hash != model.config.catalog_hash
    with pytest.raises(ValueError, match="different catalogs"):
        model.generate(**other([["i1", "i2", "i3"]]), top_k=3)
