"""COBRA's training objectives beside the cross-entropy: InfoNCE over cosine similarities with its sampling-bias
correction, and the item-deletion augmentation.

Shapes: P predictions, C InfoNCE columns (candidate items), D vector width, I catalog items, B batch, H items per
row, L levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cobra_fusion import full_precision


def info_nce(predicted: torch.Tensor, targets: torch.Tensor, item_vectors: torch.Tensor, temperature: float,
             log_q: torch.Tensor | None = None, chunk_elements: int = 1 << 22):
    """InfoNCE over cosine similarity. predicted Float[P, D]; targets Long[P] rows of item_vectors Float[C, D]
    (distinct items, so a positive never appears among its own negatives); log_q Float[C] or None: log of each
    column's chance to be sampled, subtracted from its logits (sampling-bias correction) -> scalar loss.
    The [P, C] logits are built chunk_elements at a time: glibc serves each allocation above 32 MB with a fresh
    mmap, and a whole-catalog logit matrix that is mapped and faulted in every step spent as long in the kernel as
    in the matmul.
    Computed in fp32 whatever the inputs' dtype or an autocast around it (mixed-precision training): the cosines
    are divided by the temperature (0.07 makes them 14 times larger), and bf16 logits would carry that rounding
    into the softmax."""
    with full_precision(predicted.device):
        # the temperature scales the [P, D] queries, not the [P, C] logits: one pass over C columns fewer
        queries = F.normalize(predicted.float(), dim=-1) / temperature
        columns = F.normalize(item_vectors.float(), dim=-1)
        rows = max(1, chunk_elements // max(1, columns.shape[0]))
        total = queries.new_zeros(())
        for query, target in zip(queries.split(rows), targets.split(rows)):
            logits = query @ columns.T
            if log_q is not None:
                logits = logits - log_q.float()
            total = total + F.cross_entropy(logits, target, reduction="sum")
        return total / predicted.shape[0]


def catalog_columns(config, training: bool) -> bool:
    """Whether the InfoNCE columns are the whole catalog: config.num_dense_negatives = -1, or any extra negatives
    outside training (evaluation scores the whole catalog, no random draw)."""
    count = config.num_dense_negatives
    return count == -1 or (count != 0 and not training)


def contrastive_items(distinct: torch.Tensor, config, training: bool) -> torch.Tensor:
    """The items each InfoNCE target is scored against (config.num_dense_negatives), Long[C] sorted, a superset of
    the batch's distinct items Long[U] (sorted): those alone (0), plus n uniform draws in training (n > 0), or the
    whole catalog (catalog_columns)."""
    if config.num_dense_negatives == 0:
        return distinct
    if catalog_columns(config, training):
        return torch.arange(config.num_items, device=distinct.device)
    drawn = torch.randint(config.num_items, (config.num_dense_negatives,), device=distinct.device)
    return torch.unique(torch.cat([distinct, drawn]))


def item_frequencies(counts: torch.Tensor, num_items: int) -> torch.Tensor:
    """counts Float or Long[I] (item slots each catalog item fills in the training sequences) -> each item's share
    Float[I], with add-one smoothing so that an item never seen in training keeps a small, finite chance."""
    counts = torch.as_tensor(counts)
    if counts.shape != (num_items,):
        raise ValueError(f"item frequencies have shape {tuple(counts.shape)}; the catalog has {num_items} items.")
    if not bool(torch.isfinite(counts.double()).all()) or bool((counts < 0).any()):
        raise ValueError("item frequencies must be finite counts >= 0.")
    counts = counts.double()
    return ((counts + 1.0) / (counts.sum() + counts.numel())).float()


def column_log_q(frequency: torch.Tensor, columns_index: torch.Tensor, item_slots: int, uniform_negatives: int,
                 num_items: int) -> torch.Tensor:
    """log Q Float[C] of the InfoNCE columns Long[C]: the chance that an item is among the distinct items of a batch
    of `item_slots` item slots (1 - (1 - f)^n ~ 1 - exp(-n f), f = frequency Float[I]), plus `uniform_negatives`
    items drawn uniformly from the catalog."""
    rate = item_slots * frequency.to(columns_index.device)[columns_index]
    if uniform_negatives > 0:
        rate = rate + uniform_negatives / num_items
    return torch.log(-torch.expm1(-rate))


def delete_items(input_ids, item_index, item_mask, labels, chance: float, levels: int):
    """Training augmentation (config.item_deletion): deletes each item with `chance` and closes the gaps, so the
    rows stay left-padded (Long[B, H*L], Long[B, H], Bool[B, H], Long[B, H*L] in, same shapes out). Rows that would
    keep fewer than 2 items keep them all."""
    batch, length = item_index.shape
    keep = item_mask & (torch.rand(item_mask.shape, device=item_mask.device) >= chance)
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


def code_readouts(grid: torch.Tensor) -> list[torch.Tensor]:
    """The decoder outputs that predict each code of items 2..H: grid Float[B, H, L + 1, D] (the output at each
    item's L code tokens and its dense token) -> per level l, Float[B, H - 1, D]. Code 1 of item t+1 is read at the
    dense token v_t, code l of item t+1 at its code l-1."""
    levels = grid.shape[2] - 1
    return [grid[:, :-1, levels]] + [grid[:, 1:, level - 1] for level in range(1, levels)]


def sparse_cross_entropy(sparse_logits, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every predicted code: sparse_logits per level Float[B, H - 1, K_l], targets
    Long[B, H - 1, L] (codes within each level), valid Bool[B, H - 1]. In fp32 when the heads ran in half precision
    (autocast or a cast model): a bf16 log-softmax loses the small probabilities. Levels may differ in size."""
    return sum(
        F.cross_entropy(logits[valid].float(), targets[..., level][valid], reduction="sum")
        for level, logits in enumerate(sparse_logits)
    ) / (valid.sum() * len(sparse_logits))
