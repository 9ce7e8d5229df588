"""Offline probe: how much of the dense/sparse complementarity (benchmarks/complementarity.py) can a rank fusion keep?

Reads each mode's top-L list once (validation users only), then scores fusions of the two lists without generating
again: weighted reciprocal-rank fusion, score(a) = w / (c + rank_dense(a)) + (1 - w) / (c + rank_sparse(a)) (an item
missing from a list gets rank L + 1 there), over a grid of w and c. A probe for choosing what to build into
generate(), not a method in the package; its numbers are validation numbers.

usage:
  python benchmarks/rank_fusion_probe.py --model MODEL [--sparse-model MODEL2] --data ../shared/data/beauty \
      [--users 5000] --output benchmarks/results/research/complementarity/rank_probe_NAME.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from cobra_hf.evaluation.metrics import ranking_metrics
from complementarity import ranked_lists
from probe_common import load_models, probe_parser, validation_users


def fuse(dense: torch.Tensor, sparse: torch.Tensor, w: float, c: float, k: int = 10) -> torch.Tensor:
    """dense, sparse Long[U, L] ranked lists (-1 = empty slot) -> Long[U, k] fused list."""
    users, length = dense.shape
    out = torch.full((users, k), -1, dtype=torch.long)
    for u in range(users):
        score: dict[int, float] = {}
        for weight, row in ((w, dense[u].tolist()), (1 - w, sparse[u].tolist())):
            for rank, item in enumerate(row, 1):
                if item >= 0:
                    score[item] = score.get(item, 0.0) + weight / (c + rank)
            # an item absent from this list is ranked just below it
        for item in score:
            for weight, row in ((w, dense[u]), (1 - w, sparse[u])):
                if not bool((row == item).any()):
                    score[item] += weight / (c + length + 1)
        best = sorted(score.items(), key=lambda kv: -kv[1])[:k]
        out[u, :len(best)] = torch.tensor([item for item, _ in best])
    return out


def main() -> None:
    parser = probe_parser(__doc__, sparse_model=True)
    parser.add_argument("--length", type=int, default=50)
    args = parser.parse_args()
    start = time.perf_counter()
    model, tok, smodel, stok = load_models(args)
    histories, targets = validation_users(model, tok, args.data, args.users)
    dense = ranked_lists(model, tok, histories, args.length, mode="dense")
    sparse = ranked_lists(smodel, stok, histories, args.length, mode="sparse", num_beams=args.length)
    grid = []
    for name, ranked in (("dense", dense), ("sparse", sparse)):
        grid.append({"fusion": name, **ranking_metrics(ranked[:, :10], targets)})
    for c in (1.0, 10.0, 60.0):
        for w in (0.5, 0.6, 0.7, 0.8, 0.9):
            grid.append({"fusion": "rrf", "w": w, "c": c, **ranking_metrics(fuse(dense, sparse, w, c), targets)})
    for row in grid:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    report = {"model": args.model, "sparse_model": args.sparse_model or args.model, "split": "validation",
              "users": len(targets), "length": args.length, "grid": grid,
              "seconds": round(time.perf_counter() - start, 1)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
