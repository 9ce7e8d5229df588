"""Benchmark of the semantic-ID pipeline on the shared Beauty and Scientific data.

For each dataset: time to embed the item texts (all-MiniLM-L6-v2), time to train the RQ-VAE
(default RQVAEConfig: 3 levels x 32 codes), codebook usage per level, distinct IDs, items per ID.
A fp32 matmul probe is recorded too: the CPU may be shared, and timings only compare at equal GFLOP/s
(the unshared 2-core figure is about 70 GFLOP/s).

    python benchmarks/bench_semantic_ids.py [--data ../shared/data] [--output benchmarks/results/semantic_ids.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from cobra_hf.data import item_text, load_dataset_folder
from cobra_hf.semantic_ids import RQVAE, RQVAEConfig, embed_texts, id_stats

REPO = Path(__file__).resolve().parents[1]


def matmul_gflops(size: int = 1024, repeats: int = 10) -> float:
    a = torch.randn(size, size)
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return round(repeats * 2 * size**3 / (time.perf_counter() - start) / 1e9, 1)


def run(data_dir: Path, name: str, cache_dir: str | None, epochs: int | None, embed_max_length: int) -> dict:
    _, items = load_dataset_folder(data_dir / name)
    texts = [item_text(row) for row in items]
    probe_before = matmul_gflops()
    t0 = time.perf_counter()
    cache_hit = False
    if cache_dir:
        from cobra_hf.semantic_ids.embeddings import default_encoder_path, embedding_cache_key

        key = embedding_cache_key(texts, default_encoder_path(), embed_max_length)
        cache_hit = (Path(cache_dir) / f"embeddings-{key[:24]}.safetensors").is_file()
    embeddings = embed_texts(texts, cache_dir=cache_dir, max_length=embed_max_length)
    embed_s = time.perf_counter() - t0
    config = RQVAEConfig(input_dim=embeddings.shape[1], **({"epochs": epochs} if epochs else {}))
    model = RQVAE(config)
    t0 = time.perf_counter()
    history = model.fit(embeddings)
    codes = model.encode(embeddings)
    quantizer_s = time.perf_counter() - t0
    stats = id_stats(codes, model.level_sizes(codes))
    return {
        "items": len(texts),
        "embed_seconds": round(embed_s, 2),
        "embed_from_cache": cache_hit,
        "texts_per_second": None if cache_hit else round(len(texts) / embed_s, 1),
        "embed_max_length": embed_max_length,
        "quantizer_seconds": round(quantizer_s, 2),
        "quantizer_epochs": config.epochs,
        "final_recon_loss": history["recon"][-1],
        "dead_codes_reset_total": int(sum(map(sum, history["dead_codes_reset"]))),
        "matmul_gflops_probe": probe_before,
        **stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="folder with beauty/ and scientific/")
    parser.add_argument("--datasets", nargs="+", default=["beauty", "scientific"])
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "semantic_ids.json"))
    parser.add_argument("--cache-dir", default=None, help="embedding cache (a hit is reported as such)")
    parser.add_argument("--epochs", type=int, default=None, help="RQ-VAE epochs (default: RQVAEConfig's)")
    parser.add_argument("--embed-max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (1 is much faster when other processes share the CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "datasets": {},
    }
    for name in args.datasets:
        result = run(Path(args.data), name, args.cache_dir, args.epochs, args.embed_max_length)
        results["datasets"][name] = result
        print(
            f"{name}: {result['items']} items | embed {result['embed_seconds']}s"
            f"{' (cache)' if result['embed_from_cache'] else ''} | RQ-VAE {result['quantizer_seconds']}s "
            f"({result['quantizer_epochs']} epochs) | codes used {result['codes_used']} of {result['codebook_sizes']} | "
            f"distinct IDs {result['distinct_ids']} | items/ID mean {result['items_per_id_mean']} max "
            f"{result['items_per_id_max']} | shared {result['shared_id_fraction']} | probe {result['matmul_gflops_probe']} GFLOP/s",
            flush=True,
        )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
