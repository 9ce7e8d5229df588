"""Checkpoints saved before the backbone/head split (every backbone tensor at the top level of the state dict, e.g.
`item_codes`, `decoder.blocks.0.attn.qkv.weight`) load into today's layout (`model.item_codes`, ...) and recommend
exactly what they recommended then.

The weights are filled deterministically in the order of the OLD key names, and the expected item_indices and scores
were produced by the code before the split (commit 3243f0d) from the same weights, so this test pins both the key
mapping and the behaviour of every decoding mode.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from tiny import random_histories, tiny_model  # noqa: E402

from cobra_hf import CobraForSequentialRecommendation  # noqa: E402

# the state-dict keys of tiny_model(use_item_embeddings=True) as the code before the split saved them
OLD_KEYS = [
    'code_embed.weight', 'decoder.blocks.0.attn.out.bias', 'decoder.blocks.0.attn.out.weight',
    'decoder.blocks.0.attn.qkv.bias', 'decoder.blocks.0.attn.qkv.weight', 'decoder.blocks.0.mlp.down.bias',
    'decoder.blocks.0.mlp.down.weight', 'decoder.blocks.0.mlp.up.bias', 'decoder.blocks.0.mlp.up.weight',
    'decoder.blocks.0.norm1.bias', 'decoder.blocks.0.norm1.weight', 'decoder.blocks.0.norm2.bias',
    'decoder.blocks.0.norm2.weight', 'decoder.blocks.1.attn.out.bias', 'decoder.blocks.1.attn.out.weight',
    'decoder.blocks.1.attn.qkv.bias', 'decoder.blocks.1.attn.qkv.weight', 'decoder.blocks.1.mlp.down.bias',
    'decoder.blocks.1.mlp.down.weight', 'decoder.blocks.1.mlp.up.bias', 'decoder.blocks.1.mlp.up.weight',
    'decoder.blocks.1.norm1.bias', 'decoder.blocks.1.norm1.weight', 'decoder.blocks.1.norm2.bias',
    'decoder.blocks.1.norm2.weight', 'decoder.norm.bias', 'decoder.norm.weight', 'dense_head.bias',
    'dense_head.weight', 'dense_in.bias', 'dense_in.weight', 'embed_norm.bias', 'embed_norm.weight',
    'history_dense_head.bias', 'history_dense_head.weight', 'item_codes', 'item_embed.weight',
    'item_encoder.blocks.0.attn.out.bias', 'item_encoder.blocks.0.attn.out.weight',
    'item_encoder.blocks.0.attn.qkv.bias', 'item_encoder.blocks.0.attn.qkv.weight',
    'item_encoder.blocks.0.mlp.down.bias', 'item_encoder.blocks.0.mlp.down.weight',
    'item_encoder.blocks.0.mlp.up.bias', 'item_encoder.blocks.0.mlp.up.weight', 'item_encoder.blocks.0.norm1.bias',
    'item_encoder.blocks.0.norm1.weight', 'item_encoder.blocks.0.norm2.bias', 'item_encoder.blocks.0.norm2.weight',
    'item_encoder.embed_norm.bias', 'item_encoder.embed_norm.weight', 'item_encoder.norm.bias',
    'item_encoder.norm.weight', 'item_encoder.position_embed.weight', 'item_encoder.proj.bias',
    'item_encoder.proj.weight', 'item_encoder.token_embed.weight', 'item_encoder.type_embed.weight', 'item_text_ids',
    'position_embed.weight', 'sparse_head.0.bias', 'sparse_head.0.weight', 'sparse_head.1.bias',
    'sparse_head.1.weight', 'sparse_head.2.bias', 'sparse_head.2.weight', 'type_embed.weight',
]
HEAD_KEYS = [k for k in OLD_KEYS if k.split(".")[0] in ("sparse_head", "dense_head", "history_dense_head")]
SETTINGS = {
    "cobra": dict(mode="cobra", num_beams=4, num_candidates=2, top_k=5),
    "joint_guided": dict(mode="cobra", beam_fusion="joint", dense_guided_ids=3, beam_fusion_dense_psi=2.0, num_beams=4,
                         top_k=5),
    "dense": dict(mode="dense", top_k=5),
    "sparse": dict(mode="sparse", num_beams=4, top_k=5),
    "no_fusion": dict(mode="no_fusion", top_k=5),
}
# generate(**SETTINGS[mode]) of the pre-split code: (item_indices, scores rounded to 6 decimals)
EXPECTED = {
    "cobra": (
        [[16, 18, 33, 29, 31], [16, 18, 33, 15, 31], [16, 18, 29, 15, 31], [16, 18, 33, 29, 31]],
        [[0.231482, 0.174981, 0.164431, 0.147379, 0.143055], [0.241108, 0.183405, 0.165807, 0.142127, 0.137092], [0.244832, 0.169935, 0.154926, 0.152799, 0.143176], [0.232066, 0.181586, 0.172905, 0.147597, 0.134823]],
    ),
    "joint_guided": (
        [[16, 36, 31, 3, 12], [16, 36, 31, 12, 33], [16, 36, 31, 12, 3], [16, 36, 31, 12, 3]],
        [[0.289081, 0.194663, 0.101721, 0.090825, 0.089696], [0.319672, 0.203012, 0.086562, 0.081907, 0.067904], [0.385875, 0.176125, 0.088382, 0.081973, 0.074786], [0.301871, 0.183097, 0.09585, 0.093945, 0.08327]],
    ),
    "dense": (
        [[34, 32, 36, 17, 6], [34, 32, 36, 17, 6], [34, 32, 36, 17, 6], [34, 32, 36, 17, 6]],
        [[0.251658, 0.224878, 0.224067, 0.214941, 0.181484], [0.25187, 0.225066, 0.22143, 0.199245, 0.177508], [0.248579, 0.226534, 0.221984, 0.207965, 0.186432], [0.264288, 0.2315, 0.225493, 0.217846, 0.188439]],
    ),
    "sparse": (
        [[15, 29, 33, 3, 12], [15, 29, 33, 3, 12], [15, 29, 33, 3, 12], [15, 29, 33, 3, 12]],
        [[0.125739, 0.125739, 0.125739, 0.112335, 0.112335], [0.121507, 0.121507, 0.121507, 0.103937, 0.103937], [0.124609, 0.124609, 0.124609, 0.11109, 0.11109], [0.128697, 0.128697, 0.128697, 0.104556, 0.104556]],
    ),
    "no_fusion": (
        [[33, 29, 15, 25, 16], [33, 15, 29, 25, 16], [29, 15, 33, 25, 16], [33, 29, 15, 25, 16]],
        [[0.391822, 0.388401, 0.380813, -1.520931, -1.531298], [0.391343, 0.386527, 0.383709, -1.52756, -1.532266], [0.392487, 0.392055, 0.390521, -1.514877, -1.522128], [0.395405, 0.39046, 0.384604, -1.517948, -1.527167]],
    ),
}


def old_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's tensors under the OLD names, floating ones refilled from one seeded stream in sorted old-key order
    (the catalog buffers kept)."""
    current = model.state_dict()
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key in sorted(OLD_KEYS):
        tensor = current[key if key in HEAD_KEYS else f"model.{key}"]
        state[key] = torch.randn(tensor.shape, generator=generator) * 0.3 if tensor.is_floating_point() else tensor
    return state


