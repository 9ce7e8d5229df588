"""RQ-KMeans: residual k-means as a semantic-ID quantizer (no training loop, no codebook collapse).

Level 1 clusters the item vectors into K_1 groups; level l clusters what is left after subtracting the chosen
centroids of levels 1..l-1. GRID (Snap, arXiv 2507.22224) finds these IDs at least as good as RQ-VAE's. With
`dedup_level=True` a last level numbers the items that share an ID (0, 1, ...), so every item's ID is unique
(TIGER's collision code).

Shapes: N items, E vector width, L levels, K codes per level.
"""

from __future__ import annotations

import torch

SEED_POINTS_PER_CLUSTER = 256


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding. x Float[N, E] -> (centroids Float[k, E], assignment Long[N]).
    An emptied cluster takes the point farthest from its centroid, so all k codes stay in use while N >= k."""
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    k = min(k, n)
    # k-means++ passes over its points once per centroid: at a million items and k = 256 that is 256 passes over
    # 1.5 GB. Seeding from a sample of SEED_POINTS_PER_CLUSTER points per centroid costs a fraction of one Lloyd
    # iteration and seeds as well (faiss trains on the same budget); smaller sets are seeded from every point, as before
    pool = x
    if n > SEED_POINTS_PER_CLUSTER * k:
        pool = x[torch.randperm(n, generator=generator)[: SEED_POINTS_PER_CLUSTER * k]]
    centroids = pool[torch.randint(len(pool), (1,), generator=generator)]
    closest = ((pool - centroids[0]) ** 2).sum(-1)
    for _ in range(1, k):
        weights = closest.clamp(min=0) + 1e-12
        pick = torch.multinomial(weights / weights.sum(), 1, generator=generator)
        centroids = torch.cat([centroids, pool[pick]])
        closest = torch.minimum(closest, ((pool - pool[pick]) ** 2).sum(-1))
    assignment = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        assignment, distance = _assign(x, centroids, chunk)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)
        counts = torch.bincount(assignment, minlength=k)
        empty = (counts == 0).nonzero().flatten()
        centroids = sums / counts.clamp(min=1)[:, None]
        if len(empty):
            far = distance.topk(len(empty)).indices  # refill empty clusters from the worst-fitted points
            centroids[empty] = x[far]
    assignment, _ = _assign(x, centroids, chunk)
    return centroids, assignment


def _assign(x: torch.Tensor, centroids: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row of x Float[N, E] -> (Long[N], squared distance Float[N])."""
    norms = (centroids**2).sum(-1)
    best, distance = [], []
    for part in x.split(chunk):
        d = (part**2).sum(-1, keepdim=True) - 2 * part @ centroids.T + norms
        value, index = d.min(-1)
        best.append(index)
        distance.append(value.clamp(min=0))
    return torch.cat(best), torch.cat(distance)


def rq_kmeans(vectors: torch.Tensor, level_sizes: list[int], iters: int = 25, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Residual k-means codes. vectors Float[N, E] -> (codes Long[N, L], codebooks [Float[K_l, E]])."""
    residual = vectors.float().clone()
    codes, codebooks = [], []
    for level, size in enumerate(level_sizes):
        centroids, assignment = kmeans(residual, int(size), iters=iters, seed=seed + level)
        residual = residual - centroids[assignment]
        codes.append(assignment)
        codebooks.append(centroids)
    return torch.stack(codes, 1), codebooks


def dedup_codes(codes: torch.Tensor) -> torch.Tensor:
    """Appends a collision level: Long[N, L] -> Long[N, L + 1], the last code numbering the items of one ID in
    catalog order (0 for the first)."""
    _, inverse = torch.unique(codes, dim=0, return_inverse=True)
    order = torch.sort(inverse, stable=True).indices
    sorted_ids = inverse[order]
    starts = torch.ones_like(sorted_ids, dtype=torch.bool)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    group_start = torch.cummax(torch.where(starts, torch.arange(len(order)), torch.zeros_like(order)), 0).values
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order)) - group_start
    return torch.cat([codes, rank[:, None]], 1)
