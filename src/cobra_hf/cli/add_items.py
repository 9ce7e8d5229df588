"""`cobra-hf add-items MODEL_DIR ITEMS.jsonl --output NEW_DIR` (or `--in-place`): new items without retraining."""

from __future__ import annotations

import argparse
from pathlib import Path

from .checkpoint_output import check_new_output, write_checkpoint
from .embedding_flags import add_embedding_flags, check_embedding_flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cobra-hf add-items",
        description=(
            "Give new items semantic IDs (with the checkpoint's quantizer) and text tokens, and add them to a trained "
            "checkpoint's catalog so that it can recommend them at once. Writes a new checkpoint folder (--output), "
            "or replaces MODEL_DIR (--in-place) only once the new one is complete."
        ),
        epilog="example: cobra-hf add-items runs/beauty/model new_items.jsonl --output runs/beauty/model-plus",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="checkpoint folder (with its catalog/ assets)")
    parser.add_argument("items", metavar="ITEMS.jsonl", help="one JSON object per line: item_id, title (+ brand, ...)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", "-o", metavar="NEW_DIR", help="folder for the updated checkpoint (must be empty or new)")
    target.add_argument("--in-place", action="store_true", help="update MODEL_DIR (written beside it, then swapped in)")
    parser.add_argument("--catalog", default=None, metavar="CATALOG_DIR",
                        help="catalog folder the model was trained on, for checkpoints without catalog/ assets")
    parser.add_argument("--encoder", default=None, metavar="PATH", help="sentence encoder folder, if the recorded one is not here")
    parser.add_argument("--item-embeddings", choices=("id_neighbours", "zeros"), default="id_neighbours",
                        help="new items' learned-embedding rows (models with use_item_embeddings): the mean row of the "
                             "old items sharing the longest ID prefix, or zero")
    parser.add_argument("--dedup-overflow", choices=("share", "error"), default="share",
                        help="a TIGER collision code beyond the trained ones: share the last code (default) or fail")
    add_embedding_flags(parser)
    return parser


def _check_output(args, model_dir: Path) -> Path:
    """The folder to write: MODEL_DIR itself (--in-place), or a new or empty --output that is none of the inputs."""
    if args.in_place:
        return model_dir
    if Path(args.output).resolve() == model_dir.resolve():
        raise ValueError("--output is MODEL_DIR itself; use --in-place to update it.")
    return check_new_output(args.output, {"MODEL_DIR": model_dir, "ITEMS.jsonl": args.items,
                                          "the --catalog folder": args.catalog, "the --encoder folder": args.encoder})


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from ..cold_start import add_items, check_assets_match, load_items_jsonl
    from ..inference import check_compatible, load_checkpoint
    from ..safe_io import repair_interrupted
    from ..semantic_ids.assets import load_catalog_assets

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    device, dtype = check_embedding_flags(args)  # a device this machine lacks: one line, before any work
    model_dir = Path(args.model_dir)
    repair_interrupted(model_dir)  # a swap that an earlier run left half-done is undone first
    if not model_dir.is_dir():
        raise FileNotFoundError(f"Checkpoint folder {model_dir} does not exist.")
    output = _check_output(args, model_dir)
    items = load_items_jsonl(args.items)
    assets_source = Path(args.catalog) if args.catalog else model_dir
    assets = load_catalog_assets(assets_source)
    model, tokenizer = load_checkpoint(str(model_dir))
    if args.catalog:
        check_assets_match(model_dir, tokenizer, assets, assets_source, flag="--catalog")
    indices = add_items(model, tokenizer, items, assets, encoder=args.encoder, on_dedup_overflow=args.dedup_overflow,
                        item_embeddings=args.item_embeddings, embed_batch_size=args.embed_batch_size,
                        embed_device=device, embed_dtype=dtype)
    check_compatible(model, tokenizer)
    write_checkpoint(model, tokenizer, output, model_dir, in_place=args.in_place, assets_source=assets_source)
    added = [tokenizer.item_ids[index] for index in indices]
    print(f"Added {len(added)} items to {output} (catalog now {tokenizer.num_items} items, hash {tokenizer.catalog_hash}):")
    for index, item in zip(indices, added):
        print(f"  {item}  index {index}  semantic ID {list(tokenizer.semantic_id(item))}")
    return 0
