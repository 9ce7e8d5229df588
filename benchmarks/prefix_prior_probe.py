"""Offline probe: does the first semantic-ID level help the dense half as a coarse prior over the whole catalog?

For each validation user, one forward pass gives the ID-free dense prediction v_0 and the log-probabilities of the
next item's first code, log P(c_1 | history). Every catalog item a is scored
    s(a) = psi_h * cos(v_0, a) + tau * log P(c_1(a) | history)
(tau = 0 is the dense-only mode). Unlike BeamFusion the prior covers every item (no beam prunes it), and the first
level is the best-trained, least sparse part of the ID path. A probe for choosing what to build into generate(),
not a method in the package; validation numbers only.

usage:
  python benchmarks/prefix_prior_probe.py --model MODEL --data ../shared/data/beauty [--users 5000] \
      --output benchmarks/results/research/complementarity/prefix_prior_NAME.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cobra_hf.evaluation.metrics import ranking_metrics
from probe_common import load_models, probe_parser, validation_users


@torch.no_grad()
def halves(model, tok, histories, batch_size: int = 256):
    """(cos Float[U, I] of v_0 with every item, first-level log-probs Float[U, K_1])."""
    catalog = model.all_item_vectors()
    cos, logp = [], []
    for begin in range(0, len(histories), batch_size):
        batch = tok.encode_indices(histories[begin:begin + batch_size], return_tensors="pt")
        item_mask = model.check_inputs(batch["input_ids"], batch.get("attention_mask"), batch["item_index"])
        last_hidden, _ = model.prefill(batch["input_ids"], item_mask, batch["item_index"])
        query = F.normalize(model.history_query(last_hidden), dim=-1)
        cos.append(query @ catalog.T)
        logp.append(model.level_log_probs(last_hidden, 0, model.id_index.first_mask))
    return torch.cat(cos), torch.cat(logp)


def main() -> None:
    parser = probe_parser(__doc__)
    parser.add_argument("--psi-h", type=float, default=16.0)
    args = parser.parse_args()
    start = time.perf_counter()
    model, tok, _, _ = load_models(args)
    histories, targets = validation_users(model, tok, args.data, args.users)
    cos, logp1 = halves(model, tok, histories)
    first = model.item_codes[:, 0]  # [I] first code of every item
    prior = logp1[:, first]  # [U, I]
    grid = []
    for tau in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5):
        ranked = torch.topk(args.psi_h * cos + tau * prior, 10, dim=-1).indices
        grid.append({"tau": tau, **ranking_metrics(ranked, targets)})
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in grid[-1].items()}, flush=True)
    first_hit = (logp1.topk(10, dim=-1).indices == first[targets][:, None]).any(1).float().mean()
    report = {"model": args.model, "split": "validation", "users": len(targets), "psi_h": args.psi_h,
              "first_code_top10": round(float(first_hit), 4), "grid": grid,
              "seconds": round(time.perf_counter() - start, 1)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
