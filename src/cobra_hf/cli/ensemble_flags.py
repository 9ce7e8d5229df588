"""Flags of `cobra-hf evaluate` and `cobra-hf recommend` that decode with more than one checkpoint (not a subcommand
itself): --ensemble (other seeds, every score averaged) and --beams-from (a checkpoint trained for IDs drives the beams,
see cobra_hf.ensemble's roles)."""

from __future__ import annotations

import argparse


def add_ensemble_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ensemble", nargs="+", default=[], metavar="MODEL_DIR",
                        help="more checkpoints of the same catalog (e.g. other seeds): rank with all of them together, "
                        "scores averaged (cobra_hf.ensemble); the first checkpoint's generation settings apply")
    parser.add_argument("--beams-from", default=None, metavar="MODEL_DIR",
                        help="a checkpoint of the same catalog trained for semantic IDs (e.g. with dense_loss_weight "
                        "0): its code probabilities drive the beam search, while MODEL_DIR (and --ensemble) give "
                        "every dense vector; the first checkpoint's generation settings apply")


def ensemble_sources(args: argparse.Namespace) -> tuple[list[str], list[str] | None]:
    """(checkpoint locations, their roles for load_ensemble; None = every one in both roles)."""
    from ..model_location import locate_model

    sources = [locate_model(path) for path in [args.model_dir, *args.ensemble]]
    if args.beams_from is None:
        return sources, None
    return [*sources, locate_model(args.beams_from)], ["vectors"] * len(sources) + ["ids"]
