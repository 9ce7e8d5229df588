"""generate() flags shared by `cobra-hf evaluate` and `cobra-hf recommend` (not a subcommand itself)."""

from __future__ import annotations

import argparse

from ..configuration_cobra import BEAM_FUSION_METHODS

# flag destinations that are generate() keyword arguments of the same name
GENERATION_FLAGS = ("num_beams", "num_candidates", "dense_guided_ids", "beam_fusion", "beam_fusion_tau",
                    "beam_fusion_psi", "beam_fusion_dense_psi")


def add_generation_flags(parser: argparse.ArgumentParser) -> None:
    """--num-beams, --num-candidates, --dense-guided-ids and the BeamFusion flags (default: the checkpoint's)."""
    parser.add_argument("--num-beams", type=int, default=None, help="M, beams over semantic IDs")
    parser.add_argument("--num-candidates", type=int, default=None, help="N, candidates per beam")
    parser.add_argument("--dense-guided-ids", type=int, default=None,
                        help="G, IDs of the items nearest to the ID-free dense prediction decoded beside the beams (cobra mode)")
    group = parser.add_argument_group("BeamFusion (cobra mode; defaults: the checkpoint's generation config)")
    group.add_argument("--beam-fusion", choices=BEAM_FUSION_METHODS, default=None,
                       help="paper: softmax over beams x softmax over each beam's candidates (Eq. 7); joint: one "
                       "softmax over all beams' candidates of tau*phi + psi*cos(v_k, a) + psi_h*cos(v_0, a)")
    group.add_argument("--beam-fusion-tau", type=float, default=None, help="tau, weight of the beams' log-probs")
    group.add_argument("--beam-fusion-psi", type=float, default=None, help="psi, weight of cos(beam vector, item)")
    group.add_argument("--beam-fusion-dense-psi", type=float, default=None,
                       help="psi_h (joint only), weight of cos(ID-free dense prediction, item); needs a model trained "
                       "with history_dense_loss_weight > 0")


def generation_kwargs(args: argparse.Namespace) -> dict:
    """The generate() keyword arguments of the flags that were given (bad values are refused by generate)."""
    return {name: getattr(args, name) for name in GENERATION_FLAGS if getattr(args, name) is not None}
