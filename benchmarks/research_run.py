"""One research run on a real dataset, chosen on validation: train, then score the VALIDATION split in every mode
(and with the paper's BeamFusion beside the run's own), with the ID-path diagnostics of diagnose_ids.py.

The test split is read only with --test, for a final recipe (once). Writes benchmarks/results/research/NAME.json
(the command, config, training curve, validation metrics with their standard errors, diagnostics).

usage:
  python benchmarks/research_run.py --name ids_only_3x32 --data ../shared/data/beauty \
      --catalog runs/cat/beauty_3x32 --model-args '{"dense_loss_weight": 0}' \
      --train-args "--num_train_epochs 20 --learning_rate 2e-3" [--generate-args '{...}'] [--test]
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

from diagnose_ids import diagnose
from run_benchmark import CurveRecorder, parse_generate_args

from cobra_hf.configuration_cobra import GENERATION_MODES
from cobra_hf.evaluation import evaluate_split
from cobra_hf.inference import load_checkpoint
from cobra_hf.training.datasets import index_splits
from cobra_hf.training.train import parse_args, run_training

RESULTS = Path(__file__).resolve().parent / "results" / "research"
PAPER_FUSION = {"beam_fusion": "paper", "beam_fusion_tau": 0.9, "beam_fusion_psi": 16.0, "dense_guided_ids": 0,
                "beam_fusion_dense_psi": 0.0}


def with_errors(result: dict) -> dict:
    """Adds the standard error of each Recall/NDCG mean (per-user values are 0/1 for Recall: sqrt(p(1-p)/n);
    NDCG's is bounded by the same expression, reported as an upper bound)."""
    users = result["users"]
    for key in [k for k in result if "@" in k]:
        p = float(result[key])
        result[f"se_{key}"] = math.sqrt(max(p * (1 - p), 0.0) / max(users, 1))
    return result


def score_split(model, tokenizer, split, generation: dict, has_history_head: bool) -> dict:
    scores = {}
    for mode in GENERATION_MODES:
        if mode == "dense" and not has_history_head:
            continue
        scores[mode] = with_errors(evaluate_split(model, tokenizer, split, mode=mode, show_progress=False, **generation))
        print(json.dumps({"mode": mode, **scores[mode]}), flush=True)
    # the run's decoding: its --generate-args over the checkpoint's defaults (a recipe's, picked on validation)
    own = lambda name, default: generation.get(name, getattr(model.generation_config, name, default))  # noqa: E731
    if own("beam_fusion", "paper") != "paper" or own("dense_guided_ids", 0):
        settings = {**generation, **PAPER_FUSION}
        scores["cobra_paper_fusion"] = with_errors(
            evaluate_split(model, tokenizer, split, mode="cobra", show_progress=False, **settings)
        )
        print(json.dumps({"mode": "cobra_paper_fusion", **scores["cobra_paper_fusion"]}), flush=True)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--model-args", default="{}")
    parser.add_argument("--train-args", default="")
    parser.add_argument("--generate-args", default="{}")
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--curve-modes", default="dense,sparse")
    parser.add_argument("--runs", default="runs/research", help="where the trained model is kept (not committed)")
    parser.add_argument("--test", action="store_true", help="also score the test split (final recipes only)")
    parser.add_argument("--expected", default="",
                        help="what the run is expected to show, written down before it starts (kept in the JSON)")
    parser.add_argument("--from-model", action="store_true",
                        help="do not train: score the model already trained under --runs/NAME/model (its curve and "
                        "training time come from its training_summary.json)")
    args = parser.parse_args()
    generation = {"num_beams": args.num_beams, **parse_generate_args(parser, args.generate_args)}
    model_args = json.loads(args.model_args)
    output = Path(args.runs) / args.name
    report_path = RESULTS / f"{args.name}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)

    # a --recipe in --train-args may set the head too; the trained model's config decides below
    has_history_head = bool(float(model_args.get("history_dense_loss_weight", 0)))
    curve_modes = [m for m in args.curve_modes.split(",") if m and (m != "dense" or has_history_head)]
    # --recipe none: the run's settings are all in --model-args/--train-args (a --recipe in --train-args wins)
    flags = ["--recipe", "none", "--catalog", args.catalog, "--data", args.data, "--output_dir", str(output / "model"),
             "--overwrite", "True", "--eval_modes", ",".join(curve_modes)]
    if not (args.generate_args.strip() in ("", "{}") and "--recipe" in args.train_args):
        # a named recipe without --generate-args keeps its own decoding and picks it on validation at the end
        flags += ["--generation", json.dumps(generation)]
    for name, value in model_args.items():
        flags += [f"--{name}", str(value)]
    start = time.perf_counter()
    if args.from_model:
        summary = json.loads((output / "model" / "training_summary.json").read_text(encoding="utf-8"))
        curve = curve_from_log(summary["log_history"])
    else:
        cobra_args, training_args = parse_args(flags + shlex.split(args.train_args))
        recorder = CurveRecorder()
        summary = run_training(cobra_args, training_args, callbacks=[recorder])
        curve = recorder.points

    model, tokenizer = load_checkpoint(str(output / "model"))
    has_history_head = bool(float(model.config.history_dense_loss_weight))
    splits = index_splits(args.data, tokenizer, max_history=model.config.max_history)
    report = {
        "name": args.name,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "data": args.data,
        "catalog": args.catalog,
        "expected": args.expected,
        "model_args": model_args,
        "train_args": args.train_args,
        "generation": generation,
        "config": model.config.to_dict(),
        "train_seconds": summary["train_seconds"],
        "global_step": summary["global_step"],
        # a named recipe's decoding picked on validation at the end of training (train.py's select_decoding)
        "decoding_selection": summary.get("decoding_selection"),
        "curve": curve,
        # runs without this key logged an eval_loss over every item of a validation row, history included
        "eval_loss_scope": "held-out target",
        "validation": score_split(model, tokenizer, splits["validation"], generation, has_history_head),
    }
    write_report(report, report_path)  # kept even if a diagnostic below fails
    report["diagnostics"] = diagnose(model, tokenizer, args.data)
    if args.test:
        report["test"] = score_split(model, tokenizer, splits["test"], generation, has_history_head)
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    write_report(report, report_path)


def write_report(report: dict, path: Path) -> None:
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    partial.replace(path)
    print(f"wrote {path}", flush=True)


def curve_from_log(log_history: list[dict]) -> list[dict]:
    """The Trainer's log_history -> the curve CurveRecorder keeps (eval entries of one step merged; no seconds)."""
    points: list[dict] = []
    for entry in log_history:
        values = {k: v for k, v in entry.items() if k.startswith("eval_")}
        if not values:
            continue
        if points and points[-1]["step"] == entry["step"]:
            points[-1].update(values)
        else:
            points.append({"seconds": None, "step": entry["step"], **values})
    return points


if __name__ == "__main__":
    main()
