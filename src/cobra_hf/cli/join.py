"""`cobra-hf join MODEL_DIR --beams-from IDS_DIR --output NEW_DIR`: one checkpoint of a model and the ID trunk of
another (cobra_hf.ensemble.join_id_trunk), decoding as `evaluate/recommend MODEL_DIR --beams-from IDS_DIR` do."""

from __future__ import annotations

import argparse
import json
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
            "MODEL_DIR's generation settings (unless --generation or --data) and catalog assets come along, and its "
            "training summary fills the model card; nothing else of either folder is copied."
        ),
        epilog="example: cobra-hf join runs/beauty/joint --beams-from runs/beauty/ids-only --output runs/beauty/cascade",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="checkpoint that gives the dense vectors")
    parser.add_argument("--beams-from", required=True, metavar="IDS_DIR",
                        help="checkpoint of the same catalog and sizes trained for the semantic IDs")
    parser.add_argument("--output", "-o", required=True, metavar="NEW_DIR", help="folder to write (must be empty or new)")
    parser.add_argument("--generation", default=None, metavar="JSON",
                        help="generate() defaults of the joined checkpoint, over MODEL_DIR's "
                             "(e.g. '{\"beam_fusion_tau\": 0.3}')")
    parser.add_argument("--data", default=None, metavar="DATA",
                        help="dataset folder (sequences.txt, items.jsonl): pick the joined checkpoint's decoding on "
                             "its validation split among MODEL_DIR's own and the `trunk` recipe's points (the "
                             "cascade's), the best by Recall@10 becoming its generate() defaults")
    parser.add_argument("--eval-users", type=int, default=2000, metavar="N",
                        help="with --data: validation users to pick on, a seeded sample (default 2000; 0 = all)")
    return parser


def _join_decoding_plan(joined) -> list[dict]:
    """The candidates for --data: MODEL_DIR's defaults as they came ("recipe"), then the `trunk` recipe's decoding and
    its grid (a joined model decodes as a trunk model does), each skipped where it needs a head the model lacks."""
    from ..training.decoding_selection import plan_decoding
    from ..training.recipes import RECIPES, Recipe

    trunk = RECIPES["trunk"]
    candidates = Recipe("join", decoding_grid=(dict(trunk.generation), *trunk.decoding_grid))
    return plan_decoding(joined, candidates, None)


def _pick_decoding(joined, tokenizer, data: str, users: int) -> dict:
    from ..evaluation.sampling import sample_split
    from ..training.datasets import index_splits
    from ..training.decoding_selection import select_decoding

    try:
        splits = index_splits(data, tokenizer, max_history=joined.config.max_history, require_train=False)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"--data {data}: {err}") from None
    validation = sample_split(splits["validation"], users or None)
    if len(validation) == 0:
        raise ValueError(f"--data {data}: its validation split has no user whose items are in the catalog.")
    return select_decoding(joined, tokenizer, validation, _join_decoding_plan(joined))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from ..ensemble import join_id_trunk
    from ..inference import load_checkpoint

    # the flags that need no model are checked before two checkpoints load
    settings = None
    if args.generation is not None:
        from ..training.train import parse_generation

        settings = parse_generation(args.generation)
    if args.eval_users < 0:
        raise ValueError(f"--eval-users {args.eval_users}: give a count of validation users, or 0 for all.")
    if args.data is not None and not Path(args.data).is_dir():
        raise ValueError(f"--data {args.data}: no such dataset folder.")
    model_dir, ids_dir = Path(args.model_dir), Path(args.beams_from)
    output = check_new_output(args.output, {"MODEL_DIR": model_dir, "the --beams-from checkpoint": ids_dir})
    model, tokenizer = load_checkpoint(args.model_dir)
    try:
        ids_model = load_checkpoint(args.beams_from, tokenizer=tokenizer)[0]
    except ValueError as err:
        raise ValueError(f"--beams-from {args.beams_from} does not fit {args.model_dir}: {err}") from None
    joined = join_id_trunk(model, ids_model)  # MODEL_DIR's catalog, checked against its tokenizer on loading
    if settings is not None:
        try:
            joined.set_generation_defaults(**settings)
        except (TypeError, ValueError) as err:
            raise ValueError(f"--generation: {err}") from None
    selection = _pick_decoding(joined, tokenizer, args.data, args.eval_users) if args.data else None
    # not MODEL_DIR grown (as add-items writes): its other files (Trainer state, summary) describe another model
    write_checkpoint(joined, tokenizer, output, model_dir, copy_extras=False)
    print(f"Wrote {output}: {args.model_dir}'s vectors with {args.beams_from}'s ID trunk "
          f"({sum(p.numel() for p in joined.parameters()):,} parameters).")
    if selection is not None:
        print(f"Decoding picked on {selection.get('users', 0):,} validation users: {selection.get('chosen')} "
              f"{json.dumps(selection.get('chosen_settings'))}")
        print(json.dumps(selection))
    elif args.generation is None:
        print(f"Its generate() defaults are {args.model_dir}'s, picked for that model's own beams: pass --data DATA to "
              "pick the cascade's on validation, or --generation.")
    return 0