def check_recommendations(model, tok) -> None:
    batch = tok(random_histories(40, 4, seed=2), return_tensors="pt")
    for mode, settings in SETTINGS.items():
        out = model.generate(**batch, **settings)
        items, scores = EXPECTED[mode]
        assert out.item_indices.tolist() == items, mode
        torch.testing.assert_close(out.scores, torch.tensor(scores), atol=2e-6, rtol=0, msg=mode)


def test_todays_keys_are_the_old_ones_under_the_backbone_prefix():
    model, _ = tiny_model(use_item_embeddings=True)
    expected = {key if key in HEAD_KEYS else f"model.{key}" for key in OLD_KEYS}
    assert set(model.state_dict()) == expected


def test_an_old_checkpoint_loads_with_from_pretrained_and_recommends_as_before(tmp_path):
    model, tok = tiny_model(use_item_embeddings=True)
    model.save_pretrained(tmp_path)
    # the weights file as the code before the split wrote it (its checksums no longer apply)
    save_file(old_state_dict(model), str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "checksums.json").unlink()
    loaded, info = CobraForSequentialRecommendation.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info  # nothing missing, unexpected or mismatched
    check_recommendations(loaded.eval(), tok)
    resaved = tmp_path / "resaved"
    loaded.save_pretrained(resaved)  # a re-save writes today's keys
    check_recommendations(CobraForSequentialRecommendation.from_pretrained(resaved).eval(), tok)


def test_an_old_state_dict_loads_with_load_state_dict_and_recommends_as_before():
    model, tok = tiny_model(use_item_embeddings=True)
    result = model.load_state_dict(old_state_dict(model))
    assert not result.missing_keys and not result.unexpected_keys
    check_recommendations(model.eval(), tok)


@pytest.mark.parametrize("strict", [True, False])
def test_todays_state_dict_still_loads_strictly(strict):
    model, tok = tiny_model(use_item_embeddings=True)
    model.load_state_dict(old_state_dict(model))
    fresh, _ = tiny_model(use_item_embeddings=True)
    fresh.load_state_dict(model.state_dict(), strict=strict)
    check_recommendations(fresh.eval(), tok)
