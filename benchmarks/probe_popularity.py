"""Does a checkpoint's ranking miss item popularity? Re-rank its candidates with a popularity prior and see.

In-batch InfoNCE draws its negatives by popularity, so without a correction the dense scores learn
log p(item | user) - log Q(item): popularity is trained out (the reason for `dense_logq_correction`). This probe
measures that on validation users: for each generate() setting it takes the top --depth candidates, adds
beta * log(1 + training count of the item) to each candidate's ranking score (the cosine in "dense" mode, the log of
the BeamFusion weight otherwise) and reports Recall/NDCG@5/10 per beta. beta = 0 is the checkpoint as it is.
Counts come from the training split only (no validation or test target is counted).

usage:
  python benchmarks/probe_popularity.py --model runs/bench/beauty_fast/model --data ../shared/data/beauty \\
      --val-users 3000 --output runs/probe_popularity.json --settings '[{"mode": "dense"},
      {"beam_fusion": "joint", "dense_guided_ids": 50, "beam_fusion_tau": 0.1, "beam_fusion_psi": 8,
       "beam_fusion_dense_psi": 4}]'
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from cobra_hf.evaluation.metrics import ranking_metrics
from cobra_hf.inference import load_checkpoint
from cobra_hf.training.datasets import index_splits, item_slot_counts

BETAS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)


@torch.no_grad()
def candidates(model, tokenizer, histories, setting: dict, depth: int, batch_size: int):
    """Top-`depth` items Long[U, depth] of each user and their ranking scores Float[U, depth] on one log scale
    (-inf where a slot is empty)."""
    items, scores = [], []
    for begin in range(0, len(histories), batch_size):
        batch = tokenizer.encode_indices(histories[begin : begin + batch_size], return_tensors="pt")
        out = model.generate(**batch, top_k=depth, **setting)
        score = out.scores
        if setting.get("mode", "cobra") != "dense":
            # BeamFusion weights are probabilities (log them); catalog top-ups score in [-2, -1]: keep them last
            score = torch.where(score > 0, score.clamp(min=1e-30).log(), score - 1e4)
        items.append(out.item_indices)
        scores.append(score.masked_fill(out.item_indices < 0, float("-inf")))
    return torch.cat(items), torch.cat(scores)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="dataset folder (split with the checkpoint's tokenizer)")
    parser.add_argument("--settings", required=True, help="JSON list of dicts of generate() arguments")
    parser.add_argument("--val-users", type=int, default=3000, help="validation users sampled at random (seed 0)")
    parser.add_argument("--depth", type=int, default=200, help="candidates re-ranked per user")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--output", required=True, help="JSON report (refuses to overwrite without --overwrite)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if Path(args.output).exists() and not args.overwrite:
        parser.error(f"{args.output} already exists (--overwrite to replace it).")
    settings = json.loads(args.settings)
    if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings):
        parser.error("--settings must be a JSON list of dicts of generate() arguments.")

    model, tokenizer = load_checkpoint(args.model)
    model.eval()
    splits = index_splits(args.data, tokenizer, max_history=model.config.max_history)
    log_count = torch.log1p(item_slot_counts(splits["train"], model.config.num_items).float())
    validation = splits["validation"]
    rows = sorted(random.Random(0).sample(range(len(validation)), min(args.val_users, len(validation))))
    histories = [validation[r]["history_index"] for r in rows]
    targets = torch.tensor([validation[r]["target_index"] for r in rows])

    report = {"model": args.model, "data": args.data, "validation_users": len(rows), "depth": args.depth,
              "prior": "beta * log(1 + training count)", "results": []}
    for setting in settings:
        start = time.perf_counter()
        items, scores = candidates(model, tokenizer, histories, setting, args.depth, args.batch_size)
        for beta in BETAS:
            reranked = scores + beta * log_count[items.clamp(min=0)]
            order = torch.sort(reranked, dim=-1, descending=True, stable=True).indices[:, :10]
            metrics = ranking_metrics(items.gather(1, order), targets)
            entry = {"setting": setting, "beta": beta, **{k: round(v, 4) for k, v in metrics.items()}}
            report["results"].append(entry)
            print(json.dumps(entry), flush=True)
        report.setdefault("seconds", {})[json.dumps(setting)] = round(time.perf_counter() - start, 1)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
