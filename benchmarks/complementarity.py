"""Is there anything for a fusion to gain? Per-user hits of the dense-only and sparse-only top-K lists, validation only.

A cascade can beat its dense half only on users whose target the sparse half finds and the dense half misses. This
counts them: for each validation user, whether the target is in the top K of each mode (of one model, or of the
dense model and the sparse model given separately), and the union ("either") as an upper bound on any fusion that
re-ranks the two lists into one top K... an oracle, not a method: it tells whether the two halves are complementary
(union well above the better half) or redundant (union close to it).

usage:
  python benchmarks/complementarity.py --dense-model MODEL [--sparse-model MODEL2] --data ../shared/data/beauty \
      [--users 5000] [--modes dense,sparse,cobra] --output benchmarks/results/research/complementarity/NAME.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from cobra_hf.inference import load_checkpoint
from probe_common import validation_users


@torch.no_grad()
def ranked_lists(model, tokenizer, histories, k: int, batch_size: int = 256, **kwargs) -> torch.Tensor:
    """Long[U, k] catalog indices, best first, from model.generate(**kwargs)."""
    out = []
    for begin in range(0, len(histories), batch_size):
        batch = tokenizer.encode_indices(histories[begin:begin + batch_size], return_tensors="pt")
        out.append(model.generate(**batch, top_k=k, **kwargs).item_indices)
    return torch.cat(out)


def share(mask: torch.Tensor) -> dict:
    p = float(mask.float().mean())
    return {"rate": round(p, 5), "se": round(math.sqrt(p * (1 - p) / max(len(mask), 1)), 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dense-model", required=True, help="checkpoint whose dense-only (and cobra) lists are read")
    parser.add_argument("--sparse-model", help="checkpoint whose sparse-only list is read (default: --dense-model)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--users", type=int, default=5000, help="validation users, seeded sample (-1 = all)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    dense_model, tokenizer = load_checkpoint(args.dense_model)
    sparse_model, sparse_tok = (dense_model, tokenizer) if not args.sparse_model else load_checkpoint(args.sparse_model)
    if sparse_model.config.catalog_hash != dense_model.config.catalog_hash and args.sparse_model:
        # item indices are the catalog's: two catalogs of one dataset share them only if built from the same items
        if sparse_model.config.num_items != dense_model.config.num_items:
            raise SystemExit("the two models' catalogs hold different items; use models of one dataset")
    histories, targets = validation_users(dense_model, tokenizer, args.data, args.users)
    lists = {
        "dense": ranked_lists(dense_model, tokenizer, histories, args.k, mode="dense"),
        "sparse": ranked_lists(sparse_model, sparse_tok, histories, args.k, mode="sparse", num_beams=args.num_beams),
    }
    if not args.sparse_model:
        lists["cobra"] = ranked_lists(dense_model, tokenizer, histories, args.k, mode="cobra", num_beams=args.num_beams)
    hit = {name: (ranked == targets[:, None]).any(1) for name, ranked in lists.items()}
    report = {
        "dense_model": args.dense_model, "sparse_model": args.sparse_model or args.dense_model, "data": args.data,
        "split": "validation", "users": len(targets), "k": args.k, "num_beams": args.num_beams,
        "recall": {name: share(h) for name, h in hit.items()},
        "either_dense_or_sparse": share(hit["dense"] | hit["sparse"]),
        "both": share(hit["dense"] & hit["sparse"]),
        "sparse_only_hits": share(hit["sparse"] & ~hit["dense"]),
        "dense_only_hits": share(hit["dense"] & ~hit["sparse"]),
        "list_overlap_mean": round(float(torch.tensor([
            len(set(a.tolist()) & set(b.tolist())) for a, b in zip(lists["dense"], lists["sparse"])]).float().mean()) / args.k, 4),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if "cobra" in hit:
        report["cobra_hits_outside_dense"] = share(hit["cobra"] & ~hit["dense"])
        report["dense_hits_lost_by_cobra"] = share(hit["dense"] & ~hit["cobra"])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
