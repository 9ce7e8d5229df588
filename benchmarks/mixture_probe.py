"""Offline probe: can the ID-conditioned dense vectors act as a mixture over the whole catalog?

One beam search (M beams, no guided IDs) gives each beam's ID log-probability phi_k and its ID-conditioned dense
vector v_k. BeamFusion only ranks the items *of* each beam's ID; here every beam's vector scores every catalog item:
    s(a) = logsumexp_k [tau * phi_k + psi * cos(v_k, a)] + psi_h * cos(v_0, a)
a mixture of M ID-conditioned dense distributions (one per likely ID, weighted by the ID path) times the ID-free one.
If a history points at several kinds of next item, one ID-free vector v_0 must sit between them while the beams'
vectors can each sit on one: the cascade's case. tau = psi = 0 is the dense-only mode. Validation only; a probe for
deciding what to build into generate(), not a method in the package.

usage:
  python benchmarks/mixture_probe.py --model MODEL --data ../shared/data/beauty [--users 5000] [--num-beams 20] \
      --output benchmarks/results/research/complementarity/mixture_NAME.json
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cobra_hf.evaluation.metrics import ranking_metrics
from probe_common import load_models, probe_parser, validation_users

GRID_TAU = (0.0, 0.3, 1.0)
GRID_PSI = (4.0, 8.0, 16.0)
GRID_PSI_H = (0.0, 8.0, 16.0)


@torch.no_grad()
def main() -> None:
    parser = probe_parser(__doc__)
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    start = time.perf_counter()
    model, tok, _, _ = load_models(args)
    histories, targets = validation_users(model, tok, args.data, args.users)
    catalog = model.all_item_vectors()  # [I, D], unit norm
    has_v0 = bool(model.config.history_dense_loss_weight)
    points = [p for p in itertools.product(GRID_TAU, GRID_PSI, GRID_PSI_H if has_v0 else (0.0,))]
    points = [(0.0, 0.0, 16.0)] * has_v0 + points
    ranked = {p: [] for p in points}
    for begin in range(0, len(histories), args.batch_size):
        batch = tok.encode_indices(histories[begin:begin + args.batch_size], return_tensors="pt")
        out = model.generate(**batch, mode="cobra", num_beams=args.num_beams, dense_guided_ids=0, top_k=10)
        phi = out.beam_scores[:, :args.num_beams]  # [B, M]
        cos_k = F.normalize(out.beam_vectors[:, :args.num_beams], dim=-1) @ catalog.T  # [B, M, I]
        if has_v0:
            item_mask = model.check_inputs(batch["input_ids"], batch.get("attention_mask"), batch["item_index"])
            last_hidden, _ = model.prefill(batch["input_ids"], item_mask, batch["item_index"])
            cos_0 = F.normalize(model.history_query(last_hidden), dim=-1) @ catalog.T  # [B, I]
        for tau, psi, psi_h in points:
            if psi == 0.0 and tau == 0.0:
                score = psi_h * cos_0
            else:
                weight = torch.log_softmax(tau * phi, dim=-1).nan_to_num(neginf=-1e9)  # dead beams: -inf
                score = torch.logsumexp(weight[..., None] + psi * cos_k, dim=1)
                if psi_h:
                    score = score + psi_h * cos_0
            ranked[(tau, psi, psi_h)].append(torch.topk(score, 10, dim=-1).indices)
    grid = []
    for (tau, psi, psi_h), parts in ranked.items():
        grid.append({"tau": tau, "psi": psi, "psi_h": psi_h, **ranking_metrics(torch.cat(parts), targets)})
    for row in sorted(grid, key=lambda r: -r["recall@10"])[:8]:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    report = {"model": args.model, "split": "validation", "users": len(targets), "num_beams": args.num_beams,
              "dense_only": grid[0] if has_v0 else None, "grid": grid, "seconds": round(time.perf_counter() - start, 1)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
