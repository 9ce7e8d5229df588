"""Per-item output vectors for the code heads (config.item_output_embeddings).

The code heads share one output vector per code of a level, so the ranking of whole IDs can only use what the codes
have in common. With this table, the logit of code k of level l >= 1 after a prefix p also gets <h, u(p + k)>, where
u(q) is the mean of a learned per-item row over the catalog items whose ID starts with q. On 3x256 IDs a prefix of
two codes holds 1.3 items on average, so from the second level on the output side ranks nearly per item, as the
per-item input embedding (use_item_embeddings) does on the history side. The first level is left to its head.

The rows start at zero, so a model starts as it would without the table (and draws no random numbers for it).

Shapes: I catalog items, D hidden size, K_l codes of level l, C the most codes that follow one prefix.
"""

from __future__ import annotations

import torch
from torch import nn

from .cobra_catalog_index import SemanticIdIndex


class ItemOutputTable(nn.Module):
    """weight Float[I, D]: one output row per catalog item, zero at initialisation."""

    def __init__(self, num_items: int, hidden_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_items, hidden_size))

    def resize(self, num_items: int) -> None:
        """A new catalog size: old rows are kept, new items start at zero."""
        if num_items == self.weight.shape[0]:
            return
        rows = self.weight.new_zeros(num_items, self.weight.shape[1])
        keep = min(num_items, self.weight.shape[0])
        with torch.no_grad():
            rows[:keep] = self.weight[:keep]
        self.weight = nn.Parameter(rows)

    def prefix_vectors(self, index: SemanticIdIndex, level: int) -> torch.Tensor:
        """Float[R, D]: per prefix of length level + 1 (the rows of index.prefix_keys[level]), the mean row of its
        items."""
        rows = index.item_rows[level]
        count = torch.zeros(len(index.prefix_keys[level]), device=rows.device).index_add_(
            0, rows, torch.ones_like(rows, dtype=torch.float))
        total = self.weight.new_zeros(len(count), self.weight.shape[1]).index_add(0, rows, self.weight)
        return total / count.clamp(min=1)[:, None].to(total.dtype)

    def logits(self, index: SemanticIdIndex, hidden: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """The extra logits of the level after `prefix`: hidden Float[..., D], prefix Long[..., l] (catalog ID
        prefixes, l >= 1) -> Float[..., K_l], zero at codes that extend no catalog item's prefix."""
        level = prefix.shape[-1]
        rows, valid, codes = index.children(prefix)  # [..., C]
        vectors = self.prefix_vectors(index, level)[rows]  # [..., C, D]
        scores = torch.einsum("...d,...cd->...c", hidden.to(vectors.dtype), vectors) * valid
        extra = hidden.new_zeros(*prefix.shape[:-1], index.level_sizes[level], dtype=scores.dtype)
        return extra.scatter_add(-1, codes, scores)
