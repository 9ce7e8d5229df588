"""What a model option costs: training and generation speed of two configs, timed in one process, interleaved.

Two processes on shared cores see different loads; here the base and the variant take turns on the same batches
(rounds alternate which goes first), so the ratio of their medians is what the option costs on this machine.
Memory is given as the bytes an AdamW run holds per model (weights + gradients + two moments), counted exactly;
a process's peak RSS cannot be split between two models in it.

usage: python benchmarks/bench_option_cost.py --catalog runs/cat/beauty_rqk_3x256d --data ../shared/data/beauty \
    --variant '{"item_output_embeddings": true}' [--base '{...}'] [--rounds 4] [--threads 2] \
    --output benchmarks/results/option_cost/item_output.json [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from cobra_hf.training import CobraDataCollator, build_model, index_splits
from report_files import add_report_flags, check_report_flags, save_report


def build(catalog: str, overrides: dict, seed: int):
    model, tokenizer = build_model(catalog, seed=seed, **dict(overrides))
    return model, tokenizer, torch.optim.AdamW(model.parameters(), lr=1e-3)


def training_state_bytes(model) -> int:
    """Weights, gradients and AdamW's two moments of every trainable parameter."""
    return sum(4 * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def time_training(model, optimizer, batches: list[dict]) -> float:
    """Sequences per second over `batches` (forward, backward, AdamW step each)."""
    model.train()
    start = time.perf_counter()
    for batch in batches:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return sum(len(b["item_index"]) for b in batches) / (time.perf_counter() - start)


def time_generation(model, batches: list[dict], num_beams: int) -> float:
    """Users per second of generate() at `num_beams` beams, top 10."""
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            model.generate(**batch, num_beams=num_beams, top_k=10)
    return sum(len(b["item_index"]) for b in batches) / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--base", default="{}", help="JSON of CobraConfig overrides of the baseline")
    parser.add_argument("--variant", required=True, help="JSON of CobraConfig overrides added to --base")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=6, help="training steps per model per round")
    parser.add_argument("--generate-users", type=int, default=512, help="users generated per model per round")
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    add_report_flags(parser)
    args = parser.parse_args(argv)
    check_report_flags(parser, args)
    overrides = []
    for flag, text in (("--base", args.base), ("--variant", args.variant)):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            parser.error(f"{flag} must be a JSON object of CobraConfig fields, got {text!r}.")
        overrides.append(value)
    if not overrides[1]:
        parser.error("--variant must change at least one CobraConfig field.")
    if min(args.rounds, args.train_steps, args.generate_users, args.batch_size, args.num_beams) < 1:
        parser.error("--rounds, --train-steps, --generate-users, --batch-size and --num-beams must be at least 1.")
    base_overrides, variant_overrides = overrides[0], {**overrides[0], **overrides[1]}
    base = build(args.catalog, base_overrides, seed=0)
    variant = build(args.catalog, variant_overrides, seed=0)
    tokenizer, config = base[1], base[0].config
    splits = index_splits(args.data, tokenizer, max_history=config.max_history)
    collator = CobraDataCollator(tokenizer, max_items=config.max_history + 1)
    train = splits["train"].shuffle(seed=0)
    steps = args.train_steps
    if len(train) < steps * (args.rounds + 1) * args.batch_size:
        parser.error(f"{len(train)} training rows cannot fill {args.rounds + 1} rounds (one warm-up) of "
                     f"{steps} batches of {args.batch_size}: lower --train-steps, --rounds or --batch-size.")
    train_batches = [collator(list(train.select(range(i * args.batch_size, (i + 1) * args.batch_size))))
                     for i in range(steps * (args.rounds + 1))]
    users = min(args.generate_users, len(splits["validation"]))
    histories = list(splits["validation"].shuffle(seed=0).select(range(users))["history_index"])
    generate_batches = [tokenizer.encode_indices(histories[i : i + args.batch_size])
                        for i in range(0, len(histories), args.batch_size)]

    timings = {"base": {"train": [], "generate": []}, "variant": {"train": [], "generate": []}}
    for name, (model, _, optimizer) in (("base", base), ("variant", variant)):  # warm-up round, not counted
        time_training(model, optimizer, train_batches[:steps])
        time_generation(model, generate_batches[:1], args.num_beams)
    for round_index in range(args.rounds):
        order = ("base", "variant") if round_index % 2 == 0 else ("variant", "base")
        batches = train_batches[steps * (round_index + 1) : steps * (round_index + 2)]
        for name in order:
            model, _, optimizer = base if name == "base" else variant
            timings[name]["train"].append(time_training(model, optimizer, batches))
            timings[name]["generate"].append(time_generation(model, generate_batches, args.num_beams))

    def median(name: str, what: str) -> float:
        return statistics.median(timings[name][what])

    result = {
        "command": " ".join(["python", "benchmarks/bench_option_cost.py", *(sys.argv[1:] if argv is None else argv)]),
        "catalog": args.catalog,
        "items": int(config.num_items),
        "base": base_overrides,
        "variant": variant_overrides,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "train_steps_per_round": steps,
        "batch_size": args.batch_size,
        "generate_users_per_round": len(histories),
        "num_beams": args.num_beams,
        "train_sequences_per_s": {name: [round(v, 1) for v in timings[name]["train"]] for name in timings},
        "generate_users_per_s": {name: [round(v, 1) for v in timings[name]["generate"]] for name in timings},
        "train_speed_ratio": round(median("variant", "train") / median("base", "train"), 3),
        "generate_speed_ratio": round(median("variant", "generate") / median("base", "generate"), 3),
        "training_state_mb": {"base": round(training_state_bytes(base[0]) / 2**20, 1),
                              "variant": round(training_state_bytes(variant[0]) / 2**20, 1)},
    }
    print(json.dumps(result, indent=1))
    save_report(result, args.output)


if __name__ == "__main__":
    main()
