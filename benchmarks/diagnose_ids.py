"""Where does the ID path lose the target? Diagnostics of a trained COBRA checkpoint on a validation split.

Measured on the validation split (never test), for the users given (all by default):
  * teacher-forced accuracy of each code level: level l predicted with the target's true codes 1..l-1 fed in
    (the training condition), top-1 and top-10, unconstrained and restricted to valid next codes, plus the mean
    cross-entropy per level;
  * the target's ID among the beams: the share of users whose target ID is among the best 1, 5, 10, 20 beams of
    one beam search with M = 20;
  * the rank of the target among the items of its own ID by the beam's dense vector (how much the dense half
    must do once the ID is right), and the share of targets whose ID is shared with other items;
  * gradient shares: the norm of each loss's gradient on the shared decoder parameters, over a few training
    batches (which loss steers the shared trunk).

usage:
  python benchmarks/diagnose_ids.py MODEL --data ../shared/data/beauty [--users N] [--output diag.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from cobra_hf.inference import load_checkpoint
from cobra_hf.training.collator import CobraDataCollator
from cobra_hf.evaluation import sample_split
from cobra_hf.training.datasets import index_splits, item_slot_counts


@torch.no_grad()
def teacher_forced_levels(model, tokenizer, split, batch_size: int = 512, topk: int = 10) -> dict:
    """Per-level accuracy of the target's codes given its true prefix (history + target fed in, causal)."""
    collate = CobraDataCollator(tokenizer, max_items=model.config.max_history + 1)
    index = model.id_index
    levels = model.config.num_levels
    hits1 = torch.zeros(levels)
    hits1_valid = torch.zeros(levels)
    hitsk = torch.zeros(levels)
    nll = torch.zeros(levels)
    chain = 0
    users = 0
    rows = split.to_list()
    for begin in range(0, len(rows), batch_size):
        batch = collate(rows[begin : begin + batch_size])
        batch.pop("labels")
        out = model(**batch)
        target = model.item_codes[batch["item_index"][:, -1]]  # [B, L]
        all_right = torch.ones(target.shape[0], dtype=torch.bool)
        for level in range(levels):
            logits = out.sparse_logits[level][:, -1]  # [B, K_l]: the target item, true prefix fed in
            allowed = index.first_mask.expand_as(logits) if level == 0 else index.allowed_next(target[:, :level])
            valid_logits = logits.masked_fill(~allowed, float("-inf"))
            truth = target[:, level]
            hits1[level] += (logits.argmax(-1) == truth).sum()
            right = valid_logits.argmax(-1) == truth
            hits1_valid[level] += right.sum()
            all_right &= right
            top = valid_logits.topk(min(topk, logits.shape[-1]), dim=-1).indices
            hitsk[level] += (top == truth[:, None]).any(-1).sum()
            nll[level] += F.cross_entropy(valid_logits, truth, reduction="sum")
        chain += int(all_right.sum())
        users += target.shape[0]
    return {
        "users": users,
        "top1": (hits1 / users).tolist(),
        "top1_valid": (hits1_valid / users).tolist(),
        f"top{topk}_valid": (hitsk / users).tolist(),
        "nll_valid": (nll / users).tolist(),
        "all_levels_top1_true_prefix": chain / users,
    }


