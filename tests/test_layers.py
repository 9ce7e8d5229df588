"""The layers' shortcuts give the same numbers as the plain computation."""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

from cobra_hf.cobra_layers import Block, ItemTextEncoder, additive_mask  # noqa: E402


def _full_encoder_cls(encoder: ItemTextEncoder, token_ids: torch.Tensor) -> torch.Tensor:
    """The [CLS] vector with every block run over every position (no shortcut)."""
    cls = torch.full_like(token_ids[:, :1], encoder.CLS_ID)
    token_ids = torch.cat([cls, token_ids], 1)
    positions = torch.arange(token_ids.shape[1])
    x = encoder.token_embed(token_ids) + encoder.position_embed(positions) + encoder.type_embed((positions > 0).long())
    x = encoder.embed_norm(x)
    mask = additive_mask((token_ids != 0)[:, None, None, :], x.dtype)
    for block in encoder.blocks:
        x = block(x, mask)
    return encoder.proj(encoder.norm(x[:, 0]))


def test_block_forward_first_matches_position_zero_of_forward():
    model, _ = tiny_model()
    block: Block = model.model.item_encoder.blocks[0].eval()
    x = torch.randn(5, 7, model.config.hidden_size)
    allowed = torch.ones(5, 1, 1, 7, dtype=torch.bool)
    allowed[1, ..., 4:] = False  # a padded text
    mask = additive_mask(allowed, x.dtype)
    torch.testing.assert_close(block.forward_first(x, mask), block(x, mask)[:, :1], rtol=1e-5, atol=1e-5)


def test_item_encoder_cls_shortcut_matches_full_computation_for_zero_one_and_two_layers():
    # with no blocks the text tokens are never embedded (the whole-catalog InfoNCE encodes every item each step)
    for layers in (0, 1, 2):
        model, _ = tiny_model(encoder_layers=layers)
        encoder = model.model.item_encoder.eval()
        tokens = model.item_text_ids[:12]
        torch.testing.assert_close(encoder(tokens), _full_encoder_cls(encoder, tokens), rtol=1e-5, atol=1e-5)


def test_item_encoder_gradients_match_full_computation():
    model, _ = tiny_model()
    encoder = model.model.item_encoder.eval()
    tokens = model.item_text_ids[:12]
    grads = []
    for fn in (encoder, lambda t: _full_encoder_cls(encoder, t)):
        encoder.zero_grad()
        fn(tokens).pow(2).sum().backward()
        grads.append({name: p.grad.clone() for name, p in encoder.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_additive_mask_equals_boolean_mask_in_attention():
    q, k, v = (torch.randn(3, 2, 5, 4) for _ in range(3))
    allowed = torch.rand(3, 1, 5, 5) > 0.3
    allowed |= torch.eye(5, dtype=torch.bool)  # every query sees a key
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    got = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask(allowed, q.dtype))
    torch.testing.assert_close(got, expected)
    assert additive_mask(allowed, torch.float32).dtype == torch.float32
