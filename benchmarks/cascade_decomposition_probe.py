"""COBRA mode as two factors, each against the dense half's own answer: which ID (cell) holds the next item, and which
item of that cell it is. Validation only.

COBRA decodes coarse to fine: the ID path ranks cells (beam search), then each beam's ID-conditioned vector v_k ranks
the items inside its cell. It can beat the dense half (the ID-free vector v_0 ranking the whole catalog) only if one
factor is better than what v_0 already implies:
  1. cell: is the target's cell among the ID path's best M beams more often than among the first M distinct cells
     of v_0's ranking (cells in the order their best item appears)?
  2. within the cell: does v_k of the TRUE cell (teacher-forced: the target's ID is decoded as a forced row, so the
     vector exists even when the beams miss the cell) put the target higher among its cell's items than v_0 does?
Both are measured on the same users. With unique IDs (cells of one item) factor 2 is void and factor 1 is the whole
story.

usage:
  python benchmarks/cascade_decomposition_probe.py --model MODEL --data ../shared/data/beauty [--users 5000] \
      --output benchmarks/results/research/complementarity/decomposition_NAME.json
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from probe_common import load_models, probe_parser, validation_users

from cobra_hf.cobra_generation import beam_search

RANKS = (1, 5, 10, 20)


def rate(values: list[bool] | torch.Tensor) -> dict:
    values = torch.as_tensor(values, dtype=torch.float)
    p = float(values.mean()) if len(values) else float("nan")
    return {"rate": round(p, 5), "se": round(math.sqrt(p * (1 - p) / max(len(values), 1)), 5)}


def mean_se(values: torch.Tensor) -> dict:
    values = values.float()
    return {"mean": round(float(values.mean()), 4), "se": round(float(values.std() / math.sqrt(len(values))), 4)}


@torch.no_grad()
def decompose(model, tokenizer, histories, targets, num_beams: int, batch_size: int = 128) -> dict:
    catalog = model.all_item_vectors()  # [I, D], normalised
    index = model.id_index
    cell_of_item = torch.searchsorted(index.prefix_keys[-1], index.keys(model.item_codes))  # [I] cell number
    num_cells = len(index.prefix_keys[-1])
    beam_hit = {r: [] for r in RANKS}
    dense_hit = {r: [] for r in RANKS}
    rank_vk, rank_v0, cell_sizes = [], [], []
    for begin in range(0, len(histories), batch_size):
        batch = tokenizer.encode_indices(histories[begin:begin + batch_size], return_tensors="pt")
        target = targets[begin:begin + batch_size]
        item_mask = model.check_inputs(batch["input_ids"], batch.get("attention_mask"), batch["item_index"])
        last_hidden, cache = model.prefill(batch["input_ids"], item_mask, batch["item_index"])
        v0 = model.history_query(last_hidden)  # [B, D]
        positions = item_mask.sum(1).clamp(max=model.config.max_history)
        true_codes = model.item_codes[target]  # [B, L]
        codes, _, vectors = beam_search(model, last_hidden, cache, positions, num_beams, true_codes[:, None])
        match = (codes[:, :num_beams] == true_codes[:, None]).all(-1)  # [B, M] beams best first
        # cells in the order v0 reaches them: the best cosine of any item in the cell
        cos0 = v0 @ catalog.T  # [B, I]
        best_in_cell = torch.full((len(target), num_cells), float("-inf")).scatter_reduce(
            1, cell_of_item.expand(len(target), -1), cos0, reduce="amax")
        target_cell = cell_of_item[target]
        cell_rank0 = (best_in_cell > best_in_cell.gather(1, target_cell[:, None])).sum(1)  # 0 = v0's first cell
        for r in RANKS:
            beam_hit[r] += match[:, :r].any(-1).tolist()
            dense_hit[r] += (cell_rank0 < r).tolist()
        vk = F.normalize(vectors[:, num_beams], dim=-1)  # the forced row: v_k of the target's own ID
        members, valid = index.items_of(true_codes[:, None])
        members, valid = members[:, 0], valid[:, 0]
        for vector, out in ((vk, rank_vk), (v0, rank_v0)):
            cos = (vector[:, None] * catalog[members]).sum(-1).masked_fill(~valid, float("-inf"))
            target_cos = (vector * catalog[target]).sum(-1)
            out.append((cos > target_cos[:, None]).sum(-1))
        cell_sizes.append(valid.sum(-1))
    rank_vk, rank_v0, sizes = torch.cat(rank_vk), torch.cat(rank_v0), torch.cat(cell_sizes)
    shared = sizes > 1
    return {
        "cells": num_cells,
        "target_cell_size": mean_se(sizes),
        "target_cell_shared": rate(shared),
        "cell_hit": {"id_path_beams": {str(r): rate(beam_hit[r]) for r in RANKS},
                     "dense_v0_cells": {str(r): rate(dense_hit[r]) for r in RANKS}},
        "within_cell_when_shared": {
            "users": int(shared.sum()),
            "top1_vk_true_id": rate(rank_vk[shared] == 0), "top1_v0": rate(rank_v0[shared] == 0),
            "mean_rank_vk_true_id": mean_se(rank_vk[shared]), "mean_rank_v0": mean_se(rank_v0[shared]),
            "random_top1": round(float((1 / sizes[shared].float()).mean()), 4) if shared.any() else None,
        },
    }


def main() -> None:
    parser = probe_parser(__doc__)
    parser.add_argument("--num-beams", type=int, default=20)
    args = parser.parse_args()
    start = time.perf_counter()
    model, tokenizer, _, _ = load_models(args)
    model.eval()
    if not float(model.config.history_dense_loss_weight):
        raise SystemExit("--model has no ID-free dense head (history_dense_loss_weight 0): nothing to compare with")
    histories, targets = validation_users(model, tokenizer, args.data, args.users)
    report = {"probe": "cascade-decomposition", "model": args.model, "data": args.data, "split": "validation",
              "users": len(targets), "num_beams": args.num_beams,
              **decompose(model, tokenizer, histories, targets, args.num_beams),
              "seconds": round(time.perf_counter() - start, 1)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
