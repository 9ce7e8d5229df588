"""A catalog with other semantic IDs for the same items: RQ-KMeans over the text embeddings, over a trained
model's learned item vectors (collaborative IDs, as LETTER aligns codes with collaborative embeddings), or both.

The new folder is a copy of SOURCE (item text, tokenizer files) whose item_catalog.json holds the new codes; it
has no quantizer, so `add-items` refuses it (new items would need a vector the model has not learned).

usage:
  python benchmarks/make_id_catalog.py runs/cat/beauty_3x32 runs/cat/beauty_rqk_3x256d --levels 3 \
      --codebook-size 256 --dedup [--vectors text|model|both] [--model runs/research/X/model]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cobra_hf.semantic_ids.rq_kmeans import dedup_codes, rq_kmeans
from cobra_hf.tokenization_cobra import CobraTokenizer

COPIED = ("item_text.safetensors", "items.jsonl", "tokenizer_config.json", "tokenization_cobra.py")


def id_vectors(source: Path, kind: str, model_path: str | None) -> torch.Tensor:
    """The vectors Float[N, E] that get quantized, each part L2-normalised (so neither dominates by scale)."""
    parts = []
    if kind in ("text", "both"):
        parts.append(F.normalize(load_file(str(source / "item_text.safetensors"))["text_embeddings"].float(), dim=-1))
    if kind in ("model", "both"):
        if not model_path:
            raise SystemExit("--vectors model/both needs --model PATH (a checkpoint trained on this catalog's items)")
        from cobra_hf.inference import load_checkpoint

        model, _ = load_checkpoint(model_path)
        parts.append(model.all_item_vectors().float())
    return torch.cat(parts, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--dedup", action="store_true", help="append a collision code: every ID unique")
    parser.add_argument("--vectors", choices=("text", "model", "both"), default="text")
    parser.add_argument("--model", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source, output = Path(args.source), Path(args.output)
    if output.exists():
        raise SystemExit(f"{output} exists: choose a new folder")
    old = json.loads((source / "item_catalog.json").read_text(encoding="utf-8"))
    vectors = id_vectors(source, args.vectors, args.model)
    codes, _ = rq_kmeans(vectors, [args.codebook_size] * args.levels, seed=args.seed)
    level_sizes = [args.codebook_size] * args.levels
    if args.dedup:
        codes = dedup_codes(codes)
        level_sizes.append(int(codes[:, -1].max()) + 1)
    partial = output.with_name(output.name + ".partial")
    partial.mkdir(parents=True)
    for name in COPIED:
        if (source / name).exists():
            shutil.copy2(source / name, partial / name)
    CobraTokenizer._write_catalog(str(partial / "item_catalog.json"), old["item_ids"], codes.numpy(), old["titles"], level_sizes)
    prepare = json.loads((source / "prepare_args.json").read_text(encoding="utf-8"))
    prepare.update(level_sizes=level_sizes, num_levels=len(level_sizes), dedup_level=args.dedup,
                   ids={"method": "rq_kmeans", "vectors": args.vectors, "model": args.model, "seed": args.seed,
                        "source_catalog": str(source)})
    (partial / "prepare_args.json").write_text(json.dumps(prepare, indent=2), encoding="utf-8")
    _, counts = torch.unique(codes, dim=0, return_counts=True)
    stats = {"num_items": len(codes), "level_sizes": level_sizes, "distinct_ids": len(counts),
             "items_per_id_mean": round(len(codes) / len(counts), 4), "items_per_id_max": int(counts.max()),
             "codes_used": [int(codes[:, level].unique().numel()) for level in range(codes.shape[1])]}
    (partial / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    partial.rename(output)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
