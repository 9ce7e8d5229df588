"""The COBRA backbone, `CobraModel` (item-text encoder, token embeddings, causal decoder, the catalog buffers), and
`CobraPreTrainedModel`, the base class of every COBRA model. `modeling_cobra.CobraForSequentialRecommendation` holds
one backbone as `model` (and, with config.id_trunk, a second one as its ID trunk: cobra_id_trunk.py). Travels with
every checkpoint for trust_remote_code (modeling_cobra imports it).

Shapes: B batch, H history items, L levels, S = H * (L + 1) sequence positions, D hidden size, I catalog items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .checkpoint_files import CheckpointFilesMixin
from .cobra_fusion import full_precision
from .cobra_layers import CausalDecoder, ItemTextEncoder, KVCache
from .configuration_cobra import CobraConfig


@dataclass
class CobraModelOutput(ModelOutput):
    """last_hidden_state: Float[B, S, D]; item_vectors: Float[B, H, D] the history items' dense vectors."""

    last_hidden_state: torch.Tensor | None = None
    item_vectors: torch.Tensor | None = None


class CobraPreTrainedModel(CheckpointFilesMixin, PreTrainedModel):
    config_class = CobraConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["Block"]
    # the ID-free head exists only when a loss trains it; older checkpoints of weight-0 models still hold its weights
    _keys_to_ignore_on_load_unexpected = [r"^history_dense_head\."]


