"""Where does each half hit? Validation Recall@K of the dense, sparse and cobra lists by the target's popularity.

Issue 21's probes found the ID path's extra hits to be different mistakes, not a signal the dense half lacks. One place
a sparse half could still know more is the long tail: an item seen a few times in training has a poorly trained dense
vector but shares its ID prefix with popular neighbours. This splits the validation users by how often their target
item occurs in what the model trained on (the item slots it fills in the training sequences: `item_slot_counts`, the
counts of `dense_logq_correction`) and reports each mode's recall per bucket, with its standard error, and the users
the sparse list finds that the dense list misses.

usage:
  python benchmarks/popularity_probe.py --model MODEL [--sparse-model MODEL2] --data ../shared/data/beauty \
      [--users 5000] --output benchmarks/results/research/complementarity/popularity_NAME.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from complementarity import ranked_lists, share
from probe_common import load_models, probe_parser, validation_users

from cobra_hf.training.datasets import index_splits, item_slot_counts

EDGES = (0, 5, 10, 20, 50)  # bucket b holds training counts in [EDGES[b], EDGES[b + 1])


def bucket_names() -> list[str]:
    return [f"{lo}-{hi - 1}" for lo, hi in zip(EDGES, EDGES[1:])] + [f"{EDGES[-1]}+"]


def main() -> None:
    parser = probe_parser(__doc__, sparse_model=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--num-beams", type=int, default=20)
    args = parser.parse_args()
    start = time.perf_counter()
    model, tokenizer, sparse_model, sparse_tok = load_models(args)
    histories, targets = validation_users(model, tokenizer, args.data, args.users)
    lists = {
        "dense": ranked_lists(model, tokenizer, histories, args.k, mode="dense"),
        "sparse": ranked_lists(model, tokenizer, histories, args.k, mode="sparse", num_beams=args.num_beams),
        "cobra": ranked_lists(model, tokenizer, histories, args.k, mode="cobra", num_beams=args.num_beams),
    }
    if args.sparse_model:
        lists["second_sparse"] = ranked_lists(sparse_model, sparse_tok, histories, args.k, mode="sparse",
                                              num_beams=args.num_beams)
    hit = {name: (ranked == targets[:, None]).any(1) for name, ranked in lists.items()}
    # the popularity the model trained on: item slots of its training sequences (as for dense_logq_correction)
    train = index_splits(args.data, tokenizer, max_history=model.config.max_history)["train"]
    popularity = item_slot_counts(train, tokenizer.num_items)[targets]
    bucket = torch.bucketize(popularity, torch.tensor(EDGES[1:]), right=True)
    buckets = {}
    for b, name in enumerate(bucket_names()):
        mask = bucket == b
        if not mask.any():
            continue
        row = {"users": int(mask.sum()), "user_share": round(float(mask.float().mean()), 4)}
        row.update({f"recall_{mode}": share(h[mask]) for mode, h in hit.items()})
        row["sparse_only_hits"] = share((hit["sparse"] & ~hit["dense"])[mask])
        if "second_sparse" in hit:
            row["second_sparse_only_hits"] = share((hit["second_sparse"] & ~hit["dense"])[mask])
        row["cobra_minus_dense"] = round(float(hit["cobra"][mask].float().mean() - hit["dense"][mask].float().mean()), 5)
        buckets[name] = row
    report = {
        "probe": "popularity", "model": args.model, "sparse_model": args.sparse_model, "data": args.data,
        "split": "validation", "users": len(targets), "k": args.k, "num_beams": args.num_beams,
        "bucket_by": "item slots the target fills in the training sequences (training.datasets.item_slot_counts)",
        "recall": {mode: share(h) for mode, h in hit.items()},
        "buckets": buckets,
        "seconds": round(time.perf_counter() - start, 1),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    for name, row in buckets.items():
        print(name, row["users"], {m: row[f"recall_{m}"]["rate"] for m in hit}, "sparse-only",
              row["sparse_only_hits"]["rate"])


if __name__ == "__main__":
    main()
