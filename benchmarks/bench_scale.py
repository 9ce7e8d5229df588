"""COBRA generate at catalog scale: a synthetic catalog of 1,000,000 items (random IDs and random unit vectors).

Prints (and writes as JSON) the memory of the catalog structures and the latency of generate per user, for the
ID-restricted path ("cobra": beams + items under each beam's ID) and the whole-catalog paths ("dense",
"no_fusion"), exact torch search vs faiss (IndexFlatIP).

usage: python benchmarks/bench_scale.py --items 1000000 --output benchmarks/results/scale.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cobra_hf import CobraConfig, CobraForSequentialRecommendation, CobraTokenizer


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def timed(fn, repeats: int = 3) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--levels", type=int, nargs="+", default=[256, 256, 256])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--output", default="benchmarks/results/scale.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    n, levels = args.items, args.levels
    config = CobraConfig(level_sizes=levels, num_items=n, text_vocab_size=8, max_text_tokens=2, max_history=20)
    model = CobraForSequentialRecommendation(config).eval()
    codes = torch.stack([torch.randint(0, size, (n,)) for size in levels], 1)
    start = time.perf_counter()
    model.set_catalog(codes, torch.ones(n, 1, dtype=torch.long))
    vectors = F.normalize(torch.randn(n, config.hidden_size), dim=-1)
    model.catalog_index.set_item_vectors(vectors)  # random unit vectors stand in for the encoder's
    index = model.id_index
    build_seconds = time.perf_counter() - start
    catalog_bytes = sum(t.numel() * t.element_size() for t in (model.item_codes, model.item_text_ids, vectors))
    index_bytes = sum(t.numel() * t.element_size() for t in [index.item_order, index.sorted_item_keys, *index.prefix_keys]
                      + [m for m in index.next_masks if m is not None])
    ids = [f"i{k}" for k in range(n)]
    tokenizer = CobraTokenizer.from_items(ids, codes, None, levels)
    result = {"items": n, "level_sizes": levels, "distinct_ids": index.num_ids, "max_items_per_id": index.max_items_per_id,
              "catalog_tensor_mb": round(catalog_bytes / 2**20, 1), "id_index_mb": round(index_bytes / 2**20, 1),
              "catalog_build_seconds": round(build_seconds, 2), "hidden_size": config.hidden_size,
              "num_beams": args.num_beams, "latency_ms_per_user": {}}
    try:
        import faiss  # noqa: F401
        has_faiss = True
    except ImportError:
        has_faiss = False
    gen = torch.Generator().manual_seed(1)
    config.history_dense_loss_weight = 0.5  # let the "dense" ablation run on this random model
    for batch_size in args.batch_sizes:
        histories = [torch.randint(0, n, (20,), generator=gen).tolist() for _ in range(batch_size)]
        batch = tokenizer.encode_indices(histories)
        for mode in ("cobra", "no_fusion", "dense"):
            for use_faiss in ([False, True] if has_faiss and mode != "cobra" else [False]):
                seconds = timed(lambda: model.generate(**batch, num_beams=args.num_beams, top_k=10, mode=mode, use_faiss=use_faiss))
                key = f"{mode}{'+faiss' if use_faiss else ''}@batch{batch_size}"
                result["latency_ms_per_user"][key] = round(1000 * seconds / batch_size, 2)
                print(key, result["latency_ms_per_user"][key], "ms/user", flush=True)
    result["peak_rss_gb"] = round(rss_gb(), 2)
    print(json.dumps(result, indent=1))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
