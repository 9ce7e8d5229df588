"""`cobra-hf join MODEL_DIR --beams-from IDS_DIR --output NEW_DIR`: one checkpoint of a model and the ID trunk of
another (cobra_hf.ensemble.join_id_trunk), decoding as `evaluate/recommend MODEL_DIR --beams-from IDS_DIR` do."""

from __future__ import annotations

import argparse
from pathlib import Path

from .checkpoint_output import check_new_output, write_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cobra-hf join",
        description=(
            "Make one checkpoint of two trained on one catalog: MODEL_DIR (trained with the dense losses) gives every "
            "dense vector, and IDS_DIR (trained for the semantic IDs, e.g. with dense_loss_weight 0) becomes its ID "
            "trunk, whose code probabilities drive the beam search (config.id_trunk). It recommends exactly what "
            "`cobra-hf recommend MODEL_DIR --beams-from IDS_DIR` does, and loads, pushes and serves as one model. "
            "MODEL_DIR's generation settings and catalog assets come along, and its training summary fills the "
            "model card; nothing else of either folder is copied."
        ),
        epilog="example: cobra-hf join runs/beauty/joint --beams-from runs/beauty/ids-only --output runs/beauty/cascade",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="checkpoint that gives the dense vectors")
    parser.add_argument("--beams-from", required=True, metavar="IDS_DIR",
                        help="checkpoint of the same catalog and sizes trained for the semantic IDs")
    parser.add_argument("--output", "-o", required=True, metavar="NEW_DIR", help="folder to write (must be empty or new)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from ..ensemble import join_id_trunk
    from ..inference import load_checkpoint

    model_dir, ids_dir = Path(args.model_dir), Path(args.beams_from)
    output = check_new_output(args.output, {"MODEL_DIR": model_dir, "the --beams-from checkpoint": ids_dir})
    model, tokenizer = load_checkpoint(args.model_dir)
    try:
        ids_model = load_checkpoint(args.beams_from, tokenizer=tokenizer)[0]
    except ValueError as err:
        raise ValueError(f"--beams-from {args.beams_from} does not fit {args.model_dir}: {err}") from None
    joined = join_id_trunk(model, ids_model)  # MODEL_DIR's catalog, checked against its tokenizer on loading
    # not MODEL_DIR grown (as add-items writes): its other files (Trainer state, summary) describe another model
    write_checkpoint(joined, tokenizer, output, model_dir, copy_extras=False)
    print(f"Wrote {output}: {args.model_dir}'s vectors with {args.beams_from}'s ID trunk "
          f"({sum(p.numel() for p in joined.parameters()):,} parameters).")
    return 0
