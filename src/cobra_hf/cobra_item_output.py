"""Per-item output vectors for the code heads (config.item_output_embeddings).

The code heads share one output vector per code of a level, so the ranking of whole IDs can only use what the codes
have in common. With this table, the logit of code k of level l >= 1 after a prefix p also gets <h, u(p + k)>, where
u(q) is the mean of a learned per-item row over the catalog items whose ID starts with q. On 3x256 IDs a prefix of
two codes holds 1.3 items on average, so from the second level on the output side ranks nearly per item, as the
per-item input embedding (use_item_embeddings) does on the history side. The first level is left to its head.

The rows start at zero, so a model starts as it would without the table (and draws no random numbers for it). With
an ID trunk (config.id_trunk) the table is the trunk's, since the trunk's code heads drive the beams.

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

    def teacher_forced(self, index: SemanticIdIndex, sparse_logits: tuple[torch.Tensor, ...],
                       readouts: tuple[torch.Tensor, ...], input_ids: torch.Tensor, item_mask: torch.Tensor,
                       level_offsets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Adds the table's logits to levels 2..L of items 2..H, each given its true prefix (the codes fed in):
        sparse_logits and readouts per level Float[B, H - 1, K_l] and Float[B, H - 1, D], input_ids Long[B, H*L],
        item_mask Bool[B, H], level_offsets Long[L] -> per level Float[B, H - 1, K_l]."""
        batch, length = item_mask.shape
        codes = input_ids.view(batch, length, len(sparse_logits))[:, 1:] - level_offsets  # [B, H - 1, L]
        predicted = item_mask[:, :-1] & item_mask[:, 1:]
        out, prefixes = [sparse_logits[0]], codes[predicted]  # [N, L]
        for level in range(1, len(sparse_logits)):
            extra = self.logits(index, readouts[level][predicted], prefixes[:, :level])
            out.append(sparse_logits[level].index_put((predicted,), extra, accumulate=True))
        return tuple(out)


def decoding_logits(head: nn.Module, table: ItemOutputTable | None, index: SemanticIdIndex, hidden: torch.Tensor,
                    level: int, prefix: torch.Tensor | None) -> torch.Tensor:
    """Logits of level `level`'s codes in decoding, in fp32: a code head, plus the table's logits from level 2 on.
    hidden Float[..., D] (the decoder output at the code's position), prefix Long[..., level] -> Float[..., K_l]."""
    logits = head(hidden).float()
    if table is not None and level:
        logits = logits + table.logits(index, hidden, prefix).float()
    return logits
