"""`cobra-hf evaluate MODEL_DIR --data DATA_DIR --split test`: full-ranking Recall@5/10 and NDCG@5/10."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..configuration_cobra import GENERATION_MODES
from .generation_flags import add_generation_flags, generation_kwargs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cobra-hf evaluate",
        description="Full-ranking evaluation of a checkpoint on the leave-one-out protocol (last item = test, "
        "second to last = validation). Prints a JSON object with recall@5, recall@10, ndcg@5, ndcg@10 as its "
        "last line.",
        epilog="example: cobra-hf evaluate runs/beauty/model --data ../shared/data/beauty --split test --mode cobra",
    )
    parser.add_argument("model_dir", help="checkpoint folder (or a Hub repo id)")
    parser.add_argument("--ensemble", nargs="+", default=[], metavar="MODEL_DIR",
                        help="more checkpoints of the same catalog (e.g. other seeds): rank with all of them together, "
                        "scores averaged (cobra_hf.ensemble); the first checkpoint's generation settings apply")
    parser.add_argument("--data", required=True, help="dataset folder with sequences.txt and items.jsonl")
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument("--mode", choices=GENERATION_MODES, default=None, help="decoding mode (default: the checkpoint's)")
    parser.add_argument("--all-modes", action="store_true", help="evaluate every mode, one JSON line each")
    add_generation_flags(parser)
    parser.add_argument("--exclude-history", action="store_true", default=None,
                        help="never recommend items of the history (default: the checkpoint's)")
    parser.add_argument("--max-users", type=int, default=None, help="evaluate only the first users (quick checks)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--use-faiss", action="store_true", default=None,
                        help="faiss for whole-catalog nearest-item search (default: the checkpoint's)")
    parser.add_argument("--output", help="also write the JSON to this file (refuses to overwrite an existing file)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.output and Path(args.output).exists():
        raise FileExistsError(f"{args.output} already exists; choose another --output.")
    from ..evaluation import evaluate_split
    from ..inference import load_ensemble
    from ..training.datasets import index_splits

    model, tokenizer = load_ensemble([args.model_dir, *args.ensemble])
    split = index_splits(args.data, tokenizer, max_history=model.config.max_history)[args.split]
    # flags not given leave the checkpoint's generation_config in charge
    kwargs = {name: value for name, value in (("exclude_history", args.exclude_history), ("use_faiss", args.use_faiss))
              if value is not None}
    kwargs.update(generation_kwargs(args))
    modes = GENERATION_MODES if args.all_modes else [args.mode or model.generation_config.recommend_mode]
    results = []
    for mode in modes:
        result = evaluate_split(model, tokenizer, split, max_users=args.max_users, batch_size=args.batch_size, mode=mode, **kwargs)
        result.update(split=args.split, model=str(args.model_dir))
        if args.ensemble:
            result["ensemble"] = [str(args.model_dir), *args.ensemble]
        results.append(result)
        print(json.dumps(result))
    if args.output:
        Path(args.output).write_text(json.dumps(results if args.all_modes else results[0], indent=1))
    return 0
