"""Where does each half hit? Validation Recall@K of the dense, sparse and cobra lists by the target's popularity.

Issue 21's probes found the ID path's extra hits to be different mistakes, not a signal the dense half lacks. One place
a sparse half could still know more is the long tail: an item seen a few times in training has a poorly trained dense
vector but shares its ID prefix with popular neighbours. This splits the validation users by how often their target
item occurs in the training part of all sequences (every item but each user's last two) and reports each mode's
recall per bucket, with its standard error, and the users the sparse list finds that the dense list misses.

usage:
  python benchmarks/popularity_probe.py --model MODEL [--sparse-model MODEL2] --data ../shared/data/beauty \
      [--users 5000] --output benchmarks/results/research/complementarity/popularity_NAME.json
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import torch

from complementarity import ranked_lists, share
from probe_common import load_models, probe_parser, validation_users

from cobra_hf.data import load_dataset_folder

EDGES = (0, 5, 10, 20, 50)  # bucket b holds training counts in [EDGES[b], EDGES[b + 1])


def training_counts(data: str, item_to_index: dict) -> torch.Tensor:
    """Long[I]: occurrences of each catalog item in the training part of the sequences (all but the last two)."""
    sequences, _ = load_dataset_folder(data, drop_unknown=True)
    counts = Counter(item for items in sequences["item_ids"] for item in items[:-2])
    out = torch.zeros(len(item_to_index), dtype=torch.long)
    for item, count in counts.items():
        if item in item_to_index:
            out[item_to_index[item]] = count
    return out


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
    popularity = training_counts(args.data, tokenizer.item_to_index)[targets]
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
        "bucket_by": "training occurrences of the target item (all sequences, last two items of each left out)",
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
