"""`cobra-hf add-items MODEL_DIR ITEMS.jsonl --output NEW_DIR` (or `--in-place`): new items without retraining."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

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


def _copy_extras(source: Path, target: Path) -> None:
    """Files of the checkpoint that save_pretrained does not write again (training summary, card, ...)."""
    for path in source.iterdir():
        if path.name.startswith(".") or (target / path.name).exists():
            continue
        if path.is_dir():
            if path.name.startswith("checkpoint-"):
                continue  # Trainer checkpoints belong to the old catalog
            shutil.copytree(path, target / path.name)
        else:
            shutil.copy2(path, target / path.name)


def _check_output(args, model_dir: Path) -> Path:
    """The folder to write: MODEL_DIR itself (--in-place), or a new or empty --output that is none of the inputs."""
    from ..safe_io import check_not_inputs, is_nonempty_dir, repair_interrupted

    if args.in_place:
        return model_dir
    output = Path(args.output)
    repair_interrupted(output)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output {output} exists and is not a folder.")
    if output.resolve() == model_dir.resolve():
        raise ValueError("--output is MODEL_DIR itself; use --in-place to update it.")
    if is_nonempty_dir(output):
        raise FileExistsError(f"--output folder {output} is not empty; choose a new folder (nothing was written).")
    check_not_inputs(output, {"MODEL_DIR": model_dir, "ITEMS.jsonl": args.items, "the --catalog folder": args.catalog,
                              "the --encoder folder": args.encoder}, "--output")
    return output


def _write(args, model, tokenizer, model_dir: Path, output: Path, assets_source: Path) -> None:
    """Saves the grown checkpoint beside `output`, then moves it in: --in-place replaces only the entries a saved
    checkpoint has (`checkpoint_entries`: .git/, checkpoint-N/, a hand-written README.md stay); --output renames
    the whole folder into place. A kill in between is repaired by the next command (`repair_interrupted`)."""
    from ..hub.checkpoint import save_checkpoint, training_info_from_summary
    from ..safe_io import MARKER_FILE, checkpoint_entries, is_nonempty_dir, staging_dir, swap_into_place

    tmp = staging_dir(output)
    try:
        training_info, dataset = training_info_from_summary(model_dir)
        save_checkpoint(model, tokenizer, tmp, training_info=training_info or None, dataset_name=dataset,
                        catalog_dir=assets_source)
        if args.in_place:
            swap_into_place(tmp, output, checkpoint_entries(tmp, output))
            return
        _copy_extras(model_dir, tmp)
        (tmp / MARKER_FILE).unlink()  # a checkpoint folder, not one that --overwrite may replace
        if is_nonempty_dir(output):  # someone wrote there while we worked
            raise FileExistsError(f"--output folder {output} is not empty; choose a new folder (nothing was written).")
        swap_into_place(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    _write(args, model, tokenizer, model_dir, output, assets_source)
    added = [tokenizer.item_ids[index] for index in indices]
    print(f"Added {len(added)} items to {output} (catalog now {tokenizer.num_items} items, hash {tokenizer.catalog_hash}):")
    for index, item in zip(indices, added):
        print(f"  {item}  index {index}  semantic ID {list(tokenizer.semantic_id(item))}")
    return 0
