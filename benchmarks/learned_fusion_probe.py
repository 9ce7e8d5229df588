"""Offline probe: the best a fusion of the two halves' lists can do when its weights are *learned* (cross-fitted).

The rank-fusion probe fixes the form of the fusion; this one learns it. For each validation user the candidates are
the union of the dense-only top L and the sparse-only top L (from L beams); each candidate has features
[psi-scaled dense cosine, its log dense rank, the ID's summed log-prob, its log sparse rank, in-dense-list,
in-sparse-list] (a missing score is replaced by the list's worst minus one, its rank by L + 1), and a linear score
is trained with a listwise softmax loss (the target among the user's candidates). Two-fold cross-fitting: the users
are split in two seeded halves, weights learned on one half score the other, so every reported number is out of
sample. Validation only; a probe for deciding whether any fusion of the two halves is worth building, not a method.

usage:
  python benchmarks/learned_fusion_probe.py --model MODEL [--sparse-model MODEL2] --data ../shared/data/beauty \
      [--users 5000] --output benchmarks/results/research/complementarity/learned_fusion_NAME.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from cobra_hf.evaluation.metrics import ranking_metrics
from probe_common import load_models, probe_parser, validation_users

FEATURES = ("dense_cos", "log_dense_rank", "sparse_logp", "log_sparse_rank", "in_dense", "in_sparse")


@torch.no_grad()
def lists(model, tok, histories, length: int, mode: str, batch_size: int = 256):
    """(items Long[U, L], scores Float[U, L]) of generate(mode) with top_k = num_beams = L."""
    items, scores = [], []
    extra = {"num_beams": length} if mode == "sparse" else {}
    for begin in range(0, len(histories), batch_size):
        batch = tok.encode_indices(histories[begin:begin + batch_size], return_tensors="pt")
        out = model.generate(**batch, mode=mode, top_k=length, **extra)
        items.append(out.item_indices)
        scores.append(out.scores)
    return torch.cat(items), torch.cat(scores)


def candidate_features(d_items, d_scores, s_items, s_scores, length: int):
    """Per user: the union of both lists (Long[U, 2L], -1 padded) and its features Float[U, 2L, F]."""
    users = d_items.shape[0]
    cand = torch.full((users, 2 * length), -1, dtype=torch.long)
    feats = torch.zeros(users, 2 * length, len(FEATURES))
    for u in range(users):
        d_row, s_row = d_items[u].tolist(), s_items[u].tolist()
        d_pos = {item: r for r, item in enumerate(d_row) if item >= 0}
        s_pos = {item: r for r, item in enumerate(s_row) if item >= 0}
        union = list(dict.fromkeys([*d_pos, *s_pos]))
        d_valid = d_scores[u][torch.isfinite(d_scores[u])]
        s_valid = s_scores[u][torch.isfinite(s_scores[u])]
        d_floor = float(d_valid.min()) - 0.05 if len(d_valid) else 0.0
        s_floor = float(s_valid.min()) - 1.0 if len(s_valid) else -20.0
        for c, item in enumerate(union):
            dr, sr = d_pos.get(item), s_pos.get(item)
            cand[u, c] = item
            feats[u, c] = torch.tensor([
                float(d_scores[u, dr]) if dr is not None else d_floor,
                torch.log(torch.tensor(float((dr if dr is not None else length) + 1))),
                float(s_scores[u, sr]) if sr is not None else s_floor,
                torch.log(torch.tensor(float((sr if sr is not None else length) + 1))),
                float(dr is not None), float(sr is not None)])
    return cand, feats


def fit(feats, cand, targets, steps: int = 300):
    """Linear weights Float[F] (+ feature standardisation) maximising the listwise log-likelihood of the target."""
    mean, std = feats.reshape(-1, feats.shape[-1]).mean(0), feats.reshape(-1, feats.shape[-1]).std(0) + 1e-6
    x = (feats - mean) / std
    valid = cand >= 0
    label = (cand == targets[:, None]) & valid
    has = label.any(1)  # users whose target is in the union: the only ones that teach the weights
    w = torch.zeros(feats.shape[-1], requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            logits = (x[has] @ w).masked_fill(~valid[has], float("-inf"))
            # torch.where, not a product: -inf * 0 is NaN in the padded slots
            loss = -torch.where(label[has], torch.log_softmax(logits, -1), 0.0).sum(-1).mean()
            loss.backward()
            opt.step()
    return w.detach(), mean, std


def main() -> None:
    parser = probe_parser(__doc__, sparse_model=True)
    parser.add_argument("--length", type=int, default=50)
    args = parser.parse_args()
    start = time.perf_counter()
    model, tok, smodel, stok = load_models(args)
    histories, targets = validation_users(model, tok, args.data, args.users)
    d_items, d_scores = lists(model, tok, histories, args.length, "dense")
    s_items, s_scores = lists(smodel, stok, histories, args.length, "sparse")
    cand, feats = candidate_features(d_items, d_scores, s_items, s_scores, args.length)
    half = torch.randperm(len(targets), generator=torch.Generator().manual_seed(0)) < len(targets) // 2
    fused = torch.full((len(targets), 10), -1, dtype=torch.long)
    weights = []
    for train_mask in (half, ~half):
        w, mean, std = fit(feats[train_mask], cand[train_mask], targets[train_mask])
        weights.append(dict(zip(FEATURES, [round(float(v), 4) for v in w])))
        test = ~train_mask
        logits = (((feats[test] - mean) / std) @ w).masked_fill(cand[test] < 0, float("-inf"))
        fused[test] = cand[test].gather(1, logits.topk(10, dim=-1).indices)
    report = {"model": args.model, "sparse_model": args.sparse_model or args.model, "split": "validation",
              "users": len(targets), "length": args.length, "features": list(FEATURES), "cross_fitted": 2,
              "dense": ranking_metrics(d_items[:, :10], targets), "sparse": ranking_metrics(s_items[:, :10], targets),
              "union_recall": round(float((cand == targets[:, None]).any(1).float().mean()), 4),
              "learned": ranking_metrics(fused, targets), "weights_per_fold": weights,
              "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps({k: report[k] for k in ("dense", "sparse", "learned", "union_recall", "weights_per_fold")}, indent=1))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
