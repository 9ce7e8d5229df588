"""Full-ranking Recall@K / NDCG@K of a checkpoint on the leave-one-out test split of a dataset folder; prints JSON.

    python examples/evaluate.py --model runs/sci/model --data data/scientific --max-users 1000
"""

from __future__ import annotations

import argparse
import json
import sys

from cobra_hf.evaluation import evaluate_split
from cobra_hf.evaluation.coverage import check_coverage
from cobra_hf.inference import load_checkpoint
from cobra_hf.training import index_splits


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub repo id")
    parser.add_argument("--data", required=True, help="dataset folder (sequences.txt + items.jsonl)")
    parser.add_argument("--split", default="test", choices=["validation", "test"])
    parser.add_argument("--max-users", type=int, default=None, help="evaluate a seeded random sample of N users")
    parser.add_argument("--num-beams", type=int, default=20)
    args = parser.parse_args(argv)

    model, tokenizer = load_checkpoint(args.model)
    splits = index_splits(args.data, tokenizer, max_history=model.config.max_history, require_train=False)
    # users whose target the catalog lacks are left out; refused when that is most of them (other data)
    warning = check_coverage(splits.coverage[args.split], args.split, args.data, args.model, drop_unknown=False)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    split = splits[args.split]
    metrics = evaluate_split(model, tokenizer, split, max_users=args.max_users, num_beams=args.num_beams,
                             show_progress=False)
    metrics = {"split": args.split, **metrics}
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
