"""COBRA: cascaded sparse-dense generative recommendation (Yang et al., arXiv 2503.02453) as a transformers model.

A history of H items becomes the interleaved sequence `c_1^1..c_1^L, v_1, ..., c_H^1..c_H^L, v_H` (L code tokens
then one dense token per item). A causal decoder reads it:
  * the output at v_t feeds the SparseHead for code 1 of item t+1; the output at code l of item t+1 for code l+1;
  * the output at the last code of item t+1 is the predicted dense vector of item t+1 (the cascade:
    P(ID, v | S) = P(ID | S) P(v | ID, S)).
`generate` decodes coarse to fine: beam search over valid IDs, a dense vector per beam, the nearest items under each
beam's ID, ranked by BeamFusion.

Shapes: B batch, H history items, L levels, S = H * (L + 1) sequence positions, D hidden size, I catalog items,
M beams, N candidates per beam, K recommendations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .checkpoint_files import CheckpointFilesMixin
from .cobra_generation import (SemanticIdIndex, beam_fusion, joint_fusion, mask_items, nearest_items, top_k_items,
                               warn_short_rows)
from .cobra_layers import CausalDecoder, ItemTextEncoder, KVCache
from .configuration_cobra import BEAM_FUSION_METHODS, GENERATION_MODES, CobraConfig

# The "cobra-recommendation" pipeline (pipeline_cobra.py) travels with every checkpoint: config.json's
# custom_pipelines tells `transformers.pipeline` where it is, and save_pretrained copies the file because this module
# imports it (see `recommendation_pipeline`).
CUSTOM_PIPELINES = {
    "cobra-recommendation": {"impl": "pipeline_cobra.CobraRecommendationPipeline", "pt": ["AutoModel"], "type": "text"}
}
# beam_fusion: "paper" (Eq. 7, per-beam softmax over cosines) or "joint" (one softmax over all beams' candidates,
# see cobra_generation.joint_fusion); beam_fusion_dense_psi (psi_h) weighs the ID-free prediction in "joint".
DEFAULT_GENERATION = dict(
    num_beams=20,
    num_candidates=10,
    dense_guided_ids=0,
    recommend_top_k=10,
    beam_fusion_tau=0.9,
    beam_fusion_psi=16.0,
    beam_fusion="paper",
    beam_fusion_dense_psi=0.0,
    recommend_mode="cobra",
    exclude_history=False,
    use_faiss=False,
    do_sample=False,
)
GENERATION_FILE = "generation_config.json"  # transformers' name for it


@dataclass
class CobraOutput(ModelOutput):
    """loss: weighted sum of the three losses below (when labels are given).
    sparse_logits: per level l, Float[B, H - 1, K_l] logits of code l of items 2..H.
    dense_predictions: Float[B, H - 1, D] predicted dense vectors of items 2..H (conditioned on their IDs).
    item_vectors: Float[B, H, D] the history items' dense vectors from the item-text encoder.
    last_hidden_state: Float[B, S, D]."""

    loss: torch.Tensor | None = None
    sparse_loss: torch.Tensor | None = None
    dense_loss: torch.Tensor | None = None
    history_dense_loss: torch.Tensor | None = None
    catalog_dense_loss: torch.Tensor | None = None
    sparse_logits: tuple[torch.Tensor, ...] | None = None
    dense_predictions: torch.Tensor | None = None
    item_vectors: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


@dataclass
class CobraGenerationOutput(ModelOutput):
    """item_indices: Long[B, K] recommended catalog items, best first (-1 only if the catalog has too few items);
    scores: Float[B, K] their ranking scores (BeamFusion Phi in "cobra" mode);
    semantic_ids: Long[B, M, L] the beams' IDs (codes), best first; beam_scores: Float[B, M] their log-probs;
    beam_vectors: Float[B, M, D] the dense vector predicted for each beam."""

    item_indices: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    semantic_ids: torch.Tensor | None = None
    beam_scores: torch.Tensor | None = None
    beam_vectors: torch.Tensor | None = None


def info_nce(predicted: torch.Tensor, targets: torch.Tensor, item_vectors: torch.Tensor, temperature: float,
             log_q: torch.Tensor | None = None, chunk_elements: int = 1 << 22):
    """InfoNCE over cosine similarity. predicted Float[P, D]; targets Long[P] rows of item_vectors Float[C, D]
    (distinct items, so a positive never appears among its own negatives); log_q Float[C] or None: log of each
    column's chance to be sampled, subtracted from its logits (sampling-bias correction) -> scalar loss.
    The [P, C] logits are built chunk_elements at a time: glibc serves each allocation above 32 MB with a fresh
    mmap, and a whole-catalog logit matrix that is mapped and faulted in every step spent as long in the kernel as
    in the matmul."""
    # the temperature scales the [P, D] queries, not the [P, C] logits: one pass over C columns fewer
    queries = F.normalize(predicted, dim=-1) / temperature
    columns = F.normalize(item_vectors, dim=-1)
    rows = max(1, chunk_elements // max(1, columns.shape[0]))
    total = predicted.new_zeros(())
    for query, target in zip(queries.split(rows), targets.split(rows)):
        logits = query @ columns.T
        if log_q is not None:
            logits = logits - log_q
        total = total + F.cross_entropy(logits, target, reduction="sum")
    return total / predicted.shape[0]


def _invalidate_after_load(module, incompatible_keys) -> None:
    module.invalidate_caches()


class CobraPreTrainedModel(CheckpointFilesMixin, PreTrainedModel):
    config_class = CobraConfig
    base_model_prefix = "cobra"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["Block"]
    _keys_to_ignore_on_load_unexpected = [r"^history_dense_head\."]


class CobraForSequentialRecommendation(CobraPreTrainedModel):
    """COBRA with its item catalog: `item_codes` Long[I, L], `item_text_ids` Long[I, T] and (optionally)
    `item_text_embeddings` Float[I, E] are persistent buffers saved in model.safetensors, so a checkpoint can
    score candidates on its own."""

    def __init__(self, config: CobraConfig):
        super().__init__(config)
        width, levels = config.hidden_size, config.num_levels
        self.item_encoder = ItemTextEncoder(config)
        self.item_embed = nn.Embedding(config.num_items, width) if config.use_item_embeddings else None
        self.code_embed = nn.Embedding(config.code_vocab_size, width, padding_idx=0)
        self.dense_in = nn.Linear(width, width)
        self.type_embed = nn.Embedding(levels + 1, width)  # type l < L: code of level l; type L: dense token
        self.position_embed = nn.Embedding(config.max_history + 1, width)  # item position, oldest = 0
        self.embed_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.decoder = CausalDecoder(config)
        self.sparse_head = nn.ModuleList(nn.Linear(width, size) for size in config.level_sizes)
        self.dense_head = nn.Linear(width, width)
        # the ID-free head ("dense" mode, dense_guided_ids, beam_fusion_dense_psi) only exists when a loss trains it;
        # older checkpoints of weight-0 models still hold its weights: _keys_to_ignore_on_load_unexpected drops them
        self.history_dense_head = nn.Linear(width, width) if config.history_dense_loss_weight > 0 else None
        self.register_buffer("item_codes", torch.zeros(config.num_items, levels, dtype=torch.long))
        self.register_buffer("item_text_ids", torch.zeros(config.num_items, config.max_text_tokens, dtype=torch.long))
        if config.text_embedding_dim:
            self.register_buffer(
                "item_text_embeddings", torch.zeros(config.num_items, config.text_embedding_dim)
            )
        else:
            self.item_text_embeddings = None
        self._id_index: SemanticIdIndex | None = None
        self._item_vector_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._faiss_index = None
        # share of the training item slots each item fills, Float[I] (set_item_frequencies; training only, not saved)
        self._item_frequency: torch.Tensor | None = None
        # normalised vectors Float[I, D] of the whole catalog for catalog_dense_loss_weight, and the training
        # forwards since they were encoded (training only, not saved)
        self._catalog_bank: torch.Tensor | None = None
        self._catalog_bank_age = 0
        # the tokenizer's [PAD] is the config's pad_token_id; the Trainer warns and rewrites both when the generation
        # config lacks it
        self.generation_config = GenerationConfig(pad_token_id=config.pad_token_id, **DEFAULT_GENERATION)
        if not getattr(config, "custom_pipelines", None):
            config.custom_pipelines = {task: dict(info) for task, info in CUSTOM_PIPELINES.items()}
        self.post_init()
        # new weights or catalog buffers (load_state_dict) make the cached item vectors / ID index stale
        self.register_load_state_dict_post_hook(_invalidate_after_load)

    @staticmethod
    def recommendation_pipeline():
        """The `cobra-recommendation` pipeline class (this import also makes save_pretrained copy pipeline_cobra.py)."""
        from .pipeline_cobra import CobraRecommendationPipeline

        return CobraRecommendationPipeline

    @property
    def level_offsets(self) -> torch.Tensor:
        """Token id of code 0 of each level, Long[L]. Derived from the config on every use: a non-persistent buffer
        is left uninitialised by from_pretrained (meta-device loading) and gave garbage offsets after a reload."""
        sizes = self.config.level_sizes
        offsets = [2 + sum(sizes[:level]) for level in range(len(sizes))]
        return torch.tensor(offsets, dtype=torch.long, device=self.item_codes.device)

    @classmethod
    def can_generate(cls) -> bool:
        # generate() is our own coarse-to-fine decoder; True makes transformers save generation_config.json
        return True

    # ------------------------------------------------------------------ catalog
    def set_catalog(self, item_codes: torch.Tensor, item_text_ids: torch.Tensor, item_text_embeddings=None, catalog_hash=""):
        """Installs a catalog: codes Long[I, L], text ids Long[I, T], sentence embeddings Float[I, E] or None."""
        if item_codes.shape[1] != self.config.num_levels:
            raise ValueError(f"item_codes has {item_codes.shape[1]} levels; the config says {self.config.num_levels}.")
        if (item_codes >= torch.tensor(self.config.level_sizes)).any() or (item_codes < 0).any():
            raise ValueError(f"item_codes hold codes outside level_sizes {self.config.level_sizes}.")
        if item_text_ids.shape[0] != item_codes.shape[0]:
            raise ValueError("item_text_ids and item_codes must have one row per item.")
        if int(item_text_ids.max()) >= self.config.text_vocab_size:
            raise ValueError(f"item_text_ids hold ids >= text_vocab_size ({self.config.text_vocab_size}).")
        device = self.item_codes.device
        self.item_codes = item_codes.long().to(device)
        text = item_text_ids.long()[:, : self.config.max_text_tokens]
        self.item_text_ids = F.pad(text, (0, self.config.max_text_tokens - text.shape[1])).to(device)
        if self.config.text_embedding_dim:
            if item_text_embeddings is None or item_text_embeddings.shape[1] != self.config.text_embedding_dim:
                raise ValueError(f"item_text_embeddings of width {self.config.text_embedding_dim} are required.")
            self.item_text_embeddings = item_text_embeddings.float().to(device)
        if self.item_embed is not None and self.item_embed.num_embeddings != item_codes.shape[0]:
            # keep learned rows; items new to the model start at zero (text-only vector)
            resized = nn.Embedding(item_codes.shape[0], self.config.hidden_size).to(device)
            with torch.no_grad():
                resized.weight.zero_()
                keep = min(item_codes.shape[0], self.item_embed.num_embeddings)
                resized.weight[:keep] = self.item_embed.weight[:keep]
            self.item_embed = resized
        self.config.num_items = int(item_codes.shape[0])
        self.config.catalog_hash = catalog_hash
        self.invalidate_caches()

    def invalidate_caches(self) -> None:
        self._id_index = None
        self._item_vector_cache = None
        self._faiss_index = None
        self._catalog_bank = None

    def train(self, mode: bool = True):
        if mode:
            # weights are about to change: cached item vectors would go stale. model.eval() keeps them, so
            # repeated evaluations of the same weights encode the catalog once.
            self._item_vector_cache = None
            self._faiss_index = None
        return super().train(mode)

    @property
    def id_index(self) -> SemanticIdIndex:
        if self._id_index is None or self._id_index.num_items != self.item_codes.shape[0]:
            self._id_index = SemanticIdIndex(self.item_codes, self.config.level_sizes).to(self.item_codes.device)
        return self._id_index

    def encode_items(self, item_index: torch.Tensor) -> torch.Tensor:
        """item_index Long[n] -> dense vectors Float[n, D] from the item-text encoder (with gradients)."""
        text_embeddings = None if self.item_text_embeddings is None else self.item_text_embeddings[item_index]
        vectors = self.item_encoder(self.item_text_ids[item_index], text_embeddings)
        if self.item_embed is not None:
            vectors = vectors + self.item_embed(item_index)
        return vectors

    def _contrastive_items(self, distinct: torch.Tensor) -> torch.Tensor:
        """The items each InfoNCE target is scored against (config.num_dense_negatives), Long[C] sorted, a
        superset of the batch's distinct items Long[U] (sorted). Training draws uniform extra negatives;
        evaluation scores the whole catalog (no random draw there)."""
        count = self.config.num_dense_negatives
        if count == 0:
            return distinct
        if self._catalog_columns():
            return torch.arange(self.config.num_items, device=distinct.device)
        drawn = torch.randint(self.config.num_items, (count,), device=distinct.device)
        return torch.unique(torch.cat([distinct, drawn]))

    def _catalog_columns(self) -> bool:
        """Whether the InfoNCE columns are the whole catalog: num_dense_negatives = -1, or any extra negatives in
        evaluation mode (see _contrastive_items)."""
        count = self.config.num_dense_negatives
        return count == -1 or (count != 0 and not self.training)

    def set_item_frequencies(self, counts: torch.Tensor) -> None:
        """counts Float or Long[I]: how many item slots of the training sequences each catalog item fills. Needed
        to train with config.dense_logq_correction (`cobra-hf train` sets it from the training split); a training
        statistic, not saved with the weights. Counts get add-one smoothing, so an item never seen in training
        still has a small, finite sampling chance."""
        counts = torch.as_tensor(counts)
        if counts.shape != (self.config.num_items,):
            raise ValueError(
                f"item frequencies have shape {tuple(counts.shape)}; the catalog has {self.config.num_items} items."
            )
        if not bool(torch.isfinite(counts.double()).all()) or bool((counts < 0).any()):
            raise ValueError("item frequencies must be finite counts >= 0.")
        counts = counts.double()
        self._item_frequency = ((counts + 1.0) / (counts.sum() + counts.numel())).float()

    def _column_log_q(self, columns_index: torch.Tensor, item_slots: int) -> torch.Tensor | None:
        """log Q Float[C] of the InfoNCE columns Long[C]: the chance that an item is among the distinct items of a
        batch of `item_slots` item slots (1 - (1 - f)^n ~ 1 - exp(-n f)), plus the uniform extra negatives.
        None when the columns are the whole catalog (Q = 1 for every item)."""
        if self._catalog_columns():
            return None
        if self._item_frequency is None or self._item_frequency.shape[0] != self.config.num_items:
            raise ValueError(
                "dense_logq_correction needs the items' training frequencies for this catalog: call "
                "model.set_item_frequencies(counts) before training (`cobra-hf train` does it)."
            )
        frequency = self._item_frequency.to(columns_index.device)[columns_index]
        rate = item_slots * frequency
        if self.config.num_dense_negatives > 0:  # uniform draws on top of the batch's items
            rate = rate + self.config.num_dense_negatives / self.config.num_items
        return torch.log(-torch.expm1(-rate))

    @torch.no_grad()
    def all_item_vectors(self, normalized: bool = True, batch_size: int = 4096) -> torch.Tensor:
        """Dense vectors of the whole catalog Float[I, D] (L2-normalised unless normalized=False); computed once
        and cached until the weights change (train() or set_catalog())."""
        if self._item_vector_cache is None or self._item_vector_cache[0].shape[0] != self.config.num_items:
            raw = self._encode_catalog(batch_size)
            self._item_vector_cache = (raw, F.normalize(raw, dim=-1))
        return self._item_vector_cache[1 if normalized else 0]

    @torch.no_grad()
    def _encode_catalog(self, batch_size: int = 4096) -> torch.Tensor:
        """Every catalog item through the item encoder without dropout or gradients -> Float[I, D] (not cached)."""
        was_training = self.item_encoder.training
        self.item_encoder.eval()
        index = torch.arange(self.config.num_items, device=self.item_codes.device)
        raw = torch.cat([self.encode_items(chunk) for chunk in index.split(batch_size)]).float()
        self.item_encoder.train(was_training)
        return raw

    def _catalog_bank_vectors(self) -> torch.Tensor:
        """The bank Float[I, D] (normalised) that catalog_dense_loss_weight scores against. Training re-encodes it
        every config.catalog_refresh_steps forwards (and after a catalog change); evaluation uses the current
        weights' vectors."""
        if not self.training:
            return self.all_item_vectors()
        bank = self._catalog_bank
        if bank is None or bank.shape[0] != self.config.num_items or self._catalog_bank_age >= self.config.catalog_refresh_steps:
            self._catalog_bank = F.normalize(self._encode_catalog(), dim=-1)
            self._catalog_bank_age = 0
        self._catalog_bank_age += 1
        return self._catalog_bank

    def _faiss(self):
        if self._faiss_index is None:
            try:
                import faiss
            except ImportError:
                raise ImportError("use_faiss=True needs faiss: pip install faiss-cpu (or, in a cobra-hf checkout, pip install -e '.[faiss]').") from None
            vectors = self.all_item_vectors().cpu().contiguous().numpy()
            self._faiss_index = faiss.IndexFlatIP(vectors.shape[1])
            self._faiss_index.add(vectors)
        return self._faiss_index

    # ------------------------------------------------------------------ inputs
    def _check_inputs(self, input_ids, attention_mask, item_index) -> torch.Tensor:
        """Validates tokenizer output against this model's catalog; returns the item mask Bool[B, H]."""
        if input_ids.dim() != 2 or item_index.dim() != 2:
            raise ValueError("input_ids must be Long[B, H*L] and item_index Long[B, H] (use CobraTokenizer).")
        batch, length = item_index.shape
        levels = self.config.num_levels
        if batch == 0 or input_ids.shape[0] != batch:
            raise ValueError("An empty batch (0 rows): give at least one history." if batch * input_ids.shape[0] == 0
                             else f"input_ids has {input_ids.shape[0]} rows and item_index {batch}: they must match.")
        if length > self.config.max_history + 1:
            raise ValueError(
                f"Histories of {length} items are longer than this model reads (max_history={self.config.max_history}, "
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
        if item_index.numel() and (int(item_index.max()) >= self.config.num_items or int(item_index.min()) < 0):
            wrong = int(item_index.min()) if int(item_index.min()) < 0 else int(item_index.max())
            raise ValueError(
                f"item_index holds {wrong}, outside this model's catalog (rows 0 to {self.config.num_items - 1}): "
                "encode histories with the checkpoint's tokenizer (a negative index or one from another catalog)."
            )
        expected = (self.item_codes[item_index] + self.level_offsets) * item_mask[..., None]
        if not torch.equal(expected.view(batch, -1), input_ids * attention_mask):
            raise ValueError(
                "input_ids do not match this model's catalog (semantic IDs differ for the given item_index): "
                "the tokenizer and the model come from different catalogs."
            )
        return item_mask

    def _embed(self, input_ids, item_mask, item_vectors) -> torch.Tensor:
        """input_ids Long[B, H*L], item_mask Bool[B, H], item_vectors Float[B, H, D] -> Float[B, S, D]."""
        batch, length = item_mask.shape
        levels = self.config.num_levels
        codes = self.code_embed(input_ids).view(batch, length, levels, -1)
        dense = self.dense_in(item_vectors)[:, :, None]
        x = torch.cat([codes, dense], dim=2) + self.type_embed.weight[None, None]
        positions = (item_mask.long().cumsum(1) - 1).clamp(0, self.config.max_history)
        x = x + self.position_embed(positions)[:, :, None]
        return self.embed_dropout(self.embed_norm(x)).view(batch, length * (levels + 1), -1)

    # ------------------------------------------------------------------ training forward
    def _decode_by_length(self, x: torch.Tensor, item_mask: torch.Tensor) -> torch.Tensor:
        """The causal decoder over x Float[B, S, D] (S = H * (L + 1)) with item_mask Bool[B, H] -> Float[B, S, D].
        Rows are sorted by item count and decoded in config.length_buckets groups, each cut to the columns some of
        its rows use: padding columns are masked keys and positions come from the item mask, so the real positions
        get the same numbers as in one padded batch, at a fraction of the work (positions that are padding in a
        group come back as zeros)."""
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

    def _delete_items(self, input_ids, item_index, item_mask, labels):
        """Training augmentation (config.item_deletion): deletes each item with that chance and closes the gaps, so
        the rows stay left-padded (Long[B, H*L], Long[B, H], Bool[B, H], Long[B, H*L] in, same shapes out). Rows
        that would keep fewer than 2 items keep them all."""
        batch, length = item_index.shape
        levels = self.config.num_levels
        keep = item_mask & (torch.rand(item_mask.shape, device=item_mask.device) >= self.config.item_deletion)
        keep = torch.where((keep.sum(1) >= 2)[:, None], keep, item_mask)
        # a stable sort on the keep flag moves the kept items to the right end, in their order: left padding again
        order = torch.argsort(keep.to(torch.int8), dim=1, stable=True)
        per_item = order[..., None].expand(batch, length, levels)

        def regroup(tokens):
            return tokens.view(batch, length, levels).gather(1, per_item).reshape(batch, length * levels)

        kept = keep.gather(1, order)
        kept_tokens = kept.repeat_interleave(levels, 1)
        input_ids = regroup(input_ids) * kept_tokens
        labels = regroup(labels).masked_fill(~kept_tokens, -100)
        return input_ids, item_index.gather(1, order) * kept, kept, labels

    def forward(
        self,
        input_ids: torch.Tensor,
        item_index: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CobraOutput:
        """input_ids Long[B, H*L], item_index Long[B, H], attention_mask Long[B, H*L] (left-padded, from
        CobraTokenizer). labels Long[B, H*L]: normally a copy of input_ids (the collator makes it); items whose
        label codes are -100 are not predicted. With labels, the losses are computed for items 2..H."""
        item_mask = self._check_inputs(input_ids, attention_mask, item_index)
        if self.training and self.config.item_deletion > 0 and labels is not None:
            input_ids, item_index, item_mask, labels = self._delete_items(input_ids, item_index, item_mask, labels)
        batch, length = item_index.shape
        levels, width = self.config.num_levels, self.config.hidden_size
        # each distinct item of the batch goes through the text encoder once
        distinct, inverse = torch.unique(item_index[item_mask], return_inverse=True)
        # the InfoNCE negatives beyond the batch go through the same encoder pass: a negative computed any other
        # way (e.g. a bank of older vectors) differs systematically from fresh positives, and the model learns that
        # difference instead of the user (tried: the loss then stalls at log(catalog / batch items)). The
        # whole-catalog term below avoids it by scoring the positive from its bank too.
        columns_index = self._contrastive_items(distinct) if labels is not None else distinct
        if self.config.num_dense_negatives and not self.training and labels is not None:
            columns = self.all_item_vectors(normalized=False)[columns_index]
        else:
            columns = self.encode_items(columns_index)
        distinct_rows = torch.searchsorted(columns_index, distinct)
        distinct_vectors = columns[distinct_rows]
        slot = torch.zeros_like(item_index)
        slot[item_mask] = inverse
        item_vectors = distinct_vectors[slot] * item_mask[..., None]
        hidden = self._decode_by_length(self._embed(input_ids, item_mask, item_vectors), item_mask)
        grid = hidden.view(batch, length, levels + 1, width)
        # level 0 of item t+1 is read at v_t; level l of item t+1 at its code l-1
        readouts = [grid[:, :-1, levels]] + [grid[:, 1:, level - 1] for level in range(1, levels)]
        sparse_logits = tuple(head(x) for head, x in zip(self.sparse_head, readouts))
        dense_predictions = self.dense_head(grid[:, 1:, levels - 1])

        output = CobraOutput(
            sparse_logits=sparse_logits,
            dense_predictions=dense_predictions,
            item_vectors=item_vectors,
            last_hidden_state=hidden,
        )
        if labels is None:
            return output
        label_codes = labels.view(batch, length, levels)[:, 1:]
        target_valid = item_mask[:, :-1] & item_mask[:, 1:] & (label_codes >= 0).all(-1)
        if not bool(target_valid.any()):
            raise ValueError("No item to predict in this batch: every sequence needs at least 2 items.")
        targets = torch.where(target_valid[..., None], label_codes - self.level_offsets, torch.full_like(label_codes, -100))
        # mean cross-entropy over every predicted code (levels may have different sizes)
        sparse_loss = sum(
            F.cross_entropy(logits[target_valid], targets[..., level][target_valid], reduction="sum")
            for level, logits in enumerate(sparse_logits)
        ) / (target_valid.sum() * levels)
        target_columns = distinct_rows[slot[:, 1:][target_valid]]
        log_q = self._column_log_q(columns_index, int(item_mask.sum())) if self.config.dense_logq_correction else None
        dense_loss = info_nce(
            dense_predictions[target_valid], target_columns, columns, self.config.contrastive_temperature, log_q
        )
        loss = self.config.sparse_loss_weight * sparse_loss + self.config.dense_loss_weight * dense_loss
        history_dense_loss = history_predictions = None
        if self.config.history_dense_loss_weight > 0:
            if self.history_dense_head is None:
                raise ValueError("history_dense_loss_weight > 0 needs the ID-free dense head, which this model was "
                                 "built without (weight 0): build the model with the weight set.")
            history_predictions = self.history_dense_head(grid[:, :-1, levels][target_valid])
            history_dense_loss = info_nce(
                history_predictions, target_columns, columns, self.config.contrastive_temperature, log_q
            )
            loss = loss + self.config.history_dense_loss_weight * history_dense_loss
        catalog_dense_loss = None
        if self.config.catalog_dense_loss_weight > 0:
            # the bank holds no gradient: only the predicted vectors learn from the whole catalog
            bank = self._catalog_bank_vectors()
            target_items = distinct[slot[:, 1:][target_valid]]
            temperature = self.config.contrastive_temperature
            catalog_dense_loss = info_nce(dense_predictions[target_valid], target_items, bank, temperature)
            if history_predictions is not None:
                catalog_dense_loss = catalog_dense_loss + self.config.history_dense_loss_weight * info_nce(
                    history_predictions, target_items, bank, temperature
                )
            loss = loss + self.config.catalog_dense_loss_weight * catalog_dense_loss
        output.loss, output.sparse_loss, output.dense_loss = loss, sparse_loss, dense_loss
        output.history_dense_loss, output.catalog_dense_loss = history_dense_loss, catalog_dense_loss
        return output

    # ------------------------------------------------------------------ generation
    def _resolve_generation(self, generation_config, kwargs) -> dict:
        """Merges generate() kwargs over the generation config; `top_k` is accepted for recommend_top_k."""
        base = generation_config if generation_config is not None else self.generation_config
        settings = {name: getattr(base, name, default) for name, default in DEFAULT_GENERATION.items()}
        if "top_k" in kwargs:
            kwargs["recommend_top_k"] = kwargs.pop("top_k")
        if "mode" in kwargs:
            kwargs["recommend_mode"] = kwargs.pop("mode")
        unknown = set(kwargs) - set(settings) - {"tokenizer", "return_dict_in_generate", "max_new_tokens"}
        if unknown:
            raise ValueError(f"generate() got unknown arguments {sorted(unknown)}; it takes {sorted(settings)}.")
        settings.update({name: value for name, value in kwargs.items() if name in settings})
        if settings["do_sample"]:
            raise ValueError("do_sample=True is not supported: COBRA decoding is deterministic beam search.")
        if settings["recommend_mode"] not in GENERATION_MODES:
            raise ValueError(f"mode must be one of {GENERATION_MODES}, got {settings['recommend_mode']!r}.")
        for name in ("num_beams", "num_candidates", "recommend_top_k"):
            if int(settings[name]) < 1:
                raise ValueError(f"{name} must be at least 1, got {settings[name]}.")
        if int(settings["dense_guided_ids"]) < 0:
            raise ValueError(f"dense_guided_ids must be >= 0, got {settings['dense_guided_ids']}.")
        if int(settings["dense_guided_ids"]) and not self.config.history_dense_loss_weight:
            raise ValueError("dense_guided_ids needs the ID-free dense head: train with history_dense_loss_weight > 0.")
        if settings["recommend_mode"] == "dense" and not self.config.history_dense_loss_weight:
            raise ValueError("mode='dense' needs the ID-free dense head, which this model was trained without: "
                             "train with history_dense_loss_weight > 0 (--history_dense_loss_weight).")
        if settings["beam_fusion"] not in BEAM_FUSION_METHODS:
            raise ValueError(f"beam_fusion must be one of {BEAM_FUSION_METHODS}, got {settings['beam_fusion']!r}.")
        for name in ("beam_fusion_tau", "beam_fusion_psi", "beam_fusion_dense_psi"):
            try:
                settings[name] = float(settings[name])
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number, got {settings[name]!r}.") from None
            if not math.isfinite(settings[name]):
                raise ValueError(f"{name} must be finite, got {settings[name]}.")
        if settings["beam_fusion_dense_psi"] and not self.config.history_dense_loss_weight:
            raise ValueError(
                "beam_fusion_dense_psi needs the ID-free dense head: train with history_dense_loss_weight > 0."
            )
        if int(settings["recommend_top_k"]) > self.config.num_items:
            raise ValueError(
                f"top_k={settings['recommend_top_k']} asks for more items than the catalog holds ({self.config.num_items})."
            )
        return settings

    def set_generation_defaults(self, **kwargs) -> None:
        """Makes these generate() settings (the keyword arguments of `generate`, e.g. beam_fusion="joint",
        dense_guided_ids=50) the model's defaults: `generate()` without arguments, the Trainer's validation metrics
        and the pipeline use them, and save_pretrained writes them to generation_config.json. Checked like
        generate()'s own arguments (a ValueError names a wrong one); settings not given keep their value."""
        settings = self._resolve_generation(None, dict(kwargs))
        for name, value in settings.items():
            setattr(self.generation_config, name, value)

    def adjust_generation_fn(self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path,
                             **kwargs) -> None:
        """Called by from_pretrained (the hook GenerationMixin models use; COBRA has its own generate): restores the
        generate() defaults saved in generation_config.json, or takes from_pretrained(generation_config=...).
        Checkpoints without the file keep DEFAULT_GENERATION; a file with a wrong setting is a ValueError naming it."""
        if generation_config is None:
            download = {key: kwargs[key] for key in ("cache_dir", "force_download", "proxies", "local_files_only",
                                                     "token", "revision", "subfolder") if key in kwargs}
            try:
                generation_config = GenerationConfig.from_pretrained(pretrained_model_name_or_path, **download)
            except OSError as err:
                local = Path(str(pretrained_model_name_or_path), download.get("subfolder") or "", GENERATION_FILE)
                if local.is_file():  # there, but unreadable: say so rather than silently use other defaults
                    raise ValueError(f"{local} is not a valid generation config: {err}") from None
                return
        saved = {name: getattr(generation_config, name, default) for name, default in DEFAULT_GENERATION.items()}
        try:
            self.set_generation_defaults(**saved)
        except ValueError as err:
            raise ValueError(f"The generation config of {pretrained_model_name_or_path} ({GENERATION_FILE}): {err}") from None

    def _prefill(self, input_ids, item_mask, item_index) -> tuple[torch.Tensor, KVCache]:
        """Runs the history through the decoder once; returns the last position's output Float[B, D] and the cache."""
        item_vectors = self.all_item_vectors(normalized=False)[item_index] * item_mask[..., None]
        cache = KVCache(self.config.decoder_layers)
        levels = self.config.num_levels
        hidden = self.decoder(self._embed(input_ids, item_mask, item_vectors), item_mask.repeat_interleave(levels + 1, 1), cache)
        return hidden[:, -1], cache

    def _step(self, codes: torch.Tensor, level: int, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feeds code tokens of `level` (codes Long[R]) at item positions Long[R]; returns the outputs Float[R, D]."""
        token = self.code_embed(codes + self.level_offsets[level]) + self.type_embed.weight[level]
        x = self.embed_norm(token + self.position_embed(positions))[:, None]
        mask = torch.ones(codes.shape[0], 1, dtype=torch.bool, device=codes.device)
        return self.decoder(x, mask, cache)[:, 0]

    # the three heads' readouts, as the decoder below uses them (an ensemble of models overrides these)
    def _history_query(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """The ID-free prediction v_0, L2-normalised: last_hidden Float[B, D] -> Float[B, D]."""
        return F.normalize(self.history_dense_head(last_hidden), dim=-1)

    def _level_log_probs(self, hidden: torch.Tensor, level: int, allowed: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of level `level`'s codes over the allowed ones: hidden Float[..., D], allowed
        Bool[..., K_l] -> Float[..., K_l] (-inf where not allowed)."""
        return torch.log_softmax(self.sparse_head[level](hidden).masked_fill(~allowed, float("-inf")), dim=-1)

    def _beam_vectors(self, hidden: torch.Tensor) -> torch.Tensor:
        """The dense vector predicted for a completed ID: hidden Float[..., D] (output at its last code) -> Float[..., D]."""
        return self.dense_head(hidden)

    def beam_search(self, last_hidden, cache: KVCache, positions, num_beams: int, forced: torch.Tensor | None = None):
        """Beam search over valid semantic IDs.

        last_hidden Float[B, D] (output at the last history position); positions Long[B] (the next item's
        position); forced Long[B, G, L] or None: catalog IDs decoded alongside the beams (scored, not searched).
        Returns codes Long[B, M+G, L] (beams best first, then the forced IDs), scores Float[B, M+G] (summed
        log-probs; -inf = no such beam, or a forced ID already among the beams or earlier forced IDs) and the
        dense vector predicted for each Float[B, M+G, D]."""
        index = self.id_index
        batch = last_hidden.shape[0]
        levels = self.config.num_levels
        if forced is None:
            forced = torch.zeros(batch, 0, levels, dtype=torch.long, device=last_hidden.device)
        extra = forced.shape[1]
        log_probs = self._level_log_probs(last_hidden, 0, index.first_mask)
        beams = min(num_beams, index.num_ids)
        scores, first = torch.topk(log_probs, min(beams, log_probs.shape[-1]), dim=-1)  # [B, M]
        if scores.shape[1] < beams:  # fewer first codes than beams: the extra beams start dead (-inf)
            scores = F.pad(scores, (0, beams - scores.shape[1]), value=float("-inf"))
            first = F.pad(first, (0, beams - first.shape[1]))
        codes = first[..., None]
        forced_scores = log_probs.gather(1, forced[..., 0])  # [B, G]
        rows = beams + extra
        cache.start_beams(rows)  # beams share the history's keys; only their own tokens are cached per beam
        positions = positions.repeat_interleave(rows)
        forced_stay = torch.arange(beams, rows, device=last_hidden.device).expand(batch, -1)
        for level in range(1, levels):
            step_codes = torch.cat([codes[..., -1], forced[..., level - 1]], 1)  # [B, M+G]
            hidden = self._step(step_codes.reshape(-1), level - 1, positions, cache).view(batch, rows, -1)
            prefixes = torch.cat([codes, forced[..., :level]], 1)
            log_probs = self._level_log_probs(hidden, level, index.allowed_next(prefixes))  # [B, M+G, K_l]
            total = scores[..., None] + log_probs[:, :beams]
            width = total.shape[-1]
            scores, flat = torch.topk(total.view(batch, -1), beams, dim=-1)
            origin = torch.div(flat, width, rounding_mode="floor")
            codes = torch.cat([codes.gather(1, origin[..., None].expand(-1, -1, codes.shape[-1])), (flat % width)[..., None]], -1)
            forced_scores = forced_scores + log_probs[:, beams:].gather(-1, forced[..., level : level + 1]).squeeze(-1)
            cache.reorder_beams(torch.cat([origin, forced_stay], 1))  # forced rows keep their own cache
        hidden = self._step(torch.cat([codes[..., -1], forced[..., -1]], 1).reshape(-1), levels - 1, positions, cache)
        vectors = self._beam_vectors(hidden).view(batch, rows, -1)
        # a forced ID already decoded (a live beam, or an earlier forced row) would count its items twice
        seen = torch.cat([codes, forced], 1)
        same = (forced[:, :, None] == seen[:, None]).all(-1)  # [B, G, M+G]
        earlier = torch.ones(extra, rows, dtype=torch.bool, device=same.device).tril(beams - 1)
        live = torch.cat([scores > float("-inf"), torch.ones_like(forced_scores, dtype=torch.bool)], 1)
        forced_scores = forced_scores.masked_fill((same & earlier & live[:, None]).any(-1), float("-inf"))
        if beams < num_beams:  # fewer distinct IDs in the catalog than beams asked for
            pad = num_beams - beams
            codes = F.pad(codes, (0, 0, 0, pad))
            scores = F.pad(scores, (0, pad), value=float("-inf"))
            vectors = torch.cat([vectors[:, :beams], vectors.new_zeros(batch, pad, vectors.shape[-1]), vectors[:, beams:]], 1)
        return torch.cat([codes, forced], 1), torch.cat([scores, forced_scores], 1), vectors

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        item_index: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        **kwargs,
    ) -> CobraGenerationOutput:
        """Coarse-to-fine recommendation for a batch of histories (CobraTokenizer output).

        Keyword arguments (defaults from `generation_config`): num_beams (M), num_candidates (N per beam),
        dense_guided_ids (G, "cobra" mode, default 0 = the paper: the IDs of the G items nearest to the ID-free dense
        prediction are decoded beside the beams and ranked by BeamFusion with them; `semantic_ids` then holds M + G
        rows),
        top_k / recommend_top_k (K), beam_fusion_tau (tau), beam_fusion_psi (psi), beam_fusion ("cobra" mode: "paper",
        the default, ranks by Phi = softmax_M(tau * phi) * softmax_N(psi * cos(v_k, a)), normalised inside each beam;
        "joint" ranks all beams' candidates together by one softmax over the pairs (k, a) of
        tau * phi_k + psi * cos(v_k, a) + psi_h * cos(v_0, a), see cobra_generation.joint_fusion),
        beam_fusion_dense_psi (psi_h, "joint" only, default 0; v_0 is the ID-free dense prediction, so a non-zero
        psi_h needs history_dense_loss_weight > 0), mode ("cobra", "sparse", "dense", "no_fusion"; "dense" reads the ID-free
        head, so it needs history_dense_loss_weight > 0 too), exclude_history
        (drop items of the history; default False, as the paper describes no such filter), use_faiss (nearest-item search
        over the whole catalog through faiss).
        In "cobra" mode each beam's candidates are its ID's N items nearest to the beam's dense vector v_k, with either
        fusion; `scores` is the fusion weight Phi (with "joint", Phi sums to 1 over all candidates of a user).
        Beams that hold fewer than K items in all are topped up with the catalog items nearest to the best beam's
        dense vector, scored below every beam candidate (score (cos - 1) / 2 - 1, in [-2, -1]).
        With exclude_history, a row whose history leaves fewer than K other catalog items (top_k near the catalog size)
        comes back short: its missing slots are item -1 with score -inf, and a UserWarning counts such rows.
        """
        settings = self._resolve_generation(generation_config, dict(kwargs))
        if self.training:
            raise RuntimeError("Call model.eval() before generate(): dropout would make recommendations random.")
        item_mask = self._check_inputs(input_ids, attention_mask, item_index)
        if not bool(item_mask.any(1).all()):
            raise ValueError("A history in this batch is empty: a recommendation needs at least one item.")
        k, mode = int(settings["recommend_top_k"]), settings["recommend_mode"]
        catalog = self.all_item_vectors()
        faiss_index = self._faiss() if settings["use_faiss"] else None
        last_hidden, cache = self._prefill(input_ids, item_mask, item_index)
        positions = item_mask.sum(1).clamp(max=self.config.max_history)
        banned = item_index if settings["exclude_history"] else None

        if mode == "dense":
            query = self._history_query(last_hidden)
            items, scores = self._nearest(query, k, catalog, faiss_index, banned, item_mask)
            warn_short_rows(items, k, banned is not None)
            return CobraGenerationOutput(item_indices=items, scores=scores)

        num_beams = 1 if mode == "no_fusion" else int(settings["num_beams"])
        forced = None
        joint = mode == "cobra" and settings["beam_fusion"] == "joint"
        psi_h = settings["beam_fusion_dense_psi"] if joint else 0.0
        query = None  # v_0, the ID-free prediction Float[B, D] (L2-normalised), when a setting reads it
        if mode == "cobra" and (int(settings["dense_guided_ids"]) > 0 or psi_h):
            query = self._history_query(last_hidden)
        if mode == "cobra" and int(settings["dense_guided_ids"]) > 0:
            # the IDs of the items nearest to the ID-free dense prediction join the beams (scored by the sparse
            # heads, ranked by BeamFusion like any beam): the dense path proposes IDs the beam search pruned
            guided, _ = self._nearest(query, min(int(settings["dense_guided_ids"]), self.config.num_items), catalog,
                                      faiss_index, None, None)
            forced = self.item_codes[guided.clamp(min=0)]
        codes, beam_scores, beam_vectors = self.beam_search(last_hidden, cache, positions, num_beams, forced)
        beam_vectors_n = F.normalize(beam_vectors, dim=-1)
        members, member_valid = self.id_index.items_of(codes)  # [B, M, P]
        member_valid &= (beam_scores > float("-inf"))[..., None]
        batch = codes.shape[0]
        if mode in ("cobra", "no_fusion"):
            # most IDs hold 1-2 items while P is the largest group: score only the real (beam, item) pairs
            pair = member_valid.nonzero(as_tuple=True)
            cos = torch.full(members.shape, float("-inf"), device=members.device)
            cos[pair] = (beam_vectors_n[pair[0], pair[1]] * catalog[members[pair]]).sum(-1)
            n = min(int(settings["num_candidates"]), cos.shape[-1]) if mode == "cobra" else cos.shape[-1]
            top_cos, top = torch.topk(cos, n, dim=-1)
            candidates = members.gather(-1, top)
            valid = member_valid.gather(-1, top)
            if joint:
                # cos(v_0, a) only for the real (beam, item) pairs, like cos(v_k, a) above; psi_h = 0 needs none
                history_cos = torch.zeros_like(top_cos)
                if psi_h:
                    pair = valid.nonzero(as_tuple=True)
                    history_cos[pair] = (query[pair[0]] * catalog[candidates[pair]]).sum(-1)
                phi = joint_fusion(beam_scores, top_cos, history_cos, valid, settings["beam_fusion_tau"],
                                   settings["beam_fusion_psi"], psi_h)
            elif mode == "cobra":
                phi = beam_fusion(beam_scores, top_cos, valid, settings["beam_fusion_tau"], settings["beam_fusion_psi"])
            else:
                phi = (top_cos + 1.0) / 2.0  # the top-1 ID's items by cosine
            scores = phi.masked_fill(~valid, float("-inf")).view(batch, -1)
        else:  # sparse: items ranked by their ID's beam score, catalog order inside an ID
            candidates = members
            scores = beam_scores[..., None].exp().expand_as(members).masked_fill(~member_valid, float("-inf"))
            scores = scores.reshape(batch, -1)
        candidates = candidates.reshape(batch, -1)
        if banned is not None:
            scores = mask_items(scores, candidates, banned, item_mask)
        items, best = top_k_items(scores, candidates, k)
        short = (items < 0).any(1)
        if bool(short.any()):
            # top up from the whole catalog by the best beam's dense vector
            rows = short.nonzero().squeeze(1)
            exclude = items[rows]
            exclude_valid = exclude >= 0
            if banned is not None:
                exclude = torch.cat([exclude, banned[rows]], 1)
                exclude_valid = torch.cat([exclude_valid, item_mask[rows]], 1)
            extra, extra_scores = self._nearest(beam_vectors_n[rows, 0], k, catalog, faiss_index, exclude, exclude_valid)
            extra_scores = (extra_scores - 1.0) / 2.0 - 1.0
            merged_items = torch.cat([items[rows], extra], 1)
            merged_scores = torch.cat([best[rows], extra_scores.masked_fill(extra < 0, float("-inf"))], 1)
            items[rows], best[rows] = top_k_items(merged_scores, merged_items, k)
        warn_short_rows(items, k, banned is not None)
        return CobraGenerationOutput(
            item_indices=items, scores=best, semantic_ids=codes, beam_scores=beam_scores, beam_vectors=beam_vectors
        )

    def _nearest(self, query, k, catalog, faiss_index, banned, banned_valid):
        """Top-k catalog items by cosine with query Float[R, D], skipping banned Long[R, H] (where valid)."""
        extra = 0 if banned is None else banned.shape[1]
        items, cos = nearest_items(query, catalog, k + extra, faiss_index)
        if banned is not None:
            cos = mask_items(cos, items, banned, banned_valid)
        return top_k_items(cos, items, k)
