"""RQ-VAE: item embeddings -> L-level semantic IDs by residual quantization (as in TIGER / COBRA).

Encoder MLP -> latent z [code_dim] -> L residual codebooks of K codes each -> decoder MLP.
The measures against codebook collapse are the usual ones: inputs are standardised per dimension,
each level's codebook is initialised by k-means on the first batch's residuals, and codes unused
during an epoch are re-seeded from random current residuals. Everything is seeded by
`config.seed` through explicit `torch.Generator`s, so `fit` on the same data gives the same IDs.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config_dict import DictConfig
from torch.nn import functional as F

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class RQVAEConfig(DictConfig):
    """Settings of the quantizer and of its training.

    Shapes: input_dim E (sentence embedding size) -> hidden_dims -> code_dim D; num_levels L
    codebooks of codebook_size K codes each. Defaults follow TIGER (512-256-128-32, beta 0.25)
    with COBRA's public-data 3 x 32 codebooks.
    """

    input_dim: int = 384
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])
    code_dim: int = 32
    num_levels: int = 3
    codebook_size: int = 32
    commitment_beta: float = 0.25
    epochs: int = 30
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0
    kmeans_iters: int = 25
    # codes used by fewer than this many items in an epoch are re-seeded (0 disables resets)
    dead_code_threshold: int = 1
    # TIGER mode: append one more code so that every item's ID is unique
    dedup_level: bool = False

    def __post_init__(self):
        self.hidden_dims = [int(h) for h in self.hidden_dims]
        checks = {
            "input_dim": self.input_dim >= 1,
            "code_dim": self.code_dim >= 1,
            "num_levels": self.num_levels >= 1,
            "codebook_size": self.codebook_size >= 2,
            "epochs": self.epochs >= 0,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "commitment_beta": self.commitment_beta >= 0,
            "kmeans_iters": self.kmeans_iters >= 0,
            "dead_code_threshold": self.dead_code_threshold >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"RQVAEConfig.{name} has an invalid value {getattr(self, name)!r}")


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _sq_dist(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances [N, K] between rows of x [N, D] and codes [K, D]."""
    return x.pow(2).sum(-1, keepdim=True) - 2 * x @ codebook.T + codebook.pow(2).sum(-1)


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means on x [N, D] -> centroids [k, D]. Empty clusters are re-seeded from random points.

    Seeded by k-means++ (when N < k: random points with tiny noise so that the codes differ).
    """
    n = x.shape[0]
    if n >= k:
        # k-means++ seeding: plain random seeds often put two codes in one cluster and none in another
        centroids = x.new_empty(k, x.shape[1])
        centroids[0] = x[torch.randint(n, (1,), generator=generator)]
        closest = (x - centroids[0]).pow(2).sum(-1)
        for j in range(1, k):
            weights = closest.clamp_min(0)
            if float(weights.sum()) <= 0:  # fewer distinct points than codes
                weights = torch.ones_like(weights)
            centroids[j] = x[torch.multinomial(weights, 1, generator=generator)]
            closest = torch.minimum(closest, (x - centroids[j]).pow(2).sum(-1))
    else:
        pick = torch.randint(n, (k,), generator=generator)
        centroids = x[pick] + 1e-3 * torch.randn(k, x.shape[1], generator=generator)
    for _ in range(iters):
        assign = _sq_dist(x, centroids).argmin(-1)  # [N]
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            centroids[empty] = x[torch.randint(n, (int(empty.sum()),), generator=generator)]
    return centroids


def dedup_codes(codes: torch.Tensor) -> torch.Tensor:
    """Append a collision code: row i gets its rank among the rows with the same codes (input order).

    codes LongTensor [N, L] -> LongTensor [N, L + 1], every row unique; the new level needs
    `max items per ID` codes.
    """
    n = codes.shape[0]
    if n == 0:
        return codes.new_zeros((0, codes.shape[1] + 1))
    _, inverse = torch.unique(codes, dim=0, return_inverse=True)  # [N] group id
    order = torch.sort(inverse, stable=True).indices  # rows grouped, input order inside a group
    counts = torch.bincount(inverse)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(inverse)
    rank[order] = torch.arange(n) - starts[inverse[order]]
    return torch.cat([codes, rank[:, None]], dim=1)


def id_stats(codes: torch.Tensor, codebook_sizes: list[int] | int) -> dict:
    """How well the IDs spread the items.

    Args:
        codes: LongTensor [N, L] semantic IDs.
        codebook_sizes: K per level (an int means the same K at every level).

    Returns:
        dict with `num_items`, `num_levels`, `codebook_sizes`, per level `codes_used` and
        `usage` (used / K), `distinct_ids`, `items_per_id_mean`, `items_per_id_max` and
        `shared_id_fraction` (fraction of items whose ID is carried by at least one other item).
    """
    codes = torch.as_tensor(codes, dtype=torch.long)
    n, levels = codes.shape
    sizes = [int(codebook_sizes)] * levels if isinstance(codebook_sizes, int) else [int(k) for k in codebook_sizes]
    if len(sizes) != levels:
        raise ValueError(f"id_stats: {levels} code levels but {len(sizes)} codebook sizes")
    used = [int(torch.unique(codes[:, level]).numel()) for level in range(levels)]
    _, counts = torch.unique(codes, dim=0, return_counts=True)
    return {
        "num_items": int(n),
        "num_levels": int(levels),
        "codebook_sizes": sizes,
        "codes_used": used,
        "usage": [round(u / k, 4) for u, k in zip(used, sizes)],
        "distinct_ids": int(counts.numel()),
        "items_per_id_mean": round(n / max(1, counts.numel()), 4),
        "items_per_id_max": int(counts.max()) if n else 0,
        "shared_id_fraction": round(float(counts[counts > 1].sum()) / max(1, n), 4),
    }


class RQVAE(nn.Module):
    """Residual-quantization VAE over item embeddings.

    Buffers `input_mean`/`input_std` [E] standardise inputs; `codebooks` [L, K, D] is one parameter.
    Use `fit(embeddings)` then `encode(embeddings) -> LongTensor[N, L]` (or [N, L + 1] with
    `config.dedup_level`).
    """

    def __init__(self, config: RQVAEConfig):
        super().__init__()
        self.config = config
        dims = [config.input_dim, *config.hidden_dims, config.code_dim]
        # the weights depend only on config.seed, not on whatever used the global RNG before
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.encoder = _mlp(dims)
            self.decoder = _mlp(dims[::-1])
        self.codebooks = nn.Parameter(torch.zeros(config.num_levels, config.codebook_size, config.code_dim))
        self.register_buffer("input_mean", torch.zeros(config.input_dim))
        self.register_buffer("input_std", torch.ones(config.input_dim))
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.bool))

    # ----------------------------------------------------------------------------------- core
    def _standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def quantize(self, z: torch.Tensor):
        """Residual quantization of latents z [B, D].

        Returns:
            (z_q [B, D] straight-through quantized latents, codes LongTensor [B, L],
            codebook loss, commitment loss) - losses summed over levels.
        """
        residual = z
        quantized = torch.zeros_like(z)
        codes = []
        residuals = []  # what each level saw, kept for dead-code re-seeding during training
        codebook_loss = z.new_zeros(())
        commit_loss = z.new_zeros(())
        for level in range(self.config.num_levels):
            codebook = self.codebooks[level]  # [K, D]
            residuals.append(residual.detach())
            idx = _sq_dist(residual.detach(), codebook.detach()).argmin(-1)  # [B]
            chosen = codebook[idx]  # [B, D]
            codebook_loss = codebook_loss + F.mse_loss(chosen, residual.detach())
            commit_loss = commit_loss + F.mse_loss(residual, chosen.detach())
            quantized = quantized + chosen
            residual = residual - chosen.detach()
            codes.append(idx)
        # straight-through estimator: forward uses the codes, backward treats quantization as identity
        z_q = z + (quantized - z).detach()
        if self.training:
            self._last_residuals = residuals
        return z_q, torch.stack(codes, dim=1), codebook_loss, commit_loss

    def forward(self, x: torch.Tensor):
        """x [B, E] raw embeddings -> (loss, dict of loss parts, codes [B, L])."""
        target = self._standardise(x)
        z = self.encoder(target)
        z_q, codes, codebook_loss, commit_loss = self.quantize(z)
        recon = F.mse_loss(self.decoder(z_q), target)
        loss = recon + codebook_loss + self.config.commitment_beta * commit_loss
        parts = {"recon": recon.detach(), "codebook": codebook_loss.detach(), "commit": commit_loss.detach()}
        return loss, parts, codes

    # ------------------------------------------------------------------------------ training
    @torch.no_grad()
    def _init_codebooks(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """k-means on the residuals of one batch x [B, E], level by level."""
        residual = self.encoder(self._standardise(x))
        for level in range(self.config.num_levels):
            centroids = kmeans(residual, self.config.codebook_size, self.config.kmeans_iters, generator)
            self.codebooks.data[level] = centroids
            residual = residual - centroids[_sq_dist(residual, centroids).argmin(-1)]

    @torch.no_grad()
    def _reset_dead_codes(self, x: torch.Tensor, generator: torch.Generator, optimizer) -> list[int]:
        """Assign all items x [N, E]; re-seed codes used by < threshold items from random residuals
        of that level (distinct items), and clear their Adam moments. Returns codes reset per level."""
        residual = self._encode_latents(x)
        resets = []
        state = optimizer.state.get(self.codebooks, {}) if optimizer is not None else {}
        for level in range(self.config.num_levels):
            codebook = self.codebooks.data[level]
            assign = self._assign(residual, codebook)
            counts = torch.bincount(assign, minlength=self.config.codebook_size)
            dead = torch.nonzero(counts < self.config.dead_code_threshold).flatten()
            if dead.numel():
                take = min(dead.numel(), residual.shape[0])
                dead = dead[:take]
                pick = torch.randperm(residual.shape[0], generator=generator)[:take]
                codebook[dead] = residual[pick]
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key][level, dead] = 0
                assign = self._assign(residual, codebook)
            resets.append(int(dead.numel()))
            residual = residual - codebook[assign]
        return resets

    @torch.no_grad()
    def _reset_from_usage(self, usage: torch.Tensor, generator: torch.Generator, optimizer) -> list[int]:
        """usage [L, K] counts of an epoch; re-seed codes under the threshold from the last batch's residuals."""
        resets = []
        state = optimizer.state.get(self.codebooks, {})
        for level in range(self.config.num_levels):
            dead = torch.nonzero(usage[level] < self.config.dead_code_threshold).flatten()
            pool = self._last_residuals[level]
            take = min(dead.numel(), pool.shape[0])
            if take:
                dead = dead[:take]
                self.codebooks.data[level, dead] = pool[torch.randperm(pool.shape[0], generator=generator)[:take]]
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key][level, dead] = 0
            resets.append(take)
        return resets

    def _assign(self, residual: torch.Tensor, codebook: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        return torch.cat([_sq_dist(r, codebook).argmin(-1) for r in residual.split(chunk)])

    def _encode_latents(self, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        return torch.cat([self.encoder(self._standardise(b)) for b in x.split(chunk)])

    def fit(self, embeddings: torch.Tensor, show_progress: bool = True) -> dict:
        """Train on embeddings [N, E] (float). Resets any previous training.

        Returns:
            history dict: per-epoch lists `loss`, `recon`, `codebook`, `commit`, `dead_codes_reset`
            (per level), final `id_stats` and `seconds`.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        x = torch.as_tensor(embeddings, dtype=torch.float32).detach().cpu()
        if x.ndim != 2 or x.shape[1] != cfg.input_dim:
            raise ValueError(f"RQVAE.fit expects embeddings [N, {cfg.input_dim}], got {list(x.shape)}")
        if x.shape[0] < 2:
            raise ValueError("RQVAE.fit needs at least 2 items")
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(cfg.seed)
        self.input_mean.copy_(x.mean(0))
        # floor on the std: constant dimensions must not blow up into huge standardised values
        self.input_std.copy_(x.std(0).clamp_min(1e-6 + 1e-3 * float(x.std(0).mean())))
        self.train()
        n = x.shape[0]
        batch_size = min(cfg.batch_size, n)
        first = x[torch.randperm(n, generator=generator)[:batch_size]]
        self._init_codebooks(first, generator)
        optimizer = torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(n / batch_size)
        total_steps = max(1, cfg.epochs * steps_per_epoch)
        # cosine decay: large steps early to move codes, small ones late so the IDs settle
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
        )
        history: dict = {"loss": [], "recon": [], "codebook": [], "commit": [], "dead_codes_reset": []}
        levels, k = cfg.num_levels, cfg.codebook_size
        bar = tqdm(range(cfg.epochs), desc="training RQ-VAE", unit="epoch", disable=not show_progress)
        for _ in bar:
            perm = torch.randperm(n, generator=generator)
            sums = torch.zeros(4)
            usage = torch.zeros(levels, k, dtype=torch.long)
            for start in range(0, n, batch_size):
                batch = x[perm[start : start + batch_size]]
                loss, parts, codes = self(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                # usage counted on the fly: a separate pass over all items would cost as much as training
                usage += torch.nn.functional.one_hot(codes, k).sum(0)
                sums += torch.stack([loss.detach(), parts["recon"], parts["codebook"], parts["commit"]]) * batch.shape[0] / n
            for key, value in zip(("loss", "recon", "codebook", "commit"), sums.tolist()):
                history[key].append(round(value, 6))
            resets = self._reset_from_usage(usage, generator, optimizer)
            history["dead_codes_reset"].append(resets)
            bar.set_postfix(loss=f"{sums[0]:.4f}", recon=f"{sums[1]:.4f}", reset=sum(resets))
        if cfg.dead_code_threshold > 0 and cfg.epochs > 0:
            # one exact pass over all items so that the final IDs use every code that can be used
            history["final_dead_codes_reset"] = self._reset_dead_codes(x, generator, optimizer)
        self.is_fitted.fill_(True)
        self.eval()
        codes = self.encode(x)
        history["id_stats"] = id_stats(codes, self.level_sizes(codes))
        history["seconds"] = round(time.perf_counter() - started, 3)
        return history

    # ------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode(self, embeddings: torch.Tensor, batch_size: int = 4096) -> torch.LongTensor:
        """Semantic IDs of embeddings [N, E] -> LongTensor [N, L], or [N, L + 1] with `dedup_level`
        (the extra code is the item's rank among the given items sharing its first L codes, so it is
        only meaningful for the whole catalog encoded at once). Deterministic: eval mode, fixed chunks.
        """
        if not bool(self.is_fitted):
            raise RuntimeError("RQVAE.encode called before fit() or from_pretrained()")
        x = torch.as_tensor(embeddings, dtype=torch.float32).detach().cpu()
        was_training = self.training
        self.eval()
        codes = []
        for chunk in x.split(batch_size):
            _, idx, _, _ = self.quantize(self.encoder(self._standardise(chunk)))
            codes.append(idx)
        self.train(was_training)
        out = torch.cat(codes) if codes else torch.zeros(0, self.config.num_levels, dtype=torch.long)
        return dedup_codes(out) if self.config.dedup_level else out

    def level_sizes(self, codes: torch.Tensor | None = None) -> list[int]:
        """Codebook size per level of the IDs; with `dedup_level` the last level's size is the largest
        rank in `codes` plus one (required then)."""
        sizes = [self.config.codebook_size] * self.config.num_levels
        if self.config.dedup_level:
            if codes is None:
                raise ValueError("level_sizes needs the codes when dedup_level=True")
            sizes.append(int(codes[:, -1].max()) + 1 if codes.shape[0] else 1)
        return sizes

    # ----------------------------------------------------------------------------- save / load
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` (weights, codebooks, input mean/std)."""
        from safetensors.torch import save_file

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"model_type": "rqvae", "format_version": 1, **self.config.to_dict()}
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "RQVAE":
        """Load a quantizer saved by `save_pretrained`; its `encode` gives bit-identical IDs."""
        from safetensors.torch import load_file

        folder = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} has no {name} (not a saved RQ-VAE quantizer)")
        config = RQVAEConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")))
        model = cls(config)
        model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)), strict=True)
        model.eval()
        return model
