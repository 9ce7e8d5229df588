"""Test metrics of an ensemble of trained checkpoints (cobra_hf.ensemble.CobraEnsemble) in every generate() mode.

The members are checkpoints of one catalog, e.g. `run_benchmark.py` runs of one configuration with other seeds
(`--train-args "... --seed 1"`). The training time of the ensemble is the sum of the members' (each
model/training_summary.json). Writes results.json (members, their training seconds, settings, test metrics per mode,
users/s) and results.md (beside the paper's rows) into --output.

usage:
  python benchmarks/evaluate_ensemble.py --data ../shared/data/beauty --output runs/bench/beauty_ensemble \\
      --models runs/bench/beauty_seed0/model runs/bench/beauty_seed1/model \\
      [--generate-args '{"beam_fusion": "joint", "beam_fusion_dense_psi": 16}']
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cobra_hf.cobra_generation import resolve_settings
from cobra_hf.configuration_cobra import GENERATION_MODES
from cobra_hf.evaluation import evaluate_split
from cobra_hf.evaluation.coverage import covered_split
from cobra_hf.inference import load_ensemble
from cobra_hf.training.datasets import index_splits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_benchmark import markdown_table, parse_generate_args  # noqa: E402

sys.path.pop(0)


def member_train_seconds(folder: str) -> float | None:
    summary = Path(folder) / "training_summary.json"
    if not summary.is_file():
        return None
    return float(json.loads(summary.read_text())["train_seconds"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="checkpoint folders of one catalog")
    parser.add_argument("--data", required=True, help="dataset folder (split with the first checkpoint's tokenizer)")
    parser.add_argument("--output", required=True, help="folder for results.json and results.md")
    parser.add_argument("--generate-args", default="{}",
                        help="JSON of generate() settings over the first checkpoint's saved ones (no \"mode\")")
    parser.add_argument("--modes", default=",".join(GENERATION_MODES), help="comma-separated modes to evaluate")
    parser.add_argument("--eval-users", type=int, default=-1, help="test users (-1 = all)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.output)
    if (out / "results.json").exists() and not args.overwrite:
        parser.error(f"{out / 'results.json'} already exists (--overwrite to replace it).")
    settings = parse_generate_args(parser, args.generate_args)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if set(modes) - set(GENERATION_MODES):
        parser.error(f"--modes: choose among {list(GENERATION_MODES)}.")

    model, tokenizer = load_ensemble(args.models)
    # the settings every mode runs with (the first checkpoint's, overridden); a wrong one fails before any evaluation
    generation = resolve_settings(model.config, model.generation_config, dict(settings))
    # metrics on a test set the catalog only partly knows are not that test set's: refused above 1% unknown targets
    test = covered_split(index_splits(args.data, tokenizer, max_history=model.config.max_history, require_train=False),
                         "test", args.data, args.models[0])
    max_users = None if args.eval_users < 0 else args.eval_users
    measured = {}
    start = time.perf_counter()
    for mode in modes:
        result = evaluate_split(model, tokenizer, test, max_users=max_users, batch_size=args.batch_size, mode=mode,
                                show_progress=False, **settings)
        measured[mode] = result
        print(json.dumps({"mode": mode, **result}), flush=True)
    seconds = [member_train_seconds(folder) for folder in args.models]
    report = {
        "dataset": Path(args.data).name, "data": args.data, "members": args.models,
        "member_train_seconds": seconds,
        "train_seconds_total": None if None in seconds else round(sum(seconds), 1),
        "generation": generation, "test": measured, "evaluate_seconds": round(time.perf_counter() - start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    table = markdown_table(Path(args.data).name, measured, generation)
    (out / "results.md").write_text(table)
    print(table)
    print(json.dumps({"train_seconds_total": report["train_seconds_total"], "members": len(args.models)}))


if __name__ == "__main__":
    main()
