"""COBRA: cascaded sparse-dense generative recommendation (Yang et al., arXiv 2503.02453) as a transformers model.

A history of H items becomes the interleaved sequence `c_1^1..c_1^L, v_1, ..., c_H^1..c_H^L, v_H` (L code tokens
then one dense token per item). A causal decoder reads it:
  * the output at v_t feeds the SparseHead for code 1 of item t+1; the output at code l of item t+1 for code l+1;
  * the output at the last code of item t+1 is the predicted dense vector of item t+1 (the cascade:
    P(ID, v | S) = P(ID | S) P(v | ID, S)).
Laid out like transformers' own models: `CobraModel` (cobra_backbone.py) is the backbone (embeddings, item-text
encoder, causal decoder, the catalog buffers), `CobraForSequentialRecommendation` holds it as `model`
(base_model_prefix) and adds the heads and losses (and, with config.id_trunk, a second backbone for the IDs:
cobra_id_trunk.py). `generate` is cobra_generation's coarse-to-fine decoder; the catalog's derived data (item
vectors, ID index, faiss) lives in one `CatalogIndex`.

Shapes: B batch, H history items, L levels, S = H * (L + 1) sequence positions, D hidden size, I catalog items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig
from transformers.utils import ModelOutput

from .cobra_backbone import CobraModel, CobraModelOutput, CobraPreTrainedModel
from .cobra_catalog_index import CatalogIndex, SemanticIdIndex
from .cobra_generation import (DEFAULT_GENERATION, CobraGenerationOutput, generate, restore_generation_defaults,
                               set_generation_defaults)
from .cobra_id_trunk import IdTrunk
from .cobra_item_output import ItemOutputTable, decoding_logits
from .cobra_layers import KVCache, KVCacheGroup
from .cobra_losses import (catalog_columns, code_readouts, column_log_q, contrastive_items, delete_items, info_nce,
                           item_frequencies, sparse_cross_entropy)
from .configuration_cobra import CobraConfig
from .legacy_keys import rename_legacy_keys

# The "cobra-recommendation" pipeline (pipeline_cobra.py) travels with every checkpoint: config.json's
# custom_pipelines tells `transformers.pipeline` where it is, and save_pretrained copies the file because this module
# imports it (see `recommendation_pipeline`).
CUSTOM_PIPELINES = {
    "cobra-recommendation": {"impl": "pipeline_cobra.CobraRecommendationPipeline", "pt": ["AutoModel"], "type": "text"}
}
__all__ = ["CobraForSequentialRecommendation", "CobraGenerationOutput", "CobraModel", "CobraModelOutput", "CobraOutput",
           "CobraPreTrainedModel", "DEFAULT_GENERATION", "info_nce"]


def batch_items(item_index: torch.Tensor, item_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """item_index Long[B, H], item_mask Bool[B, H] -> (the batch's distinct items Long[U], sorted; each slot's row
    among them Long[B, H], 0 where masked)."""
    distinct, inverse = torch.unique(item_index[item_mask], return_inverse=True)
    slot = torch.zeros_like(item_index)
    slot[item_mask] = inverse
    return distinct, slot


@dataclass
class CobraOutput(ModelOutput):
    """loss: weighted sum of the losses below (when labels are given).
    sparse_loss: cross-entropy of the code heads that decode (the ID trunk's when config.id_trunk);
    backbone_sparse_loss: with an ID trunk, that of the main backbone's own code heads (trained, never decoded).
    sparse_logits: per level l, Float[B, H - 1, K_l] logits of code l of items 2..H (the heads that decode).
    dense_predictions: Float[B, H - 1, D] predicted dense vectors of items 2..H (conditioned on their IDs).
    item_vectors: Float[B, H, D] the history items' dense vectors from the item-text encoder.
    last_hidden_state: Float[B, S, D]."""

    loss: torch.Tensor | None = None
    sparse_loss: torch.Tensor | None = None
    backbone_sparse_loss: torch.Tensor | None = None
    dense_loss: torch.Tensor | None = None
    history_dense_loss: torch.Tensor | None = None
    sparse_logits: tuple[torch.Tensor, ...] | None = None
    dense_predictions: torch.Tensor | None = None
    item_vectors: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


class CobraForSequentialRecommendation(CobraPreTrainedModel):
    """COBRA with its catalog: the `CobraModel` backbone as `model`, the sparse (per-level code) heads, the dense
    head and, with history_dense_loss_weight > 0, the ID-free dense head; with config.id_trunk, a second backbone
    with its own code heads as `id_trunk` (cobra_id_trunk.py); the losses; coarse-to-fine `generate`."""

    def __init__(self, config: CobraConfig):
        super().__init__(config)
        width = config.hidden_size
        self.model = CobraModel(config, defer_init=True)
        self.sparse_head = nn.ModuleList(nn.Linear(width, size) for size in config.level_sizes)
        self.dense_head = nn.Linear(width, width)
        # the ID-free head ("dense" mode, dense_guided_ids, beam_fusion_dense_psi) only exists when a loss trains it
        self.history_dense_head = nn.Linear(width, width) if config.history_dense_loss_weight > 0 else None
        self.id_trunk = IdTrunk(config) if config.id_trunk else None
        # with an ID trunk the per-item output rows are the trunk's (its heads drive the beams)
        self.item_output = ItemOutputTable(config.num_items, width) \
            if config.item_output_embeddings and not config.id_trunk else None
        # besides invalidate_caches(), the item vectors are rebuilt when a tensor of the backbone (whose encode_catalog
        # makes them) moves (.to) or is edited in place
        self.catalog_index = CatalogIndex(self.model.encode_catalog, lambda: self.model.item_codes, config.level_sizes,
                                          weights=lambda: [*self.model.parameters(), *self.model.buffers()])
        # share of the training item slots each item fills, Float[I] (set_item_frequencies; training only, not saved)
        self._item_frequency: torch.Tensor | None = None
        # train_id_trunk_only: forward computes the ID trunk's loss alone (a training mode, not saved)
        self._id_trunk_only = False
        # the tokenizer's [PAD] is the config's pad_token_id; the Trainer warns and rewrites both when the generation
        # config lacks it
        self.generation_config = GenerationConfig(pad_token_id=config.pad_token_id, **DEFAULT_GENERATION)
        if not getattr(config, "custom_pipelines", None):
            config.custom_pipelines = {task: dict(info) for task, info in CUSTOM_PIPELINES.items()}
        self.post_init()
        for backbone in self.backbones():
            backbone._defer_init = False
        self._register_load_state_dict_pre_hook(rename_legacy_keys)
        # new weights or catalog buffers make the catalog index stale
        self.register_load_state_dict_post_hook(lambda module, keys: module.invalidate_caches())

    @staticmethod
    def recommendation_pipeline():
        """The `cobra-recommendation` pipeline class (this import also makes save_pretrained copy pipeline_cobra.py)."""
        from .pipeline_cobra import CobraRecommendationPipeline

        return CobraRecommendationPipeline

    @classmethod
    def can_generate(cls) -> bool:
        # generate() is our own coarse-to-fine decoder; True makes transformers save generation_config.json
        return True

    # ------------------------------------------------------------------ catalog
    item_codes = property(lambda self: self.model.item_codes, doc="Long[I, L]: each catalog item's semantic ID.")
    item_text_ids = property(lambda self: self.model.item_text_ids, doc="Long[I, T]: each item's text tokens.")
    item_text_embeddings = property(lambda self: self.model.item_text_embeddings,
                                    doc="Float[I, E] or None: each item's frozen sentence embedding.")
    level_offsets = property(lambda self: self.model.level_offsets, doc="Long[L]: token id of code 0 of each level.")

    def set_catalog(self, item_codes: torch.Tensor, item_text_ids: torch.Tensor, item_text_embeddings=None, catalog_hash=""):
        """Installs a catalog: codes Long[I, L], text ids Long[I, T], sentence embeddings Float[I, E] or None."""
        self.model.set_catalog(item_codes, item_text_ids, item_text_embeddings)
        if self.id_trunk is not None:  # its own copies: safetensors saves no tensor twice
            self.id_trunk.model.set_catalog(item_codes.clone(), item_text_ids.clone(),
                                            None if item_text_embeddings is None else item_text_embeddings.clone())
        if self.item_output_table is not None:
            self.item_output_table.resize(int(item_codes.shape[0]))
        self.config.num_items = int(item_codes.shape[0])
        self.config.catalog_hash = catalog_hash
        self.invalidate_caches()

    def invalidate_caches(self) -> None:
        """The weights or the catalog changed: the item vectors, ID index and faiss index are rebuilt on next use.
        Called by load_state_dict, set_catalog and train(); `.to()` and in-place edits in eval mode are noticed too
        (see CatalogIndex), an edit through `.data` is not."""
        self.catalog_index.invalidate()
        if self.id_trunk is not None:
            self.id_trunk.catalog_index.invalidate()

    def train(self, mode: bool = True):
        # weights are about to change (a fused optimizer step leaves no trace CatalogIndex could see): the item
        # vectors go, the ID index stays (it follows the codes); model.eval() keeps both for repeated evaluations
        if mode:
            self.catalog_index.invalidate(keep_ids=True)
            if self.id_trunk is not None:
                self.id_trunk.catalog_index.invalidate(keep_ids=True)
        return super().train(mode)

    def backbones(self) -> list[CobraModel]:
        """The main backbone, then the ID trunk's if any: whatever changes the catalog or the item embeddings
        changes each of them."""
        return [self.model] + ([] if self.id_trunk is None else [self.id_trunk.model])

    @property
    def item_output_table(self) -> ItemOutputTable | None:
        """The per-item output rows of the code heads that drive the beams (config.item_output_embeddings): this
        model's, or its ID trunk's; None without them."""
        return self.item_output if self.id_trunk is None else self.id_trunk.item_output

    @property
    def decoder_width(self) -> int:
        """Width of the outputs prefill and step return: D, or 2D with an ID trunk (main, then trunk)."""
        return self.config.hidden_size * (2 if self.id_trunk is not None else 1)

    @property
    def id_index(self) -> SemanticIdIndex:
        return self.catalog_index.ids

    def all_item_vectors(self, normalized: bool = True, batch_size: int = 4096) -> torch.Tensor:
        """Dense vectors of the whole catalog Float[I, D] (L2-normalised unless normalized=False); computed once
        and cached until the weights or the catalog change (see CatalogIndex)."""
        return self.catalog_index.item_vectors(normalized)

    def faiss_index(self):
        return self.catalog_index.faiss()

    def encode_items(self, item_index: torch.Tensor) -> torch.Tensor:
        """item_index Long[n] -> dense vectors Float[n, D] from the item-text encoder (with gradients)."""
        return self.model.encode_items(item_index)

    def check_inputs(self, input_ids, attention_mask, item_index) -> torch.Tensor:
        return self.model.check_inputs(input_ids, attention_mask, item_index)

    def set_item_frequencies(self, counts: torch.Tensor) -> None:
        """counts Float or Long[I]: how many item slots of the training sequences each catalog item fills. Needed
        to train with config.dense_logq_correction (`cobra-hf train` sets it from the training split); a training
        statistic, not saved with the weights (cobra_losses.item_frequencies smooths it)."""
        self._item_frequency = item_frequencies(counts, self.config.num_items)

    # ------------------------------------------------------------------ training forward
    def _column_log_q(self, columns_index: torch.Tensor, item_slots: int) -> torch.Tensor | None:
        """log Q Float[C] of the InfoNCE columns (cobra_losses.column_log_q); None for whole-catalog columns (Q = 1)."""
        if catalog_columns(self.config, self.training):
            return None
        if self._item_frequency is None or self._item_frequency.shape[0] != self.config.num_items:
            raise ValueError(
                "dense_logq_correction needs the items' training frequencies for this catalog: call "
                "model.set_item_frequencies(counts) before training (`cobra-hf train` does it)."
            )
        return column_log_q(self._item_frequency, columns_index, item_slots, self.config.num_dense_negatives,
                            self.config.num_items)

    def forward(self, input_ids: torch.Tensor, item_index: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, return_dict: bool | None = None, **kwargs) -> CobraOutput:
        """input_ids Long[B, H*L], item_index Long[B, H], attention_mask Long[B, H*L] (left-padded, from
        CobraTokenizer). labels Long[B, H*L]: normally a copy of input_ids (the collator makes it); items whose
        label codes are -100 are not predicted. With labels, the losses are computed for items 2..H."""
        config = self.config
        item_mask = self.check_inputs(input_ids, attention_mask, item_index)
        if self.training and config.item_deletion > 0 and labels is not None:
            input_ids, item_index, item_mask, labels = delete_items(input_ids, item_index, item_mask, labels,
                                                                    config.item_deletion, config.num_levels)
        if self._id_trunk_only and labels is not None:
            return self._id_trunk_loss(input_ids, item_index, item_mask, labels)
        batch, length = item_index.shape
        levels, width = config.num_levels, config.hidden_size
        # each distinct item of the batch goes through the text encoder once, with the InfoNCE negatives beyond the
        # batch: a negative computed any other way (e.g. a bank of older vectors) differs systematically from fresh
        # positives, and the model learns that difference instead of the user (tried: the loss then stalls at
        # log(catalog / batch items))
        distinct, slot = batch_items(item_index, item_mask)
        columns_index = contrastive_items(distinct, config, self.training) if labels is not None else distinct
        if config.num_dense_negatives and not self.training and labels is not None:
            columns = self.all_item_vectors(normalized=False)[columns_index]
        else:
            columns = self.encode_items(columns_index)
        distinct_rows = torch.searchsorted(columns_index, distinct)
        item_vectors = columns[distinct_rows][slot] * item_mask[..., None]
        hidden = self.model(input_ids, item_index, item_vectors=item_vectors, item_mask=item_mask).last_hidden_state
        grid = hidden.view(batch, length, levels + 1, width)
        readouts = code_readouts(grid)
        sparse_logits = tuple(head(x) for head, x in zip(self.sparse_head, readouts))
        if self.item_output is not None:
            sparse_logits = self.item_output.teacher_forced(self.id_index, sparse_logits, readouts, input_ids,
                                                            item_mask, self.model.level_offsets)
        trunk_logits = None if self.id_trunk is None else self.id_trunk.sparse_logits(input_ids, item_mask, distinct,
                                                                                       slot)
        dense_predictions = self.dense_head(grid[:, 1:, levels - 1])
        output = CobraOutput(sparse_logits=sparse_logits if trunk_logits is None else trunk_logits,
                             dense_predictions=dense_predictions,
                             item_vectors=item_vectors, last_hidden_state=hidden)
        if labels is None:
            return output
        targets, target_valid = self._code_targets(labels, item_mask)
        output.sparse_loss = sparse_cross_entropy(sparse_logits, targets, target_valid)
        sparse_total = output.sparse_loss
        if trunk_logits is not None:
            output.backbone_sparse_loss, output.sparse_loss = output.sparse_loss, sparse_cross_entropy(
                trunk_logits, targets, target_valid)
            sparse_total = output.sparse_loss + output.backbone_sparse_loss
        target_columns = distinct_rows[slot[:, 1:][target_valid]]
        log_q = self._column_log_q(columns_index, int(item_mask.sum())) if config.dense_logq_correction else None
        temperature = config.contrastive_temperature
        output.dense_loss = info_nce(dense_predictions[target_valid], target_columns, columns, temperature, log_q)
        output.loss = config.sparse_loss_weight * sparse_total + config.dense_loss_weight * output.dense_loss
        if config.history_dense_loss_weight > 0:
            if self.history_dense_head is None:
                raise ValueError("history_dense_loss_weight > 0 needs the ID-free dense head, which this model was "
                                 "built without (weight 0): build the model with the weight set.")
            history_predictions = self.history_dense_head(grid[:, :-1, levels][target_valid])
            output.history_dense_loss = info_nce(history_predictions, target_columns, columns, temperature, log_q)
            output.loss = output.loss + config.history_dense_loss_weight * output.history_dense_loss
        return output

    def _code_targets(self, labels: torch.Tensor, item_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """labels Long[B, H*L], item_mask Bool[B, H] -> (per-level code targets of items 2..H Long[B, H - 1, L], -100
        where not predicted; which of those items are predicted Bool[B, H - 1])."""
        batch, length = item_mask.shape
        label_codes = labels.view(batch, length, self.config.num_levels)[:, 1:]
        target_valid = item_mask[:, :-1] & item_mask[:, 1:] & (label_codes >= 0).all(-1)
        if not bool(target_valid.any()):
            raise ValueError("No item to predict in this batch: every sequence needs at least 2 items.")
        targets = torch.where(target_valid[..., None], label_codes - self.level_offsets, torch.full_like(label_codes, -100))
        return targets, target_valid

    def _id_trunk_loss(self, input_ids, item_index, item_mask, labels) -> CobraOutput:
        """forward under train_id_trunk_only: the ID trunk's sparse loss alone; the main backbone is not run."""
        distinct, slot = batch_items(item_index, item_mask)
        logits = self.id_trunk.sparse_logits(input_ids, item_mask, distinct, slot)
        targets, target_valid = self._code_targets(labels, item_mask)
        sparse_loss = sparse_cross_entropy(logits, targets, target_valid)
        return CobraOutput(loss=self.config.sparse_loss_weight * sparse_loss, sparse_loss=sparse_loss,
                           sparse_logits=logits)

    def train_id_trunk_only(self, enabled: bool = True) -> None:
        """Trains the ID trunk alone (config.id_trunk): every other parameter is frozen and forward computes only the
        trunk's sparse loss, without running the main backbone, so a step costs what an ID-only model's does. This
        gives the trunk more epochs than the dense half (`cobra-hf train --init_from CKPT --train_only id_trunk`).
        `enabled=False` restores what was trainable before."""
        if self.id_trunk is None:
            raise ValueError("train_id_trunk_only needs a model with an ID trunk (config.id_trunk); this one has none.")
        if enabled == self._id_trunk_only:
            return
        if enabled:
            self._trainable_before = {name: p.requires_grad for name, p in self.named_parameters()}
            for name, parameter in self.named_parameters():
                parameter.requires_grad_(name.startswith("id_trunk.") and self._trainable_before[name])
        else:
            for name, parameter in self.named_parameters():
                parameter.requires_grad_(self._trainable_before.get(name, True))
        self._id_trunk_only = enabled

    # ------------------------------------------------------------------ generation (cobra_generation's protocol)
    def prefill(self, input_ids, item_mask, item_index) -> tuple[torch.Tensor, KVCache]:
        """Runs the history through the decoder once; returns the last position's output Float[B, W] (W =
        decoder_width: an ID trunk's output follows the backbone's) and the cache."""
        item_vectors = self.all_item_vectors(normalized=False)[item_index] * item_mask[..., None]
        hidden, cache = self.model.prefill(input_ids, item_mask, item_vectors)
        if self.id_trunk is None:
            return hidden, cache
        trunk_hidden, trunk_cache = self.id_trunk.prefill(input_ids, item_mask, item_index)
        return torch.cat([hidden, trunk_hidden], -1), KVCacheGroup([cache, trunk_cache])

    def step(self, codes: torch.Tensor, level: int, positions: torch.Tensor, cache) -> torch.Tensor:
        if self.id_trunk is None:
            return self.model.step(codes, level, positions, cache)
        return torch.cat([self.model.step(codes, level, positions, cache.caches[0]),
                          self.id_trunk.model.step(codes, level, positions, cache.caches[1])], -1)

    def _backbone_part(self, hidden: torch.Tensor) -> torch.Tensor:
        """The main backbone's share of a prefill/step output Float[..., W] -> Float[..., D] (all of it without a
        trunk)."""
        return hidden if self.id_trunk is None else hidden[..., : self.config.hidden_size]

    def history_query(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """The ID-free prediction v_0, L2-normalised: last_hidden Float[B, W] -> Float[B, D] (fp32: it ranks items)."""
        return F.normalize(self.history_dense_head(self._backbone_part(last_hidden)).float(), dim=-1)

    def level_log_probs(self, hidden: torch.Tensor, level: int, allowed: torch.Tensor,
                        prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities of level `level`'s codes over the allowed ones: hidden Float[..., W], allowed
        Bool[..., K_l], prefix Long[..., level] (the codes before; read by the item output table) -> Float[..., K_l]
        (-inf where not allowed), from the ID trunk's heads when there is one. In
        fp32 whatever the model's dtype: the beam search sums these over levels and ranks by them, and bf16 would
        round close beams into ties."""
        if self.id_trunk is None:
            logits = decoding_logits(self.sparse_head[level], self.item_output, self.id_index, hidden, level, prefix)
        else:
            trunk = self.id_trunk
            logits = decoding_logits(trunk.sparse_head[level], trunk.item_output, self.id_index,
                                     hidden[..., self.config.hidden_size:], level, prefix)
        return torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)

    def beam_vectors(self, hidden: torch.Tensor) -> torch.Tensor:
        """The dense vector predicted for a completed ID: hidden Float[..., W] (output at its last code) -> Float[..., D]
        (fp32: its cosines with the catalog rank items)."""
        return self.dense_head(self._backbone_part(hidden)).float()

    def generate(self, input_ids: torch.Tensor, item_index: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 generation_config: GenerationConfig | None = None, **kwargs) -> CobraGenerationOutput:
        """Coarse-to-fine recommendation for a batch of histories (CobraTokenizer output).

        Keyword arguments (defaults from `generation_config`): top_k (K, the number of recommendations; see
        cobra_generation), num_beams (M), num_candidates (N per beam), mode ("cobra", "sparse", "dense",
        "no_fusion"; "dense" reads the ID-free head, so it needs history_dense_loss_weight > 0),
        beam_fusion ("cobra" mode: "paper", the default, ranks by Phi = softmax_M(tau * phi) *
        softmax_N(psi * cos(v_k, a)), normalised inside each beam; "joint" ranks all beams' candidates together by
        one softmax over the pairs (k, a) of tau * phi_k + psi * cos(v_k, a) + psi_h * cos(v_0, a)),
        beam_fusion_tau (tau), beam_fusion_psi (psi), beam_fusion_dense_psi (psi_h, "joint" only, default 0; v_0 is
        the ID-free dense prediction, so a non-zero psi_h needs history_dense_loss_weight > 0), dense_guided_ids
        (G, "cobra" mode, default 0 = the paper: the IDs of the G items nearest to v_0 are decoded beside the beams
        and ranked by BeamFusion with them; `semantic_ids` then holds M + G rows), exclude_history (drop items of
        the history; default False, as the paper describes no such filter; `history_items`, from
        CobraTokenizer.history_items, extends it to the items of histories longer than max_history), use_faiss
        (nearest-item search over the whole catalog through faiss).
        In "cobra" mode each beam's candidates are its ID's N items nearest to the beam's dense vector v_k, with either
        fusion; `scores` is the fusion weight Phi (with "joint", Phi sums to 1 over all candidates of a user).
        Beams that hold fewer than K items in all are topped up with the catalog items nearest to the best beam's
        dense vector, scored below every beam candidate (score (cos - 1) / 2 - 1, in [-2, -1]).
        With exclude_history, a row whose history leaves fewer than K other catalog items (top_k near the catalog size)
        comes back short: its missing slots are item -1 with score -inf, and a UserWarning counts such rows.
        tokenizer, return_dict_in_generate and max_new_tokens (transformers' generate) are refused: they would do
        nothing here.
        """
        return generate(self, input_ids, item_index, attention_mask, generation_config, **kwargs)

    def set_generation_defaults(self, **kwargs) -> None:
        """Makes these generate() settings (the keyword arguments of `generate`, e.g. beam_fusion="joint",
        dense_guided_ids=50) the model's defaults: `generate()` without arguments, the Trainer's validation metrics
        and the pipeline use them, and save_pretrained writes them to generation_config.json. Checked like
        generate()'s own arguments (a ValueError names a wrong one); settings not given keep their value."""
        set_generation_defaults(self, kwargs)

    def adjust_generation_fn(self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path,
                             **kwargs) -> None:
        """Called by from_pretrained (the hook GenerationMixin models use; COBRA has its own generate): restores the
        generate() defaults saved in generation_config.json, or takes from_pretrained(generation_config=...).
        Checkpoints without the file keep DEFAULT_GENERATION; a file with a wrong setting is a ValueError naming it."""
        restore_generation_defaults(self, generation_config, pretrained_model_name_or_path, kwargs)
