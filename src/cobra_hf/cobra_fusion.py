"""How coarse-to-fine generation scores and picks candidates: BeamFusion (the paper's and the joint one), stable
top-k, history masks and nearest-item search. Pure tensor functions, batched over users and beams.

Shapes: B users, M beams, N candidates per beam, C candidates per user, H history items, I items, D vector width.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F


def full_precision(device: torch.device):
    """A context with autocast off on `device` (a no-op outside autocast). Scores that rank items are computed in
    fp32 inside it: bf16 keeps 8 bits of mantissa, so cosines near 0.5 would round to steps of ~0.004 and many
    catalog items would tie; an InfoNCE logit divided by a temperature of 0.07 magnifies that rounding 14 times."""
    if not torch.is_autocast_enabled(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device.type, enabled=False)


def beam_fusion(
    beam_scores: torch.Tensor, candidate_cos: torch.Tensor, candidate_valid: torch.Tensor, tau: float, psi: float
) -> torch.Tensor:
    """BeamFusion (COBRA, Eq. 7): Phi = softmax_M(tau * phi) * softmax_N(psi * cos).

    beam_scores: Float[B, M] summed log-probs of the beams' IDs (-inf = no beam);
    candidate_cos: Float[B, M, N] cosine of each beam's dense vector with its candidates;
    candidate_valid: Bool[B, M, N]. Returns Float[B, M, N], 0 where invalid.
    """
    dead = beam_scores == float("-inf")  # tau = 0 would make 0 * -inf = NaN: a dead beam stays at -inf
    beam_weight = torch.softmax((tau * beam_scores.masked_fill(dead, 0.0)).masked_fill(dead, float("-inf")), dim=-1)
    logits = (psi * candidate_cos).masked_fill(~candidate_valid, float("-inf"))
    # a beam without any candidate would give 0/0: give it an all-zero row instead
    has_any = candidate_valid.any(-1, keepdim=True)
    item_weight = torch.softmax(logits.masked_fill(~has_any, 0.0), dim=-1).masked_fill(~candidate_valid, 0.0)
    return beam_weight[..., None] * item_weight


def joint_fusion(
    beam_scores: torch.Tensor,
    candidate_cos: torch.Tensor,
    history_cos: torch.Tensor,
    candidate_valid: torch.Tensor,
    tau: float,
    psi: float,
    psi_h: float,
) -> torch.Tensor:
    """Joint BeamFusion: one softmax over every (beam k, candidate a) pair of
    s(k, a) = tau * phi_k + psi * cos(v_k, a) + psi_h * cos(v_0, a).

    beam_scores: Float[B, M] summed log-probs phi_k of the beams' IDs (-inf = no beam; M counts guided IDs too);
    candidate_cos: Float[B, M, N] cosine of each beam's dense vector v_k with its candidates;
    history_cos: Float[B, M, N] cosine of the ID-free dense prediction v_0 with the same candidates;
    candidate_valid: Bool[B, M, N]. Returns Float[B, M, N] summing to 1 over the valid pairs of a user, 0 where
    invalid (a pair of a beam with phi_k = -inf counts as invalid); a user without any valid pair gets all zeros.

    Unlike `beam_fusion`, the cosine is not normalised inside each beam: with about one item per ID, the per-beam
    softmax is ~1 for every beam and the ranking collapses to the beam order, whereas here an item's cosine can
    lift it above items of more probable IDs.
    """
    batch = beam_scores.shape[0]
    valid = candidate_valid & (beam_scores > float("-inf"))[..., None]
    # torch.where, not a product with the mask: tau * -inf is NaN when tau = 0, and invalid slots may hold -inf cosines
    logits = torch.where(
        valid, tau * beam_scores[..., None] + psi * candidate_cos + psi_h * history_cos, float("-inf")
    ).reshape(batch, -1)
    # a user without any valid pair would give 0/0: give it an all-zero row instead
    has_any = valid.reshape(batch, -1).any(-1, keepdim=True)
    weight = torch.softmax(logits.masked_fill(~has_any, 0.0), dim=-1).masked_fill(~has_any, 0.0)
    return weight.view_as(candidate_cos).masked_fill(~valid, 0.0)


def top_k_items(scores: torch.Tensor, items: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scores Float[B, C] (-inf = not a candidate), items Long[B, C] -> the k best (items, scores), best first.
    Ties keep the candidates' order (a stable sort), so results are deterministic. Missing slots get item -1."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :k]
    best_scores = scores.gather(1, order)
    best_items = items.gather(1, order).masked_fill(best_scores == float("-inf"), -1)
    if best_items.shape[1] < k:
        pad = k - best_items.shape[1]
        best_items = F.pad(best_items, (0, pad), value=-1)
        best_scores = F.pad(best_scores, (0, pad), value=float("-inf"))
    return best_items, best_scores


def mask_items(scores: torch.Tensor, items: torch.Tensor, banned: torch.Tensor, banned_valid: torch.Tensor):
    """Sets scores[b, c] to -inf where items[b, c] is one of banned[b, :] (valid entries only).
    scores Float[B, C], items Long[B, C], banned Long[B, H], banned_valid Bool[B, H]."""
    hit = ((items[:, :, None] == banned[:, None, :]) & banned_valid[:, None, :]).any(-1)
    return scores.masked_fill(hit, float("-inf"))


def nearest_items(
    queries: torch.Tensor, item_vectors: torch.Tensor, k: int, faiss_index=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (torch) or faiss inner-product search. queries Float[B, D] and item_vectors Float[I, D], both
    L2-normalised -> (items Long[B, k], cosines Float[B, k]), best first."""
    k = min(k, item_vectors.shape[0])
    if faiss_index is not None:
        cos, items = faiss_index.search(queries.detach().float().cpu().contiguous().numpy(), k)
        return torch.from_numpy(items).long().to(queries.device), torch.from_numpy(cos).to(queries.device)
    with full_precision(queries.device):  # a half-precision matmul would rank by rounded cosines (many ties)
        cos = queries.float() @ item_vectors.float().T
    best = torch.topk(cos, k, dim=-1)
    return best.indices, best.values


def warn_short_rows(items: torch.Tensor, k: int, exclude_history: bool) -> None:
    """A UserWarning counting the rows of items Long[B, K] that hold fewer than k items (-1 slots): generate never
    returns a short row without saying so."""
    short = int((items < 0).any(1).sum())
    if short:
        cause = ("exclude_history left out their history items and the catalog holds no others" if exclude_history
                 else "the catalog holds no more candidates")
        warnings.warn(f"{short} of {items.shape[0]} rows hold fewer than top_k={k} items ({cause}): their missing "
                      "slots are item -1 with score -inf.", UserWarning, stacklevel=4)
