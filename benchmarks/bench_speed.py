"""Training and generation speed of COBRA against this machine's physical limit.

Prints (and writes as JSON) for the default config on a prepared catalog:
  * training throughput (sequences/s) on real training batches, forward + backward + AdamW step;
  * generate throughput (users/s) at M beams on real test histories, and that every item is a catalog item;
  * peak resident memory of the process;
  * model FLOPs per training sequence / per generated user, counted analytically, and the bound they imply
    at the measured fp32 matmul peak of torch on these cores;
  * the rate inside the matmul kernels of one profiled training step (the profiler's FLOP count over their time):
    how close the matmul-bound layers run to that peak, and what share of the step they take.

usage: python benchmarks/bench_speed.py --catalog runs/beauty/catalog --data ../shared/data/beauty
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from cobra_hf.training import CobraDataCollator, build_model, index_splits, item_slot_counts


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GFLOP/s of a size^3 matmul over `repeats` runs (the physical reference of the tables). The best, not
    the median: the cores are shared, and a peak measured low would flatter every fraction below it."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def layer_flops(tokens: float, keys: float, width: int, ffn: int) -> float:
    """Forward FLOPs of one Transformer block over `tokens` positions attending to `keys` positions each."""
    projections = 2 * tokens * (4 * width * width + 2 * width * ffn)
    attention = 2 * tokens * keys * width * 2
    return projections + attention


def training_flops(config, batch: dict, distinct_items: int, text_tokens: float) -> float:
    """Forward+backward FLOPs (3x forward) of one training batch, matmul work only."""
    width, ffn, levels = config.hidden_size, config.intermediate_size, config.num_levels
    seqs, length = batch["item_index"].shape
    # only real items count: padding is work the model does not need (forward's length buckets skip most of it)
    items = batch["attention_mask"].view(seqs, length, levels)[..., 0].sum(1).double()
    positions = items * (levels + 1)
    tokens = float(positions.sum())
    mean_keys = float((positions**2).sum()) / 2 / max(tokens, 1.0)
    decoder = config.decoder_layers * layer_flops(tokens, mean_keys, width, ffn)
    encoder = 0.0
    if config.encoder_layers:
        # every layer but the last runs over all text positions; the last only projects keys/values there and
        # computes the rest at [CLS] (ItemTextEncoder reads [CLS] alone)
        encoder = (config.encoder_layers - 1) * layer_flops(distinct_items * text_tokens, text_tokens, width, ffn)
        encoder += 2 * distinct_items * text_tokens * 2 * width * width + layer_flops(distinct_items, text_tokens, width, ffn)
        encoder -= 2 * distinct_items * 2 * width * width  # the [CLS] keys/values are already counted
    targets = float(items.sum()) - seqs  # every item but each row's first is predicted
    heads = 2 * targets * width * (sum(config.level_sizes) + 2 * width)
    contrastive = 2 * targets * distinct_items * width * (2 if config.history_dense_loss_weight else 1)
    return 3 * (decoder + encoder + heads + contrastive)


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm")


def matmul_layer_rate(step) -> tuple[float, float]:
    """Runs step() once under the profiler -> (GFLOP/s inside the matmul kernels, their share of the step's
    operator time). The kernels' FLOPs come from the profiler's own formulas, not from our count."""
    from torch.profiler import profile

    with profile(with_flops=True) as prof:
        step()
    events = prof.key_averages()
    flops = sum(e.flops for e in events if e.key in MATMUL_OPS)
    seconds = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / 1e6
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    return flops / seconds / 1e9, seconds / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--generate-users", type=int, default=1024)
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--config", default="{}", help="JSON of CobraConfig overrides")
    parser.add_argument("--output", default="benchmarks/results/speed.json")
    args = parser.parse_args()

    peak = matmul_peak()
    overrides = json.loads(args.config)
    model, tokenizer = build_model(args.catalog, **overrides)
    splits = index_splits(args.data, tokenizer, max_history=model.config.max_history)
    collator = CobraDataCollator(tokenizer, max_items=model.config.max_history + 1)
    train = splits["train"].shuffle(seed=0)
    if model.config.dense_logq_correction:  # as `cobra-hf train` does
        model.set_item_frequencies(item_slot_counts(splits["train"], model.config.num_items))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    step_times, step_flops = [], []

    def train_step(batch: dict) -> None:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    text_tokens = float((model.item_text_ids != 0).sum(1).float().mean()) + 1
    for step in range(args.train_steps + 1):
        rows = train.select(range(step * args.batch_size, (step + 1) * args.batch_size))
        batch = collator(list(rows))
        distinct = int(batch["item_index"][batch["attention_mask"][:, :: model.config.num_levels].bool()].unique().numel())
        start = time.perf_counter()
        train_step(batch)
        if step:  # the first step warms up allocators
            step_times.append(time.perf_counter() - start)
            step_flops.append(training_flops(model.config, batch, distinct, text_tokens))
    profiled = train.select(range((args.train_steps + 1) * args.batch_size, (args.train_steps + 2) * args.batch_size))
    profiled_batch = collator(list(profiled))
    matmul_gflops, matmul_share = matmul_layer_rate(lambda: train_step(profiled_batch))
    train_seconds = sum(step_times)
    train_seq_s = args.train_steps * args.batch_size / train_seconds
    train_gflops = sum(step_flops) / train_seconds / 1e9
    train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    model.eval()
    test = splits["test"].select(range(min(args.generate_users, len(splits["test"]))))
    histories = list(test["history_index"])
    model.all_item_vectors()  # catalog vectors are computed once per checkpoint, not per request
    if getattr(model, "id_trunk", None) is not None:  # and the ID trunk's own (the dense tokens it reads)
        model.id_trunk.catalog_index.item_vectors(normalized=False)
    start = time.perf_counter()
    invalid = 0
    for begin in range(0, len(histories), args.batch_size):
        batch = tokenizer.encode_indices(histories[begin : begin + args.batch_size])
        out = model.generate(**batch, num_beams=args.num_beams, top_k=10)
        invalid += int(((out.item_indices < 0) | (out.item_indices >= model.config.num_items)).sum())
    generate_seconds = time.perf_counter() - start
    users_s = len(histories) / generate_seconds
    # generate's matmul work: prefill of the history + L single-token steps for M beams (+ candidate scoring)
    cfg = model.config
    mean_items = float(sum(len(h) for h in histories) / len(histories))
    positions = mean_items * (cfg.num_levels + 1)
    gen_flops = cfg.decoder_layers * (
        layer_flops(positions, positions / 2, cfg.hidden_size, cfg.intermediate_size)
        + cfg.num_levels * layer_flops(args.num_beams, positions, cfg.hidden_size, cfg.intermediate_size)
    ) + 2 * args.num_beams * cfg.hidden_size * (sum(cfg.level_sizes) + cfg.hidden_size)
    result = {
        "catalog": args.catalog,
        "items": cfg.num_items,
        "config": {k: getattr(cfg, k) for k in ("hidden_size", "num_attention_heads", "intermediate_size",
                                                  "encoder_layers", "decoder_layers", "level_sizes")},
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": round(peak, 1),
        "train_batch_size": args.batch_size,
        "train_sequences_per_s": round(train_seq_s, 1),
        "train_gflops_per_s": round(train_gflops, 1),
        "train_fraction_of_peak": round(train_gflops / peak, 3),
        "matmul_layers_gflops_per_s": round(matmul_gflops, 1),
        "matmul_layers_fraction_of_peak": round(matmul_gflops / peak, 3),
        "matmul_share_of_step_time": round(matmul_share, 3),
        "train_bound_sequences_per_s": round(args.batch_size * args.train_steps / (sum(step_flops) / peak / 1e9), 1),
        "peak_rss_gb_after_training": round(train_rss, 2),
        "generate_users": len(histories),
        "generate_num_beams": args.num_beams,
        "generate_users_per_s": round(users_s, 1),
        "generate_bound_users_per_s": round(peak * 1e9 / gen_flops, 1),
        "generate_invalid_items": invalid,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
    }
    print(json.dumps(result, indent=1))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
