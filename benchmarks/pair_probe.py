"""Validation probe: does COBRA's cascade pay when its beams come from a model trained for IDs alone?

Decodes with a `CobraEnsemble` of two checkpoints of one catalog in roles: the --ids model's code log-probabilities
drive the beam search, the --vectors model gives every dense vector (each beam's, the ID-free one, the catalog's).
Scores the pair's cobra mode over a small fusion grid on a seeded sample of validation users, then the best setting,
dense mode (the vectors model alone) and sparse mode (the ids model alone) on --final-users (all by default), so the
reported gain is not read on the users it was chosen on alone. A probe for choosing what to build, not a method in
the package; its numbers are validation numbers.

usage:
  python benchmarks/pair_probe.py --vectors runs/research/A/model --ids runs/research/B/model \
      --data ../shared/data/beauty [--users 5000] [--final-users -1] \
      --output benchmarks/results/research/complementarity/pair_NAME.json
  (--settings '{"beam_fusion_tau": 0.3, ...}' skips the grid and scores that setting, e.g. the one an earlier seed's
  probe chose, so a later seed's number is not chosen on its own users at all)
  (--roles both both decodes the two checkpoints as a plain ensemble, every score averaged: the equal-cost baseline
  of a pair, e.g. two seeds of the joint model; several --vectors average their vectors under one --ids model's beams)
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

from cobra_hf.evaluation import evaluate_split
from cobra_hf.inference import load_ensemble
from cobra_hf.training.datasets import index_splits
from research_run import PAPER_FUSION, with_errors

# the fusion grid around the joint recipe's setting (tau 0.1, psi 2, psi_h 16, 50 dense-guided IDs): the weight of
# the beams' log-probabilities (tau; a model trained for IDs may earn more than the joint model's own beams) and of
# the beam vectors (psi); each cell one cobra-mode pass over the sample
GRID = {"beam_fusion_tau": (0.1, 0.3, 1.0), "beam_fusion_psi": (2.0, 8.0), "beam_fusion_dense_psi": (16.0,),
        "dense_guided_ids": (50,)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", required=True, nargs="+",
                        help="checkpoint(s) trained with the dense losses (and ID-free head); several are averaged")
    parser.add_argument("--ids", required=True, help="checkpoint of the same catalog trained for IDs")
    parser.add_argument("--data", required=True)
    parser.add_argument("--users", type=int, default=5000, help="seeded validation sample the grid is scored on")
    parser.add_argument("--final-users", type=int, default=-1, help="validation users of the final scores (-1 = all)")
    parser.add_argument("--settings", default="", help="JSON fusion setting to score instead of choosing one on a grid")
    parser.add_argument("--roles", nargs="+", default=None, metavar="ROLE",
                        help="CobraEnsemble roles of --vectors and --ids (default: vectors for each --vectors, ids)")
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--output", required=True)
    parser.add_argument("--expected", default="", help="what the probe is expected to show, written before it runs")
    args = parser.parse_args()
    best = json.loads(args.settings) if args.settings else None
    if best is not None and set(best) - set(GRID):
        parser.error(f"--settings names {sorted(set(best) - set(GRID))}; it takes the grid's fields {sorted(GRID)}")
    start = time.perf_counter()
    roles = args.roles or ["vectors"] * len(args.vectors) + ["ids"]
    model, tokenizer = load_ensemble([*args.vectors, args.ids], roles=roles)
    split = index_splits(args.data, tokenizer, max_history=model.config.max_history)["validation"]
    base = {"num_beams": args.num_beams, "beam_fusion": "joint"}

    def score(users: int, **settings) -> dict:
        result = evaluate_split(model, tokenizer, split, None if users < 0 else users, show_progress=False,
                                **{**base, **settings})
        row = with_errors(result)
        print(json.dumps({**settings, **{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}}),
              flush=True)
        return row

    grid = []
    if not args.settings:
        for values in itertools.product(*GRID.values()):
            settings = dict(zip(GRID, values))
            grid.append({"settings": settings, **score(args.users, mode="cobra", **settings)})
        best = max(grid, key=lambda row: row["recall@10"] + row["ndcg@10"])["settings"]
    final = {
        "cobra": score(args.final_users, mode="cobra", **best),
        "dense": score(args.final_users, mode="dense"),
        "sparse": score(args.final_users, mode="sparse"),
        "cobra_paper_fusion": score(args.final_users, mode="cobra", **PAPER_FUSION),
    }
    report = {"expected": args.expected, "vectors": args.vectors[0] if len(args.vectors) == 1 else args.vectors,
              "ids": args.ids, "roles": roles,
              "split": "validation",
              "command": shlex.join(["python", *sys.argv]), "chosen_by": "grid" if grid else "--settings",
              "grid_users": args.users if grid else 0,
              "final_users": final["dense"]["users"], "num_beams": args.num_beams, "grid": grid,
              "chosen": best, "final": final, "seconds": round(time.perf_counter() - start, 1)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.output).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(args.output)


if __name__ == "__main__":
    main()
