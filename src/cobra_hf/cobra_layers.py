"""Transformer building blocks of COBRA: attention with a KV cache, pre-LN blocks, the item-text encoder and
the causal decoder. Every block takes the `CobraConfig`.

Shapes: B batch, T sequence length, D hidden size, h heads, Dh = D / h.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_cobra import CobraConfig


class KVCacheGroup:
    """The KV caches of several decoders reading one history (an ID trunk beside its backbone, an ensemble's
    members), moved through the beam search together."""

    def __init__(self, caches: list):
        self.caches = list(caches)

    def start_beams(self, num_beams: int) -> "KVCacheGroup":
        for cache in self.caches:
            cache.start_beams(num_beams)
        return self

    def reorder_beams(self, origin: torch.Tensor) -> "KVCacheGroup":
        for cache in self.caches:
            cache.reorder_beams(origin)
        return self


class KVCache:
    """Keys and values of every decoder layer for incremental decoding.

    Two parts, so that beams never copy the history:
      * prefix: per layer (k, v) Float[B, h, T, Dh] of the history, with its key mask Bool[B, T];
      * beams (after `start_beams(M)`): per layer (k, v) Float[B, M, h, t, Dh] of the t tokens decoded so far
        for each beam. `reorder_beams` permutes only this small part.
    """

    def __init__(self, num_layers: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers
        self.beam_layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers
        self.key_mask: torch.Tensor | None = None
        self.num_beams: int | None = None

    @property
    def length(self) -> int:
        return 0 if self.key_mask is None else self.key_mask.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        past = self.layers[layer]
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        self.layers[layer] = (k, v)
        return k, v

    def update_beams(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v: Float[B, M, h, 1, Dh] of the new token of every beam -> all beam tokens so far."""
        past = self.beam_layers[layer]
        if past is not None:
            k = torch.cat([past[0], k], dim=3)
            v = torch.cat([past[1], v], dim=3)
        self.beam_layers[layer] = (k, v)
        return k, v

    def start_beams(self, num_beams: int) -> "KVCache":
        self.num_beams = num_beams
        self.beam_layers = [None] * len(self.layers)
        return self

    def reorder_beams(self, origin: torch.Tensor) -> "KVCache":
        """origin Long[B, M]: new beam m of user b continues old beam origin[b, m]."""
        def pick(t: torch.Tensor) -> torch.Tensor:
            return t.gather(1, origin.view(*origin.shape, 1, 1, 1).expand(-1, -1, *t.shape[2:]))

        self.beam_layers = [None if kv is None else (pick(kv[0]), pick(kv[1])) for kv in self.beam_layers]
        return self

    def select(self, batch_index: torch.Tensor) -> "KVCache":
        """Keeps/duplicates history rows in the order of batch_index Long[B'] (before beams start)."""
        self.layers = [None if kv is None else (kv[0][batch_index], kv[1][batch_index]) for kv in self.layers]
        if self.key_mask is not None:
            self.key_mask = self.key_mask[batch_index]
        return self


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool[...] (True = may attend) -> Float[...] of 0 / -inf. PyTorch's CPU attention runs about twice as fast
    (forward + backward) with an additive float mask as with a boolean one at the decoder's shapes."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, float("-inf"))