class CobraModel(CobraPreTrainedModel):
    """The backbone: item-text encoder, token embeddings and the causal decoder, with the catalog it reads as
    persistent buffers (saved in model.safetensors): `item_codes` Long[I, L], `item_text_ids` Long[I, T] and
    (with text_embedding_dim) `item_text_embeddings` Float[I, E]."""

    def __init__(self, config: CobraConfig, defer_init: bool = False):
        super().__init__(config)
        width, levels = config.hidden_size, config.num_levels
        # defer_init: the head initialises backbone and heads in one pass, in the order of the layout before the
        # split, so that one seed still gives the same initial weights
        self._defer_init = defer_init
        self.item_encoder = ItemTextEncoder(config)
        self.item_embed = nn.Embedding(config.num_items, width) if config.use_item_embeddings else None
        self.code_embed = nn.Embedding(config.code_vocab_size, width, padding_idx=0)
        self.dense_in = nn.Linear(width, width)
        self.type_embed = nn.Embedding(levels + 1, width)  # type l < L: code of level l; type L: dense token
        self.position_embed = nn.Embedding(config.max_history + 1, width)  # item position, oldest = 0
        self.embed_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.decoder = CausalDecoder(config)
        self.register_buffer("item_codes", torch.zeros(config.num_items, levels, dtype=torch.long))
        self.register_buffer("item_text_ids", torch.zeros(config.num_items, config.max_text_tokens, dtype=torch.long))
        if config.text_embedding_dim:
            self.register_buffer("item_text_embeddings", torch.zeros(config.num_items, config.text_embedding_dim))
        else:
            self.item_text_embeddings = None
        self.post_init()

    def init_weights(self):
        if not self._defer_init:
            super().init_weights()

    @property
    def level_offsets(self) -> torch.Tensor:
        """Token id of code 0 of each level, Long[L] (configuration_cobra.level_offsets). Derived from the config on
        every use: a non-persistent buffer is left uninitialised by from_pretrained (meta-device loading)."""
        return torch.tensor(self.config.level_offsets, dtype=torch.long, device=self.item_codes.device)

    def set_catalog(self, item_codes: torch.Tensor, item_text_ids: torch.Tensor, item_text_embeddings=None) -> None:
        """Installs the catalog buffers: codes Long[I, L], text ids Long[I, T], sentence embeddings Float[I, E] or None.
        A learned item embedding keeps its rows; items new to the model start at zero (text-only vector)."""
        config = self.config
        if item_codes.shape[1] != config.num_levels:
            raise ValueError(f"item_codes has {item_codes.shape[1]} levels; the config says {config.num_levels}.")
        if (item_codes >= torch.tensor(config.level_sizes)).any() or (item_codes < 0).any():
            raise ValueError(f"item_codes hold codes outside level_sizes {config.level_sizes}.")
        if item_text_ids.shape[0] != item_codes.shape[0]:
            raise ValueError("item_text_ids and item_codes must have one row per item.")
        if int(item_text_ids.max()) >= config.text_vocab_size:
            raise ValueError(f"item_text_ids hold ids >= text_vocab_size ({config.text_vocab_size}).")
        device = self.item_codes.device
        self.item_codes = item_codes.long().to(device)
        text = item_text_ids.long()[:, : config.max_text_tokens]
        self.item_text_ids = F.pad(text, (0, config.max_text_tokens - text.shape[1])).to(device)
        if config.text_embedding_dim:
            if item_text_embeddings is None or item_text_embeddings.shape[1] != config.text_embedding_dim:
                raise ValueError(f"item_text_embeddings of width {config.text_embedding_dim} are required.")
            self.item_text_embeddings = item_text_embeddings.float().to(device)
        if self.item_embed is not None and self.item_embed.num_embeddings != item_codes.shape[0]:
            resized = nn.Embedding(item_codes.shape[0], config.hidden_size).to(device)
            with torch.no_grad():
                resized.weight.zero_()
                keep = min(item_codes.shape[0], self.item_embed.num_embeddings)
                resized.weight[:keep] = self.item_embed.weight[:keep]
            self.item_embed = resized

    def encode_items(self, item_index: torch.Tensor) -> torch.Tensor:
        """item_index Long[n] -> dense vectors Float[n, D] from the item-text encoder (with gradients)."""
        text_embeddings = None if self.item_text_embeddings is None else self.item_text_embeddings[item_index]
        vectors = self.item_encoder(self.item_text_ids[item_index], text_embeddings)
        if self.item_embed is not None:
            vectors = vectors + self.item_embed(item_index)
        return vectors

    @torch.no_grad()
    def encode_catalog(self, batch_size: int = 4096) -> torch.Tensor:
        """Every catalog item through the item encoder without dropout or gradients -> Float[I, D] (fp32). Run with
        autocast off, so that the cached catalog is the same whichever context first asks for it (an evaluation
        inside the Trainer's bf16 autocast, or a generate() outside it); a model cast to bf16 computes in bf16."""
        was_training = self.item_encoder.training
        self.item_encoder.eval()
        index = torch.arange(self.item_codes.shape[0], device=self.item_codes.device)
        with full_precision(self.item_codes.device):
            raw = torch.cat([self.encode_items(chunk) for chunk in index.split(batch_size)]).float()
        self.item_encoder.train(was_training)
        return raw

    def check_inputs(self, input_ids, attention_mask, item_index) -> torch.Tensor:
        """Validates tokenizer output against this catalog; returns the item mask Bool[B, H]."""
        if input_ids.dim() != 2 or item_index.dim() != 2:
            raise ValueError("input_ids must be Long[B, H*L] and item_index Long[B, H] (use CobraTokenizer).")
        batch, length = item_index.shape
        config, levels = self.config, self.config.num_levels
        if batch == 0 or input_ids.shape[0] != batch:
            raise ValueError("An empty batch (0 rows): give at least one history." if batch * input_ids.shape[0] == 0
                             else f"input_ids has {input_ids.shape[0]} rows and item_index {batch}: they must match.")
        if length > config.max_history + 1:
            raise ValueError(
                f"Histories of {length} items are longer than this model reads (max_history={config.max_history}, "
                "+1 target when training): encode them with the checkpoint's tokenizer, which keeps the newest items."
            )
        if input_ids.shape[1] != length * levels:
            raise ValueError(
                f"input_ids has {input_ids.shape[1]} tokens per row for {length} items; this model expects "
                f"{levels} tokens (levels) per item: was the tokenizer made for another catalog?"
            )
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        item_mask = attention_mask.view(batch, length, levels)[..., 0].bool()
        if item_index.numel() and (int(item_index.max()) >= config.num_items or int(item_index.min()) < 0):
            wrong = int(item_index.min()) if int(item_index.min()) < 0 else int(item_index.max())
            raise ValueError(
                f"item_index holds {wrong}, outside this model's catalog (rows 0 to {config.num_items - 1}): "
                "encode histories with the checkpoint's tokenizer (a negative index or one from another catalog)."
            )
        expected = (self.item_codes[item_index] + self.level_offsets) * item_mask[..., None]
        if not torch.equal(expected.view(batch, -1), input_ids * attention_mask):
            raise ValueError(
                "input_ids do not match this model's catalog (semantic IDs differ for the given item_index): "
                "the tokenizer and the model come from different catalogs."
            )
        return item_mask

    def embed(self, input_ids, item_mask, item_vectors) -> torch.Tensor:
        """input_ids Long[B, H*L], item_mask Bool[B, H], item_vectors Float[B, H, D] -> Float[B, S, D]."""
        batch, length = item_mask.shape
        levels = self.config.num_levels
        codes = self.code_embed(input_ids).view(batch, length, levels, -1)
        # the cached catalog vectors are fp32 (encode_catalog) and a model cast to bf16/fp16 reads its own dtype
        dense = self.dense_in(item_vectors.to(self.dense_in.weight.dtype))[:, :, None]
        x = torch.cat([codes, dense], dim=2) + self.type_embed.weight[None, None]
        positions = (item_mask.long().cumsum(1) - 1).clamp(0, self.config.max_history)
        x = x + self.position_embed(positions)[:, :, None]
        return self.embed_dropout(self.embed_norm(x)).view(batch, length * (levels + 1), -1)

    def decode_by_length(self, x: torch.Tensor, item_mask: torch.Tensor) -> torch.Tensor:
        """The causal decoder over x Float[B, S, D] with item_mask Bool[B, H] -> Float[B, S, D]. Rows are sorted by
        item count and decoded in config.length_buckets groups, each cut to the columns some of its rows use:
        padding columns are masked keys and positions come from the item mask, so the real positions get the same
        numbers as in one padded batch, at a fraction of the work (positions that are padding in a group come back
        as zeros)."""
        per_item = self.config.num_levels + 1
        token_mask = item_mask.repeat_interleave(per_item, 1)
        groups = min(self.config.length_buckets, item_mask.shape[0])
        if groups <= 1:
            return self.decoder(x, token_mask)
        order = torch.argsort(item_mask.sum(1), stable=True)
        parts = []
        for rows in order.tensor_split(groups):  # groups <= rows, so no group is empty
            columns = item_mask[rows].any(0).nonzero()
            if columns.numel() == 0:  # rows without items: nothing to decode
                parts.append(x.new_zeros(rows.numel(), x.shape[1], x.shape[2]))
                continue
            span = slice(int(columns[0]) * per_item, (int(columns[-1]) + 1) * per_item)
            hidden = self.decoder(x[rows, span], token_mask[rows, span])
            parts.append(F.pad(hidden, (0, 0, span.start, x.shape[1] - span.stop)))
        return torch.cat(parts)[torch.argsort(order)]

    def forward(self, input_ids: torch.Tensor, item_index: torch.Tensor, attention_mask: torch.Tensor | None = None,
                item_vectors: torch.Tensor | None = None, item_mask: torch.Tensor | None = None,
                **kwargs) -> CobraModelOutput:
        """input_ids Long[B, H*L], item_index Long[B, H], attention_mask Long[B, H*L] (left-padded CobraTokenizer
        output); item_vectors Float[B, H, D] (default: encoded here) and item_mask Bool[B, H] (default: checked
        here) let a caller pass what it already has. Returns the decoder's output over the interleaved sequence."""
        if item_mask is None:
            item_mask = self.check_inputs(input_ids, attention_mask, item_index)
        if item_vectors is None:
            item_vectors = self.encode_items(item_index.clamp(min=0)) * item_mask[..., None]
        hidden = self.decode_by_length(self.embed(input_ids, item_mask, item_vectors), item_mask)
        return CobraModelOutput(last_hidden_state=hidden, item_vectors=item_vectors)

    def prefill(self, input_ids, item_mask, item_vectors) -> tuple[torch.Tensor, KVCache]:
        """Runs histories through the decoder once; returns the last position's output Float[B, D] and the cache."""
        cache = KVCache(self.config.decoder_layers)
        token_mask = item_mask.repeat_interleave(self.config.num_levels + 1, 1)
        hidden = self.decoder(self.embed(input_ids, item_mask, item_vectors), token_mask, cache)
        return hidden[:, -1], cache

    def step(self, codes: torch.Tensor, level: int, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feeds code tokens of `level` (codes Long[R]) at item positions Long[R]; returns the outputs Float[R, D]."""
        token = self.code_embed(codes + self.config.level_offsets[level]) + self.type_embed.weight[level]
        x = self.embed_norm(token + self.position_embed(positions))[:, None]
        mask = torch.ones(codes.shape[0], 1, dtype=torch.bool, device=codes.device)
        return self.decoder(x, mask, cache)[:, 0]
