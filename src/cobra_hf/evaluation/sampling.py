"""The one way cobra-hf samples evaluation users: training's validation, `cobra-hf evaluate --max-users`,
`evaluate_split(max_users=...)` and benchmarks/tune_fusion.py all draw the same seeded random rows.

Users come in the dataset's order, which follows when they joined: on Beauty the first 2,000 validation users score
about half the Recall@10 of a random 2,000, so a prefix is no estimate of the whole split.
"""

from __future__ import annotations

import torch

SEED = 0


def sample_rows(total: int, users: int | None, seed: int = SEED) -> list[int] | None:
    """`users` row numbers of a split of `total` rows, drawn at random (seeded) and kept in split order; None (all
    rows) when users is None or not smaller than the split."""
    if users is not None and users < 1:  # a negative count would slice off the last users instead
        raise ValueError(f"max_users must be at least 1, got {users}.")
    if users is None or users >= total:
        return None
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:users].sort().values.tolist()


def sample_split(split, users: int | None, seed: int = SEED):
    """A `datasets.Dataset` split (or anything with len() and select()) cut to sample_rows(len(split), users)."""
    rows = sample_rows(len(split), users, seed)
    return split if rows is None else split.select(rows)