class SelfAttention(nn.Module):
    def __init__(self, config: CobraConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, cache: KVCache | None = None, layer: int = 0):
        """x: Float[B, T, D]; attn_mask: Float[B, 1, T, T_keys] (0 = may attend, -inf = may not; see
        `additive_mask`) -> Float[B, T, D].
        In beam mode (cache.num_beams = M) x is Float[B*M, 1, D], one new token per beam, and attn_mask is unused."""
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        if cache is not None and cache.num_beams is not None:
            y = self._beam_attention(q, k, v, cache, layer)
        else:
            if cache is not None:
                k, v = cache.update(layer, k, v)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )
        return self.out(y.transpose(1, 2).reshape(batch, length, width))

    def forward_first(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """The attention output at position 0 only, every position a key. x: Float[N, T, D]; attn_mask:
        Float[N, 1, 1, T] (additive) -> Float[N, 1, D]. Only keys and values are projected for all T positions."""
        batch, length, width = x.shape
        heads = self.num_heads
        q = F.linear(x[:, :1], self.qkv.weight[:width], self.qkv.bias[:width])
        kv = F.linear(x, self.qkv.weight[width:], self.qkv.bias[width:])
        q = q.view(batch, 1, heads, width // heads).transpose(1, 2)
        k, v = kv.view(batch, length, 2, heads, width // heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, 1, width))

    @staticmethod
    def _beam_attention(q, k, v, cache: KVCache, layer: int) -> torch.Tensor:
        """Attention of each beam's new token over the shared history keys plus the beam's own tokens.
        q, k, v: Float[B*M, h, 1, Dh] -> Float[B*M, h, 1, Dh]."""
        beams = cache.num_beams
        rows, heads, _, dim = q.shape
        q, k, v = (t.view(rows // beams, beams, heads, 1, dim) for t in (q, k, v))
        beam_k, beam_v = cache.update_beams(layer, k, v)  # [B, M, h, t, Dh]
        prefix_k, prefix_v = cache.layers[layer]  # [B, h, T, Dh]
        scale = dim**-0.5
        history = torch.einsum("bmhd,bhtd->bmht", q[:, :, :, 0], prefix_k) * scale
        history = history.masked_fill(~cache.key_mask[:, None, None, :], float("-inf"))
        own = torch.einsum("bmhd,bmhtd->bmht", q[:, :, :, 0], beam_k) * scale
        weights = torch.softmax(torch.cat([history, own], dim=-1), dim=-1)
        split = prefix_k.shape[2]
        y = torch.einsum("bmht,bhtd->bmhd", weights[..., :split], prefix_v)
        y = y + torch.einsum("bmht,bmhtd->bmhd", weights[..., split:], beam_v)
        return y.reshape(rows, heads, 1, dim)


class FeedForward(nn.Module):
    def __init__(self, config: CobraConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block (attention + MLP, residual around each)."""

    def __init__(self, config: CobraConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = SelfAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, attn_mask, cache: KVCache | None = None, layer: int = 0):
        x = x + self.dropout(self.attn(self.norm1(x), attn_mask, cache, layer))
        return x + self.mlp(self.norm2(x))

    def forward_first(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """The block's output at position 0 only: Float[N, T, D] -> Float[N, 1, D]. The same numbers as
        `forward(x)[:, :1]` (up to float rounding) at about a sixth of the work for a [CLS] readout."""
        first = x[:, :1] + self.dropout(self.attn.forward_first(self.norm1(x), attn_mask))
        return first + self.mlp(self.norm2(first))


class ItemTextEncoder(nn.Module):
    """Bidirectional Transformer over an item's text tokens with [CLS] in front; the [CLS] output is the item's
    dense vector (token + position + type embeddings, as in the paper)."""

    CLS_ID = 1

    def __init__(self, config: CobraConfig):
        super().__init__()
        width = config.hidden_size
        self.token_embed = nn.Embedding(config.text_vocab_size, width, padding_idx=0)
        self.position_embed = nn.Embedding(config.max_text_tokens + 1, width)
        # type 0 = [CLS], type 1 = text; room for field types later without a format change
        self.type_embed = nn.Embedding(2, width)
        self.embed_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.encoder_layers))
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.proj = nn.Linear(width, width)
        self.text_proj = (
            nn.Linear(config.text_embedding_dim, width, bias=False) if config.text_embedding_dim > 0 else None
        )

    def forward(self, token_ids: torch.Tensor, text_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """token_ids: Long[N, T] (0 = pad; a leading [CLS] is added when missing);
        text_embeddings: Float[N, E] or None -> item vectors Float[N, D]."""
        if token_ids.shape[1] == 0 or not bool((token_ids[:, 0] == self.CLS_ID).all()):
            cls = torch.full_like(token_ids[:, :1], self.CLS_ID)
            token_ids = torch.cat([cls, token_ids], dim=1)
        # drop columns that are padding for every item: short texts then cost less; without blocks the [CLS]
        # output reads no other token, so the text tokens are not embedded at all (a whole-catalog InfoNCE
        # encodes every item at every step)
        keep = int((token_ids != 0).any(0).nonzero().max()) + 1 if len(self.blocks) else 1
        token_ids = token_ids[:, :keep]
        positions = torch.arange(keep, device=token_ids.device)
        types = (positions > 0).long()
        x = self.token_embed(token_ids) + self.position_embed(positions) + self.type_embed(types)
        x = self.dropout(self.embed_norm(x))
        valid = token_ids != 0
        attn_mask = additive_mask(valid[:, None, None, :], x.dtype)
        for block in self.blocks[:-1]:
            x = block(x, attn_mask)
        # only the [CLS] output is read: the last block computes its queries, residual and MLP there alone
        # (with the paper's single encoder layer this removes most of the encoder's work)
        x = self.blocks[-1].forward_first(x, attn_mask) if len(self.blocks) else x[:, :1]
        vector = self.proj(self.norm(x[:, 0]))
        if self.text_proj is not None and text_embeddings is not None:
            vector = vector + self.text_proj(text_embeddings)
        return vector


class CausalDecoder(nn.Module):
    """Stack of causal pre-LN blocks with a final LayerNorm; supports incremental decoding through KVCache."""

    def __init__(self, config: CobraConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.decoder_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x: Float[B, T, D] new positions; key_mask: Bool[B, T] which new positions are real (not padding).
        With a cache, the new positions attend to everything cached before them. Returns Float[B, T, D]."""
        if cache is not None and cache.num_beams is not None:
            for layer, block in enumerate(self.blocks):
                x = block(x, None, cache, layer)
            return self.norm(x)
        length = x.shape[1]
        past = cache.length if cache is not None else 0
        keys = key_mask if past == 0 else torch.cat([cache.key_mask, key_mask], dim=1)
        causal = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(diagonal=past)
        attn_mask = causal[None] & keys[:, None, :]
        # a padding query that sees no real key would give NaN: let every position see itself
        own = torch.arange(past, past + length, device=x.device)[:, None] == torch.arange(past + length, device=x.device)
        attn_mask = attn_mask | own[None]
        attn_mask = additive_mask(attn_mask[:, None], x.dtype)
        for layer, block in enumerate(self.blocks):
            x = block(x, attn_mask, cache, layer)
        if cache is not None:
            cache.key_mask = keys
        return self.norm(x)
