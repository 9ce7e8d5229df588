"""Batched full-ranking evaluation of a COBRA model through `generate`."""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ..tokenization_cobra import CobraTokenizer
from .metrics import ranking_metrics, recommendation_ks
from .sampling import sample_split


@torch.no_grad()
def evaluate_model(
    model,
    tokenizer: CobraTokenizer,
    histories: list[list[int]],
    targets: list[int],
    batch_size: int = 256,
    ks=None,
    show_progress: bool = True,
    **generate_kwargs,
) -> dict:
    """Recall@k / NDCG@k over all users: histories are catalog-index lists, targets catalog indices.

    ks: the K of the metrics (default (5, 10), cut at the catalog size for a catalog under 10 items: `recommendation_ks`).
    generate_kwargs go to `model.generate` (mode, num_beams, num_candidates, ...); top_k defaults to max(ks).
    Returns the metrics plus `users`, `mode`, `seconds` and `users_per_second`.
    """
    if len(histories) != len(targets):
        raise ValueError(f"{len(histories)} histories for {len(targets)} targets.")
    if not targets:
        raise ValueError("No user to evaluate: the split is empty (or none of its users is in the catalog).")
    outside = [target for target in targets if not 0 <= int(target) < tokenizer.num_items]
    if outside:  # a miss for every such user would read as a weaker model
        raise ValueError(f"{len(outside)} target(s) outside this catalog (rows 0 to {tokenizer.num_items - 1}), e.g. "
                         f"{outside[0]}: map target ids with the checkpoint's tokenizer and leave out unknown ones.")
    if ks is None:
        ks = recommendation_ks(tokenizer.num_items)
    was_training = model.training
    model.eval()
    generate_kwargs.setdefault("top_k", max(ks))
    ranked = []
    start = time.perf_counter()
    device = next(model.parameters()).device
    for begin in tqdm(range(0, len(histories), batch_size), desc="evaluate", disable=not show_progress, unit="batch"):
        batch = tokenizer.encode_indices(histories[begin : begin + batch_size], return_tensors="pt")
        batch = {key: value.to(device) for key, value in batch.items()}
        ranked.append(model.generate(**batch, **generate_kwargs).item_indices.cpu())
    seconds = time.perf_counter() - start
    model.train(was_training)
    metrics = ranking_metrics(torch.cat(ranked), torch.tensor(targets), ks)
    mode = generate_kwargs.get("mode", getattr(model.generation_config, "recommend_mode", "cobra"))
    metrics.update(users=len(targets), mode=mode, seconds=round(seconds, 2), users_per_second=round(len(targets) / seconds, 1))
    return metrics


def evaluate_split(model, tokenizer, split, max_users: int | None = None, **kwargs) -> dict:
    """Evaluates on a validation/test split from `cobra_hf.training.index_splits` (rows history_index, target_index);
    max_users: a seeded random sample of that many users (sampling.sample_rows, the one training validates on)."""
    rows = sample_split(split, max_users)
    return evaluate_model(model, tokenizer, list(rows["history_index"]), list(rows["target_index"]), **kwargs)
