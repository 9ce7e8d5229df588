"""generate() flags shared by `cobra-hf evaluate` and `cobra-hf recommend` (not a subcommand itself)."""

from __future__ import annotations

import argparse
import math
import re

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


# generate() argument names (as its errors spell them) -> the command-line flag
FLAG_OF_ARGUMENT = {name: "--" + name.replace("_", "-") for name in GENERATION_FLAGS}
FLAG_OF_ARGUMENT.update(recommend_top_k="--top-k", top_k="--top-k", recommend_mode="--mode", mode="--mode",
                        exclude_history="--exclude-history", use_faiss="--use-faiss")
# generation-config names whose flag stores under another name
CONFIG_NAMES = {"recommend_top_k": "top_k", "recommend_mode": "mode"}


def check_generation_flags(args: argparse.Namespace) -> None:
    """Refuses out-of-range generation flags before anything loads, naming the flag (a ValueError)."""
    for name, least in (("num_beams", 1), ("num_candidates", 1), ("dense_guided_ids", 0)):
        value = getattr(args, name)
        if value is not None and value < least:
            raise ValueError(f"{FLAG_OF_ARGUMENT[name]} must be at least {least}, got {value}.")
    for name in ("beam_fusion_tau", "beam_fusion_psi", "beam_fusion_dense_psi"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{FLAG_OF_ARGUMENT[name]} must be a finite number, got {value}.")
        if value is not None and value < 0:  # a negative weight ranks the least likely beams and items first
            raise ValueError(f"{FLAG_OF_ARGUMENT[name]} must be >= 0, got {value}.")


def check_flags_read(args: argparse.Namespace, model, modes: list[str]) -> None:
    """Refuses a generation flag that none of `modes` reads with the model's resolved settings (e.g. --num-beams in
    dense mode, --beam-fusion-dense-psi under the paper's fusion): it would change nothing, with exit 0."""
    from ..cobra_generation import resolve_settings, settings_read

    given = generation_kwargs(args)
    read = set()
    for mode in modes:
        read |= settings_read(resolve_settings(model.config, model.generation_config, {**given, "mode": mode}))
    unread = [name for name in given if name not in read]
    if unread:
        fusion = resolve_settings(model.config, model.generation_config, given)["beam_fusion"]
        raise ValueError(f"{', '.join(FLAG_OF_ARGUMENT[name] for name in unread)} changes nothing in "
                         f"{' / '.join(modes)} mode with the {fusion} fusion (dense and no_fusion read no beam or "
                         "fusion setting, sparse only --num-beams, --beam-fusion-dense-psi only the joint fusion): "
                         "leave it out.")


def name_flags(message: str, args: argparse.Namespace) -> str:
    """A generate() error message with the argument names of the flags the user gave replaced by the flags
    (`top_k=50 asks ...` -> `--top-k 50 asks ...`); a setting that came from the checkpoint keeps its own name."""
    given = [name for name in FLAG_OF_ARGUMENT if getattr(args, CONFIG_NAMES.get(name, name), None) is not None]
    for name in sorted(given, key=len, reverse=True):  # recommend_top_k before top_k
        message = re.sub(rf"(?<![\w-]){name}=", FLAG_OF_ARGUMENT[name] + " ", message)
        if "_" in name:  # "mode" alone is also an English word
            message = re.sub(rf"(?<![\w-]){name}\b", FLAG_OF_ARGUMENT[name], message)
    return message
