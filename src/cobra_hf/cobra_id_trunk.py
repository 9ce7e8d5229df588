"""The ID trunk (config.id_trunk): a second backbone whose only job is the semantic IDs.

Beside the dense losses, one shared decoder predicts the IDs about 20% worse than the same decoder trained for IDs
alone, and then COBRA's beams add nothing to its dense mode (docs/EXPERIMENTS.md, "Where the cascade's gain comes
from"). With an ID trunk, a `CobraModel` of the same sizes with its own item encoder and per-level code heads reads
the same interleaved sequence and is trained by the sparse loss alone; its code probabilities drive the beam search,
while the main backbone gives every dense vector (the ID-conditioned v_k, the ID-free v_0, the catalog's). It doubles
the parameters and the decoding work. `train_id_trunk_only()` (modeling_cobra) trains the trunk alone, for more
epochs than the dense half. Travels with every checkpoint for trust_remote_code (modeling_cobra imports it).

Shapes: B batch, H history items, L levels, D hidden size, I catalog items, K_l codes of level l.
"""

from __future__ import annotations

import torch
from torch import nn

from .cobra_backbone import CobraModel
from .cobra_catalog_index import CatalogIndex
from .cobra_item_output import ItemOutputTable
from .cobra_layers import KVCache
from .cobra_losses import code_readouts
from .configuration_cobra import CobraConfig


class IdTrunk(nn.Module):
    """`model`: a CobraModel with the main backbone's config (its own catalog buffers, kept equal to the main one's
    by CobraForSequentialRecommendation.set_catalog); `sparse_head`: one Linear(D, K_l) per level; `item_output`:
    the per-item output rows of its code heads (config.item_output_embeddings), else None. Its catalog vectors (the
    dense tokens it reads, from its own item encoder) are cached like the main model's."""

    def __init__(self, config: CobraConfig):
        super().__init__()
        self.model = CobraModel(config, defer_init=True)
        self.sparse_head = nn.ModuleList(nn.Linear(config.hidden_size, size) for size in config.level_sizes)
        self.item_output = ItemOutputTable(config.num_items, config.hidden_size) if config.item_output_embeddings \
            else None
        self.catalog_index = CatalogIndex(self.model.encode_catalog, lambda: self.model.item_codes, config.level_sizes,
                                          weights=lambda: [*self.model.parameters(), *self.model.buffers()])

    def sparse_logits(self, input_ids: torch.Tensor, item_mask: torch.Tensor, distinct: torch.Tensor,
                      slot: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Teacher-forced code logits of items 2..H: input_ids Long[B, H*L], item_mask Bool[B, H], the batch's
        distinct items Long[U] and each slot's row among them Long[B, H] -> per level Float[B, H - 1, K_l]."""
        item_vectors = self.model.encode_items(distinct)[slot] * item_mask[..., None]
        hidden = self.model(input_ids, None, item_vectors=item_vectors, item_mask=item_mask).last_hidden_state
        batch, length = item_mask.shape
        grid = hidden.view(batch, length, self.model.config.num_levels + 1, -1)
        readouts = code_readouts(grid)
        logits = tuple(head(x) for head, x in zip(self.sparse_head, readouts))
        if self.item_output is None:
            return logits
        return self.item_output.teacher_forced(self.catalog_index.ids, logits, readouts, input_ids, item_mask,
                                               self.model.level_offsets)

    def prefill(self, input_ids, item_mask, item_index) -> tuple[torch.Tensor, KVCache]:
        """The history through this trunk: (Float[B, D] the last position's output, its cache)."""
        item_vectors = self.catalog_index.item_vectors(normalized=False)[item_index] * item_mask[..., None]
        return self.model.prefill(input_ids, item_mask, item_vectors)