@torch.no_grad()
def beam_hits(model, tokenizer, split, ranks=(1, 5, 10, 20), batch_size: int = 256) -> dict:
    """One constrained beam search with M = max(ranks) beams per user: the share of users whose target ID is among
    its best r beams for each r, and the rank of the target among its ID's items by that beam's dense vector (when
    the ID is found)."""
    beams = max(ranks)
    found = {r: 0 for r in ranks}
    within_rank = []
    shared = 0
    users = 0
    catalog = model.all_item_vectors()
    index = model.id_index
    histories, targets = list(split["history_index"]), list(split["target_index"])
    for begin in range(0, len(histories), batch_size):
        batch = tokenizer.encode_indices(histories[begin : begin + batch_size], return_tensors="pt")
        target_items = torch.tensor(targets[begin : begin + batch_size])
        target_codes = model.item_codes[target_items]  # [B, L]
        out = model.generate(**batch, mode="sparse", num_beams=beams, top_k=1)
        match = (out.semantic_ids[:, :beams] == target_codes[:, None]).all(-1)  # [B, M], beams best first
        for r in ranks:
            found[r] += int(match[:, :r].any(-1).sum())
        beam_of = match.float().argmax(-1)
        vectors = F.normalize(out.beam_vectors[torch.arange(len(beam_of)), beam_of], dim=-1)
        members, valid = index.items_of(target_codes[:, None])  # [B, 1, P]
        members, valid = members[:, 0], valid[:, 0]
        shared += int((valid.sum(-1) > 1).sum())
        cos = (vectors[:, None] * catalog[members]).sum(-1).masked_fill(~valid, float("-inf"))
        target_cos = (vectors * catalog[target_items]).sum(-1)
        rank = (cos > target_cos[:, None]).sum(-1)
        within_rank += rank[match.any(-1)].tolist()
        users += len(target_items)
    ranks_found = torch.tensor(within_rank, dtype=torch.float)
    return {
        "users": users,
        "id_hit_rate": {str(r): found[r] / users for r in ranks},
        "target_id_shared_share": shared / users,
        "within_id_top1_when_found": float((ranks_found == 0).float().mean()) if len(ranks_found) else None,
        "within_id_mean_rank_when_found": float(ranks_found.mean()) if len(ranks_found) else None,
    }


def gradient_shares(model, tokenizer, train_split, batches: int = 4, batch_size: int = 256, seed: int = 0) -> dict:
    """Norm of each weighted loss's gradient on the decoder (the trunk every head shares), mean over batches."""
    collate = CobraDataCollator(tokenizer, max_items=model.config.max_history + 1)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_split), generator=generator)[: batches * batch_size].tolist()
    rows = train_split.select(order).to_list()
    params = [p for p in model.model.decoder.parameters() if p.requires_grad]
    if model.config.dense_logq_correction:  # a training statistic, not saved with the weights
        model.set_item_frequencies(item_slot_counts(train_split, model.config.num_items))
    # with an ID trunk, sparse_loss trains only the trunk (share 0 here) and backbone_sparse_loss is the backbone's
    weights = {"sparse_loss": model.config.sparse_loss_weight, "backbone_sparse_loss": model.config.sparse_loss_weight,
               "dense_loss": model.config.dense_loss_weight,
               "history_dense_loss": model.config.history_dense_loss_weight}
    norms: dict[str, float] = {}
    model.train()
    torch.manual_seed(seed)
    for begin in range(0, len(rows), batch_size):
        out = model(**collate(rows[begin : begin + batch_size]))
        for name, weight in weights.items():
            loss = getattr(out, name, None)
            if loss is None or not weight:
                continue
            grads = torch.autograd.grad(weight * loss, params, retain_graph=True, allow_unused=True)
            norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
            norms[name] = norms.get(name, 0.0) + norm / batches
    model.eval()
    total = sum(norms.values()) or 1.0
    return {"decoder_grad_norm": norms, "share": {name: value / total for name, value in norms.items()}}


def diagnose(model, tokenizer, data_dir: str, users: int | None = None, grad_batches: int = 4) -> dict:
    splits = index_splits(data_dir, tokenizer, max_history=model.config.max_history)
    validation = sample_split(splits["validation"], users)
    model.eval()
    start = time.perf_counter()
    report = {
        "split": "validation",
        "teacher_forced": teacher_forced_levels(model, tokenizer, validation),
        "beam_search": beam_hits(model, tokenizer, validation),
    }
    if grad_batches:
        report["gradients"] = gradient_shares(model, tokenizer, splits["train"], batches=grad_batches)
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--users", type=int, default=None, help="validation users (seeded sample; default all)")
    parser.add_argument("--grad-batches", type=int, default=4)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    model, tokenizer = load_checkpoint(args.model)
    report = diagnose(model, tokenizer, args.data, args.users, args.grad_batches)
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
