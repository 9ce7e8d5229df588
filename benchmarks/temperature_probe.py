"""Does a temperature on each level's code log-probabilities rank the beams better? Validation only.

The ID-only models are overconfident: their held-out first-code NLL is above a uniform guess over 256 codes. The
beam search ranks complete IDs by the sum of the levels' log-probabilities, so each level's sharpness decides how much
it weighs in that sum. This probe
  * fits one temperature per level on half A of the validation users (teacher forced: the target's true prefix fed
    in, the NLL over the valid next codes minimised on a grid);
  * runs the sparse-mode beam search (M beams) on half B with T = 1, the fitted T and any settings given, and reports
    Recall@10 / NDCG@10 on each half with the paired standard error of each setting's difference from T = 1 on B.
A temperature T_l turns level l's log-probabilities lp into log_softmax(lp / T_l): T > 1 flattens, T < 1 sharpens.

usage:
  python benchmarks/temperature_probe.py --model MODEL --data ../shared/data/beauty \
      [--settings '[[1.5, 1, 1, 1], [1.25, 1.25, 1.25, 1.25]]'] --output research/decoding_temperature/NAME.json
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
from complementarity import ranked_lists

from cobra_hf.inference import load_checkpoint
from cobra_hf.training.collator import CobraDataCollator
from cobra_hf.training.datasets import index_splits

GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.7, 2.0, 2.5, 3.0)


@torch.no_grad()
def level_nll(model, tokenizer, rows: list[dict], in_a: torch.Tensor, batch_size: int = 512) -> dict:
    """Mean teacher-forced NLL of each level's true code over the valid next codes, per temperature of GRID, on the
    users of half A (in_a Bool[U]) and of half B: {"A": Float[L, len(GRID)], "B": ..., "top1": Float[L]}."""
    collate = CobraDataCollator(tokenizer, max_items=model.config.max_history + 1)
    index = model.id_index
    levels = model.config.num_levels
    sums = {half: torch.zeros(levels, len(GRID)) for half in "AB"}
    top1 = torch.zeros(levels)
    for begin in range(0, len(rows), batch_size):
        batch = collate(rows[begin:begin + batch_size])
        batch.pop("labels")
        out = model(**batch)
        target = model.item_codes[batch["item_index"][:, -1]]  # [B, L]
        a = in_a[begin:begin + batch_size]
        for level in range(levels):
            logits = out.sparse_logits[level][:, -1].float()
            allowed = index.first_mask.expand_as(logits) if level == 0 else index.allowed_next(target[:, :level])
            lp = torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), -1)
            truth = target[:, level]
            top1[level] += (lp.argmax(-1) == truth).sum()
            for j, t in enumerate(GRID):
                nll = -torch.log_softmax(lp / t, -1).gather(1, truth[:, None]).squeeze(1)
                sums["A"][level, j] += nll[a].sum()
                sums["B"][level, j] += nll[~a].sum()
    users_a = int(in_a.sum())
    return {"A": sums["A"] / users_a, "B": sums["B"] / (len(rows) - users_a), "top1": top1 / len(rows)}


@torch.no_grad()
def per_user_hits(model, tokenizer, histories, targets: torch.Tensor, num_beams: int, k: int = 10
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse-mode Recall@k and NDCG@k of each user: (Float[U], Float[U])."""
    hit = ranked_lists(model, tokenizer, histories, k, mode="sparse", num_beams=num_beams) == targets[:, None]  # [U, k]
    gain = (hit.float() / torch.log2(torch.arange(k, dtype=torch.float) + 2)).sum(-1)
    return hit.any(-1).float(), gain


def summary(recall: torch.Tensor, ndcg: torch.Tensor, base: tuple | None) -> dict:
    out = {"recall@10": round(float(recall.mean()), 5), "ndcg@10": round(float(ndcg.mean()), 5)}
    if base is not None:  # paired: the same users with T = 1
        for name, now, then in (("recall@10", recall, base[0]), ("ndcg@10", ndcg, base[1])):
            diff = now - then
            out[f"diff_{name}"] = round(float(diff.mean()), 5)
            out[f"se_diff_{name}"] = round(float(diff.std() / math.sqrt(len(diff))), 5)
    return out


def refuse(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(1)


def parse_settings(text: str, levels: int) -> list[list[float]]:
    """--settings as a list of per-level temperature lists, or one line and exit 1."""
    try:
        settings = json.loads(text)
        settings = [[float(t) for t in setting] for setting in settings]
    except (ValueError, TypeError):
        settings = None
    if settings is None or any(len(setting) != levels or min(setting) <= 0 for setting in settings):
        refuse(f"--settings: give a JSON list whose entries each hold {levels} positive temperatures, one per level.")
    return settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--settings", default="[]", help="JSON list of per-level temperature lists to try beside T = 1"
                        " and the fitted T")
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--expected", default="", help="what the probe is expected to show, written before it runs")
    parser.add_argument("--output", required=True, help="path under benchmarks/results/")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    out = Path("benchmarks/results") / args.output
    if out.exists() and not args.overwrite:
        refuse(f"{out} exists: a recorded result is replaced only with --overwrite.")
    start = time.perf_counter()
    torch.manual_seed(0)
    model, tokenizer = load_checkpoint(args.model)
    levels = model.config.num_levels
    settings = parse_settings(args.settings, levels)
    rows = index_splits(args.data, tokenizer, max_history=model.config.max_history)["validation"].to_list()
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    in_a = torch.zeros(len(rows), dtype=torch.bool)
    in_a[order[: len(rows) // 2]] = True
    nll = level_nll(model, tokenizer, rows, in_a)
    fitted = [GRID[int(nll["A"][level].argmin())] for level in range(levels)]
    report = {"model": args.model, "data": args.data, "split": "validation", "users": len(rows),
              "users_b": int((~in_a).sum()), "num_beams": args.num_beams,
              "command": shlex.join(["python", "benchmarks/temperature_probe.py", *(sys.argv[1:] if argv is None else argv)]),
              "expected": args.expected, "grid": list(GRID), "top1": [round(float(v), 4) for v in nll["top1"]],
              "nll_a": [[round(float(v), 4) for v in row] for row in nll["A"]],
              "nll_b": [[round(float(v), 4) for v in row] for row in nll["B"]], "fitted_on_a": fitted, "beam": []}
    orig = model.level_log_probs
    temperature = [1.0] * levels

    def tempered(hidden, level, allowed, prefix=None):
        lp = orig(hidden, level, allowed, prefix)
        t = temperature[level]
        return lp if t == 1.0 else torch.log_softmax(lp / t, -1)  # log_softmax(lp / t) = log_softmax(logits / t)

    model.level_log_probs = tempered
    halves = {half: ([rows[i]["history_index"] for i in range(len(rows)) if in_a[i] == (half == "A")],
                     torch.tensor([rows[i]["target_index"] for i in range(len(rows)) if in_a[i] == (half == "A")]))
              for half in "AB"}
    base = {}
    for turn, setting in enumerate([[1.0] * levels, fitted, *settings]):
        temperature[:] = setting
        entry = {"temperatures": setting}
        for half, (histories, targets) in halves.items():
            recall, ndcg = per_user_hits(model, tokenizer, histories, targets, args.num_beams)
            if turn == 0:  # T = 1: every later setting is compared with it on the same users
                base[half] = (recall, ndcg)
            entry[half] = summary(recall, ndcg, None if turn == 0 else base[half])
        report["beam"].append(entry)
        print(json.dumps(entry), flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
