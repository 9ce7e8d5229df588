"""BeamFusion flags shared by `cobra-hf evaluate` and `cobra-hf recommend` (not a subcommand itself)."""

from __future__ import annotations

import argparse

from ..configuration_cobra import BEAM_FUSION_METHODS


def add_fusion_flags(parser: argparse.ArgumentParser) -> None:
    """--beam-fusion, --beam-fusion-tau, --beam-fusion-psi, --beam-fusion-dense-psi (default: the checkpoint's)."""
    group = parser.add_argument_group("BeamFusion (cobra mode; defaults: the checkpoint's generation config)")
    group.add_argument("--beam-fusion", choices=BEAM_FUSION_METHODS, default=None,
                       help="paper: softmax over beams x softmax over each beam's candidates (Eq. 7); joint: one "
                       "softmax over all beams' candidates of tau*phi + psi*cos(v_k, a) + psi_h*cos(v_0, a)")
    group.add_argument("--beam-fusion-tau", type=float, default=None, help="tau, weight of the beams' log-probs")
    group.add_argument("--beam-fusion-psi", type=float, default=None, help="psi, weight of cos(beam vector, item)")
    group.add_argument("--beam-fusion-dense-psi", type=float, default=None,
                       help="psi_h (joint only), weight of cos(ID-free dense prediction, item); needs a model trained "
                       "with history_dense_loss_weight > 0")


def fusion_kwargs(args: argparse.Namespace) -> dict:
    """The generate() keyword arguments of the flags that were given."""
    names = ("beam_fusion", "beam_fusion_tau", "beam_fusion_psi", "beam_fusion_dense_psi")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}
