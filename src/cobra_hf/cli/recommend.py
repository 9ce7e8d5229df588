"""`cobra-hf recommend MODEL_DIR --history ITEM [ITEM ...] --top-k 10`."""

from __future__ import annotations

import argparse
import json

from ..configuration_cobra import GENERATION_MODES
from .generation_flags import add_generation_flags, generation_kwargs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cobra-hf recommend",
        description="Recommend the next items for a history of item ids (oldest first), with titles and scores.",
        epilog="example: cobra-hf recommend runs/beauty/model --history B004756YJA B0020YLEYK --top-k 10",
    )
    parser.add_argument("model_dir", help="checkpoint folder (or a Hub repo id)")
    parser.add_argument("--ensemble", nargs="+", default=[], metavar="MODEL_DIR",
                        help="more checkpoints of the same catalog: recommend with all of them, scores averaged")
    parser.add_argument("--history", nargs="+", required=True, metavar="ITEM", help="item ids, oldest first")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--mode", choices=GENERATION_MODES, default=None)
    add_generation_flags(parser)
    parser.add_argument("--exclude-history", action="store_true", default=None,
                        help="never recommend items of the history (default: the checkpoint's)")
    parser.add_argument("--skip-unknown", action="store_true", help="drop unknown item ids instead of failing")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from ..inference import load_ensemble, recommend
    from ..tokenization_cobra import CobraTokenizer

    # check the history against the catalog first: a typo fails in a second, before the weights load
    tokenizer = CobraTokenizer.from_pretrained(args.model_dir)
    tokenizer([args.history], unknown_items="drop" if args.skip_unknown else "error")
    model, tokenizer = load_ensemble([args.model_dir, *args.ensemble], tokenizer=tokenizer)
    kwargs = {} if args.exclude_history is None else {"exclude_history": True}
    if args.mode:
        kwargs["mode"] = args.mode
    kwargs.update(generation_kwargs(args))
    rows = recommend(model, tokenizer, [args.history], top_k=args.top_k,
                     unknown_items="drop" if args.skip_unknown else "error", **kwargs)[0]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    width = max(len(row["item_id"]) for row in rows)
    print(f"{'rank':>4}  {'item':<{width}}  {'score':>9}  title")
    for row in rows:
        print(f"{row['rank']:>4}  {row['item_id']:<{width}}  {row['score']:>9.4f}  {row['title']}")
    return 0
