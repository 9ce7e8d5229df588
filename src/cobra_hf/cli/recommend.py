"""`cobra-hf recommend MODEL_DIR --history ITEM [ITEM ...] --top-k 10`."""

from __future__ import annotations

import argparse
import json
import sys

from ..configuration_cobra import GENERATION_MODES
from .ensemble_flags import add_ensemble_flags, ensemble_sources
from .generation_flags import (add_generation_flags, check_flags_read, check_generation_flags, generation_kwargs,
                               name_flags)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cobra-hf recommend",
        description="Recommend the next items for a history of item ids (oldest first), with titles and scores.",
        epilog="example: cobra-hf recommend runs/beauty/model --history B004756YJA B0020YLEYK --top-k 10",
    )
    parser.add_argument("model_dir", help="checkpoint folder (or a Hub repo id)")
    add_ensemble_flags(parser)
    parser.add_argument("--history", nargs="+", required=True, metavar="ITEM", help="item ids, oldest first")
    parser.add_argument("--top-k", type=int, default=None,
                        help="how many items to recommend (default: the checkpoint's, 10 unless it was tuned)")
    parser.add_argument("--mode", choices=GENERATION_MODES, default=None)
    add_generation_flags(parser)
    parser.add_argument("--exclude-history", action="store_true", default=None,
                        help="never recommend items of the history (default: the checkpoint's)")
    parser.add_argument("--skip-unknown", action="store_true", help="drop unknown item ids instead of failing")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}.")
    check_generation_flags(args)
    from ..inference import load_ensemble, recommend
    from ..tokenization_cobra import CobraTokenizer

    sources, roles = ensemble_sources(args)
    # check the history and --top-k against the catalog first: a typo fails in a second, before the weights load
    tokenizer = CobraTokenizer.from_pretrained(sources[0])
    history = known_history(args, tokenizer)
    if args.top_k is not None and args.top_k > tokenizer.num_items:
        raise ValueError(f"--top-k {args.top_k} asks for more items than the catalog holds ({tokenizer.num_items}).")
    model, tokenizer = load_ensemble(sources, tokenizer=tokenizer, roles=roles)
    kwargs = {} if args.exclude_history is None else {"exclude_history": True}
    if args.top_k is not None:
        kwargs["top_k"] = args.top_k
    if args.mode:
        kwargs["mode"] = args.mode
    kwargs.update(generation_kwargs(args))
    try:
        check_flags_read(args, model, [args.mode or model.generation_config.recommend_mode])
        rows = recommend(model, tokenizer, [history], **kwargs)[0]
    except ValueError as err:  # generate() names its arguments; the user typed flags
        raise ValueError(name_flags(str(err), args)) from None
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    width = max(len(row["item_id"]) for row in rows)
    print(f"{'rank':>4}  {'item':<{width}}  {'score':>9}  title")
    for row in rows:
        print(f"{row['rank']:>4}  {row['item_id']:<{width}}  {row['score']:>9.4f}  {row['title']}")
    return 0


def known_history(args: argparse.Namespace, tokenizer) -> list[str]:
    """--history without the ids the catalog does not know: refused without --skip-unknown, and with it left out
    with a warning that names them (a one-line ValueError when nothing is left)."""
    unknown = [item for item in args.history if item not in tokenizer.item_to_index]
    if not unknown:
        return list(args.history)
    shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    if not args.skip_unknown:
        raise ValueError(f"--history holds item ids that are not in the catalog of {args.model_dir}: {shown}; "
                         "pass --skip-unknown to leave them out.")
    history = [item for item in args.history if item in tokenizer.item_to_index]
    if not history:
        raise ValueError(f"none of the --history items is in the catalog of {args.model_dir} ({shown}): "
                         "--skip-unknown leaves nothing to recommend from.")
    print(f"cobra-hf recommend: warning: --skip-unknown left out {len(unknown)} item id(s) not in the catalog: {shown}",
          file=sys.stderr)
    return history
