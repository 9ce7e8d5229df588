"""Decoding speed of a trained checkpoint under several generate() settings, measured in one process.

Each setting decodes the same validation users (a seeded sample) in batches; the settings take turns, round after
round, so a neighbour's load falls on all of them alike. Prints and writes, per setting, the median users/s over the
rounds, its ratio to the first setting, and the share of users whose top 10 equals the first setting's (how far the
lists moved). A benchmark, not a test: it times, it does not score.

usage:
  python benchmarks/bench_decoding.py --model runs/research/NAME/model --data ../shared/data/beauty \\
      --settings '[{"num_beams": 20}, {"num_beams": 1}]' [--users 1024] [--rounds 3] [--threads 1] \\
      --output benchmarks/results/research/decoding_speed/NAME.json [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from cobra_hf.evaluation import sample_split
from cobra_hf.inference import load_checkpoint
from cobra_hf.training.datasets import index_splits
from report_files import add_report_flags, check_report_flags, save_report


@torch.no_grad()
def decode(model, tokenizer, histories: list[list[int]], setting: dict, batch_size: int) -> tuple[float, torch.Tensor]:
    """(seconds, item_indices Long[U, 10]) of generate(**setting) over the histories."""
    lists = []
    start = time.perf_counter()
    for begin in range(0, len(histories), batch_size):
        batch = tokenizer.encode_indices(histories[begin:begin + batch_size], return_tensors="pt")
        lists.append(model.generate(**batch, top_k=10, **setting).item_indices)
    return time.perf_counter() - start, torch.cat(lists)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--settings", required=True, help="JSON list of dicts of generate() arguments; the first is the baseline")
    parser.add_argument("--users", type=int, default=1024, help="validation users, seeded sample")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    add_report_flags(parser)
    args = parser.parse_args(argv)
    check_report_flags(parser, args)
    settings = json.loads(args.settings)
    if not isinstance(settings, list) or not settings or not all(isinstance(s, dict) for s in settings):
        parser.error("--settings must be a non-empty JSON list of dicts of generate() arguments.")
    if args.users < 1 or args.rounds < 1:
        parser.error("--users and --rounds must be at least 1.")
    model, tokenizer = load_checkpoint(args.model)
    splits = index_splits(args.data, tokenizer, max_history=model.config.max_history)
    histories = list(sample_split(splits["validation"], args.users)["history_index"])
    decode(model, tokenizer, histories[: args.batch_size], settings[0], args.batch_size)  # warm caches once
    seconds = [[] for _ in settings]
    lists = [None] * len(settings)
    for _ in range(args.rounds):
        for i, setting in enumerate(settings):
            elapsed, lists[i] = decode(model, tokenizer, histories, setting, args.batch_size)
            seconds[i].append(elapsed)
    base = len(histories) / statistics.median(seconds[0])
    rows = []
    for setting, times, items in zip(settings, seconds, lists):
        rate = len(histories) / statistics.median(times)
        rows.append({"setting": setting, "users_per_second": round(rate, 1), "ratio": round(rate / base, 3),
                     "seconds_per_round": [round(t, 2) for t in times],
                     "same_top10_share": round(float((items == lists[0]).all(1).float().mean()), 4)})
        print(json.dumps(rows[-1]), flush=True)
    report = {"model": args.model, "data": args.data, "users": len(histories), "rounds": args.rounds,
              "threads": torch.get_num_threads(), "batch_size": args.batch_size, "results": rows}
    save_report(report, args.output)


if __name__ == "__main__":
    main()
