"""`cobra-hf evaluate MODEL_DIR --data DATA_DIR --split test`: full-ranking Recall@5/10 and NDCG@5/10."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..configuration_cobra import GENERATION_MODES
from .ensemble_flags import add_ensemble_flags, ensemble_sources
from .generation_flags import (add_generation_flags, check_flags_read, check_generation_flags, generation_kwargs,
                               name_flags)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cobra-hf evaluate",
        description="Full-ranking evaluation of a checkpoint on the leave-one-out protocol (last item = test, "
        "second to last = validation). Prints a JSON object with recall@5, recall@10, ndcg@5, ndcg@10 as its "
        "last line, with users (evaluated), users_skipped (target or whole history not in the model's catalog), "
        "unknown_targets and unknown_items (distinct item ids of the split not in the catalog).",
        epilog="example: cobra-hf evaluate runs/beauty/model --data ../shared/data/beauty --split test --mode cobra",
    )
    parser.add_argument("model_dir", help="checkpoint folder (or a Hub repo id)")
    add_ensemble_flags(parser)
    parser.add_argument("--data", required=True, help="dataset folder with sequences.txt and items.jsonl")
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument("--mode", choices=GENERATION_MODES, default=None, help="decoding mode (default: the checkpoint's)")
    parser.add_argument("--all-modes", action="store_true", help="evaluate every mode the model has (dense: with history_dense_loss_weight > 0), one JSON line each")
    add_generation_flags(parser)
    parser.add_argument("--exclude-history", action="store_true", default=None,
                        help="never recommend items of the history (default: the checkpoint's)")
    parser.add_argument("--max-users", type=int, default=None, help="evaluate a seeded random sample of this many users (the same sample every time; quick checks)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--drop-unknown", action="store_true",
                        help="evaluate the users whose items the catalog knows even when more than 1%% of the targets "
                        "are unknown to it (otherwise refused: it is most likely other data); the JSON counts "
                        "users_skipped and unknown_items either way")
    parser.add_argument("--use-faiss", action="store_true", default=None,
                        help="faiss for whole-catalog nearest-item search (default: the checkpoint's)")
    parser.add_argument("--output", help="also write the JSON to this file (refuses to overwrite an existing file)")
    return parser


def check_flags(args: argparse.Namespace) -> None:
    """Everything about the flags that can be refused before a model or data file is read (one-line ValueErrors)."""
    for flag, value in (("--max-users", args.max_users), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}.")
    check_generation_flags(args)
    if args.all_modes and args.mode:
        raise ValueError(f"--mode {args.mode} and --all-modes together: --all-modes evaluates every mode; give one "
                         "of the two.")
    if args.output:
        output = Path(args.output)
        if output.exists():
            raise FileExistsError(f"{args.output} already exists; choose another --output.")
        if not output.parent.is_dir():  # checked now, not after an hour of evaluation
            raise FileNotFoundError(f"--output {args.output}: the folder {output.parent} does not exist; create it first.")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_flags(args)
    from ..configuration_cobra import CobraConfig
    from ..evaluation import evaluate_split
    from ..inference import load_ensemble
    from ..tokenization_cobra import CobraTokenizer

    sources, roles = ensemble_sources(args)
    # the data is checked against the catalog before the weights load
    tokenizer = CobraTokenizer.from_pretrained(sources[0])
    split, coverage = checked_split(args, tokenizer, CobraConfig.from_pretrained(sources[0]).max_history)
    model, tokenizer = load_ensemble(sources, tokenizer=tokenizer, roles=roles)
    # flags not given leave the checkpoint's generation_config in charge
    kwargs = {name: value for name, value in (("exclude_history", args.exclude_history), ("use_faiss", args.use_faiss))
              if value is not None}
    kwargs.update(generation_kwargs(args))
    # "dense" needs the ID-free head, which a model trained with history_dense_loss_weight 0 does not have
    modes = ([mode for mode in GENERATION_MODES if mode != "dense" or model.config.history_dense_loss_weight]
             if args.all_modes else [args.mode or model.generation_config.recommend_mode])
    try:
        check_flags_read(args, model, modes)
    except ValueError as err:
        raise ValueError(name_flags(str(err), args)) from None
    results = []
    for mode in modes:
        try:
            result = evaluate_split(model, tokenizer, split, max_users=args.max_users,
                                    batch_size=args.batch_size, mode=mode, **kwargs)
        except ValueError as err:  # generate() names its arguments; the user typed flags
            raise ValueError(name_flags(str(err), args)) from None
        result.update(split=args.split, model=str(args.model_dir), users_skipped=coverage["users_skipped"],
                      unknown_targets=coverage["unknown_targets"], unknown_items=coverage["unknown_items"])
        if args.ensemble:
            result["ensemble"] = [str(args.model_dir), *args.ensemble]
        if args.beams_from:
            result["beams_from"] = str(args.beams_from)
        results.append(result)
        print(json.dumps(result))
    if args.output:
        write_new_file(Path(args.output), json.dumps(results if args.all_modes else results[0], indent=1))
    return 0


def checked_split(args: argparse.Namespace, tokenizer, max_history: int):
    """(the --split rows of --data as catalog indices, their coverage counts); refuses data the catalog does not know
    (see `cobra_hf.evaluation.coverage`) and prints a warning line when it left users or items out."""
    import datasets

    from ..evaluation.coverage import check_coverage
    from ..training.datasets import index_splits

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the bars of a few in-memory passes would bury the one-line messages
    try:
        splits = index_splits(args.data, tokenizer, max_history=max_history, require_train=False)
    finally:
        if bars:
            datasets.enable_progress_bars()
    coverage = splits.coverage[args.split]
    warning = check_coverage(coverage, args.split, args.data, args.model_dir, args.drop_unknown)
    if warning:
        print(f"cobra-hf evaluate: warning: {warning}", file=sys.stderr)
    return splits[args.split], coverage


def write_new_file(path: Path, text: str) -> None:
    """Writes `text` aside and links it in under `path`: never a half-written file, never over one that appeared
    during the evaluation (os.link fails on an existing name, where a rename would replace it)."""
    aside = path.with_name(f".{path.name}.partial-{os.getpid()}")
    aside.write_text(text)
    try:
        os.link(aside, path)
    except FileExistsError:
        raise FileExistsError(f"{path} appeared during the evaluation; the results are in {aside}.") from None
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise FileExistsError(f"{path} appeared during the evaluation; the results are in {aside}.") from None
        os.replace(aside, path)
        return
    aside.unlink()
