"""RQ-KMeans: residual k-means as a semantic-ID quantizer (no training loop, no codebook collapse).

Level 1 clusters the item vectors into K_1 groups; level l clusters what is left after subtracting the chosen
centroids of levels 1..l-1. GRID (Snap, arXiv 2507.22224) finds these IDs at least as good as RQ-VAE's. With
`dedup_level=True` a last level numbers the items that share an ID (0, 1, ...), so every item's ID is unique
(TIGER's collision code).

`RQKMeans` keeps the codebooks of a fit, so that new items (`cobra-hf add-items`) get their IDs the way the catalog's
items did: L2-normalise, nearest centroid per level on the residual. It is saved as `config.json` (model_type
"rq-kmeans") + `model.safetensors`, next to the RQ-VAE's format, and `load_quantizer` reads either.

Shapes: N items, E vector width, L levels, K codes per level.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config_dict import DictConfig

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


@dataclass
class RQKMeansConfig(DictConfig):
    """input_dim E; level_sizes K_l (the codes each level has: min(K, N) when the catalog is smaller than K);
    dedup_level: a collision code follows the L k-means codes; seed: of the fit (a record: encoding draws nothing)."""

    input_dim: int = 384
    level_sizes: list[int] = field(default_factory=lambda: [32, 32, 32])
    dedup_level: bool = False
    seed: int = 0

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)


class RQKMeans(nn.Module):
    """Residual k-means with its codebooks kept (buffers `codebook_{l}` Float[K_l, E])."""

    model_type = "rq-kmeans"

    def __init__(self, config: RQKMeansConfig):
        super().__init__()
        self.config = config
        for level, size in enumerate(config.level_sizes):
            self.register_buffer(f"codebook_{level}", torch.zeros(int(size), config.input_dim))

    @classmethod
    def fit(cls, vectors: torch.Tensor, level_sizes: list[int], dedup_level: bool = False, seed: int = 0,
            iters: int = 25) -> tuple["RQKMeans", torch.Tensor]:
        """Fits on vectors Float[N, E] (L2-normalised first) -> (quantizer, codes Long[N, L (+1)]); the quantizer's
        `encode(vectors)` gives these codes again, bit for bit."""
        codes, books = rq_kmeans(torch.nn.functional.normalize(vectors.float(), dim=-1), list(level_sizes), iters, seed)
        model = cls(RQKMeansConfig(int(vectors.shape[1]), [len(b) for b in books], dedup_level, seed))
        for level, book in enumerate(books):
            getattr(model, f"codebook_{level}").copy_(book)
        return model, dedup_codes(codes) if dedup_level else codes

    @torch.no_grad()
    def encode(self, embeddings: torch.Tensor, chunk: int = 65536) -> torch.LongTensor:
        """Codes of embeddings Float[N, E] -> Long[N, L], or [N, L + 1] with `dedup_level` (the collision code is the
        rank among the given rows, meaningful for a whole catalog only; add-items numbers new items after the
        catalog's own)."""
        residual = torch.nn.functional.normalize(torch.as_tensor(embeddings).detach().float().cpu(), dim=-1)
        codes = []
        for level in range(self.config.num_levels):
            book = getattr(self, f"codebook_{level}")
            assignment, _ = _assign(residual, book, chunk)
            residual = residual - book[assignment]
            codes.append(assignment)
        out = torch.stack(codes, 1) if codes else torch.zeros(len(residual), 0, dtype=torch.long)
        return dedup_codes(out) if self.config.dedup_level else out

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Writes `config.json` and `model.safetensors` (the codebooks)."""
        from safetensors.torch import save_file

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"model_type": self.model_type, "format_version": 1, **self.config.to_dict()}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"),
                  metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "RQKMeans":
        from safetensors.torch import load_file

        folder = Path(directory)
        config = RQKMeansConfig.from_dict(json.loads((folder / "config.json").read_text(encoding="utf-8")))
        model = cls(config)
        model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        return model


def load_quantizer(directory: str | os.PathLike):
    """A saved quantizer folder -> `RQVAE` or `RQKMeans`, by the `model_type` of its config.json."""
    from .rqvae import RQVAE

    folder = Path(directory)
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} has no {name} (not a saved quantizer)")
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", "rqvae")
    if model_type == RQKMeans.model_type:
        return RQKMeans.from_pretrained(folder)
    if model_type == "rqvae":
        return RQVAE.from_pretrained(folder)
    raise ValueError(f"{folder / 'config.json'} has model_type {model_type!r}; this cobra-hf reads 'rqvae' and "
                     "'rq-kmeans' quantizers (upgrade cobra-hf).")
