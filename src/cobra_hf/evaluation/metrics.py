"""Full-ranking metrics for leave-one-out evaluation (one held-out target per user)."""

from __future__ import annotations

import math

import torch


def recommendation_ks(num_items: int) -> tuple[int, ...]:
    """The K of the Recall@K / NDCG@K a validation reports: (5, 10); a catalog smaller than 10 items has no top 10,
    so its metrics stop at the catalog size."""
    return (5, 10) if num_items >= 10 else tuple(k for k in (5,) if k <= num_items) + (num_items,)


def ranking_metrics(ranked: torch.Tensor, targets: torch.Tensor, ks=(5, 10)) -> dict[str, float]:
    """ranked Long[U, K] item indices best first (-1 = empty slot), targets Long[U] -> {"recall@k", "ndcg@k"}.

    With one relevant item per user, Recall@k is the hit rate and NDCG@k = 1 / log2(rank + 2) for a hit at
    0-based rank < k (the ideal DCG is 1).
    """
    if ranked.shape[0] != targets.shape[0]:
        raise ValueError(f"{ranked.shape[0]} rankings for {targets.shape[0]} targets.")
    if ranked.shape[0] == 0:
        raise ValueError("No users to evaluate.")
    hit = ranked == targets[:, None]
    rank = torch.where(hit.any(1), hit.float().argmax(1), torch.full_like(targets, ranked.shape[1]))
    metrics = {}
    for k in ks:
        if k > ranked.shape[1]:
            raise ValueError(f"Metrics @{k} need at least {k} recommendations per user, got {ranked.shape[1]}.")
        found = rank < k
        gain = torch.where(found, 1.0 / torch.log2(rank.float() + 2.0), torch.zeros_like(rank, dtype=torch.float))
        metrics[f"recall@{k}"] = float(found.float().mean())
        metrics[f"ndcg@{k}"] = float(gain.mean())
    return metrics


def ndcg_at_rank(rank: int) -> float:
    """Gain of a single hit at 0-based rank (for hand checks)."""
    return 1.0 / math.log2(rank + 2)
