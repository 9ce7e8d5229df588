"""Tune generate() settings (e.g. the "joint" BeamFusion) of a trained checkpoint on validation, then report test.

Every grid point (a dict of generate() keyword arguments) is evaluated on a random sample of validation users; the
point with the best validation metric (--select, Recall@10 by default; ties: the other metrics in the order
Recall@10, NDCG@10, NDCG@5, Recall@5, then grid order) and the paper's fusion
(`beam_fusion="paper"` over the checkpoint's generation config) are then evaluated on the whole test split.
Writes everything (metrics, seconds) to --output as JSON and prints a Markdown table.

Splits come from a frozen `splits.pt` (made by the former benchmarks/sweep.py: {"validation"/"test": {"history": list of
catalog-index lists, "target": list of catalog indices}}, made with the same catalog as the checkpoint) or from a
dataset folder (--data) tokenized with the checkpoint's own tokenizer.

usage:
  python benchmarks/tune_fusion.py --model runs/bench/beauty/model --splits runs/sweep/splits.pt \\
      --val-users 5000 --output runs/tune_fusion.json --grid '[
        {"beam_fusion": "joint", "beam_fusion_tau": 0.1, "beam_fusion_psi": 4, "beam_fusion_dense_psi": 8},
        {"beam_fusion": "joint", "beam_fusion_tau": 0.2, "beam_fusion_psi": 8, "beam_fusion_dense_psi": 8}]'
  (--grid also takes a path to a .json file; --test-users N caps the test split for smoke runs.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cobra_hf.evaluation import evaluate_model, sample_rows
from cobra_hf.inference import load_ensemble
from cobra_hf.cobra_generation import DEFAULT_GENERATION, resolve_settings

PAPER = {"beam_fusion": "paper"}
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
TIE_ORDER = ("recall@10", "ndcg@10", "ndcg@5", "recall@5")


def sample(split: dict, count: int | None, seed: int = 0) -> dict:
    """The users of {"history", "target"} that cobra_hf.evaluation.sample_rows draws (the sample training validates
    on); all when None."""
    rows = sample_rows(len(split["target"]), count, seed)
    if rows is None:
        return split
    return {"history": [split["history"][r] for r in rows], "target": [split["target"][r] for r in rows]}


def load_splits(args, tokenizer, max_history: int) -> dict[str, dict]:
    if args.splits:
        frozen = torch.load(args.splits)
        return {name: {"history": list(frozen[name]["history"]), "target": list(frozen[name]["target"])}
                for name in ("validation", "test")}
    from cobra_hf.evaluation.coverage import covered_split
    from cobra_hf.training import index_splits

    splits = index_splits(args.data, tokenizer, max_history=max_history, require_train=False)
    covered = {name: covered_split(splits, name, args.data, args.model[0]) for name in ("validation", "test")}
    return {name: {"history": list(split["history_index"]), "target": list(split["target_index"])}
            for name, split in covered.items()}


def load_grid(text: str) -> list[dict]:
    grid = json.loads(Path(text).read_text() if text.endswith(".json") and Path(text).is_file() else text)
    if not isinstance(grid, list) or not grid or not all(isinstance(point, dict) for point in grid):
        raise SystemExit("--grid must be a non-empty JSON list of dicts of generate() arguments.")
    return grid


def run(model, tokenizer, split: dict, setting: dict, batch_size: int) -> dict:
    metrics = evaluate_model(model, tokenizer, split["history"], split["target"], batch_size=batch_size,
                             show_progress=False, **setting)
    result = {key: round(metrics[key], 5) for key in METRICS}
    result.update(users=metrics["users"], seconds=metrics["seconds"])
    return result


def selection_key(metric: str):
    """Sort key of a grid point: the selected validation metric first, then the others in TIE_ORDER."""
    order = (metric, *(key for key in TIE_ORDER if key != metric))
    return lambda point: tuple(point["validation"][key] for key in order)


def label(setting: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in setting.items()) or "(checkpoint defaults)"


def markdown(report: dict) -> str:
    lines = ["| split | setting | users | Recall@5 | NDCG@5 | Recall@10 | NDCG@10 | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    rows = [("validation", point["setting"], point["validation"]) for point in report["grid"]]
    rows.append(("validation", PAPER, report["paper_validation"]))
    if "test" in report:
        rows += [("test", PAPER, report["test"]["paper"]), ("test", report["best"]["setting"], report["test"]["best"])]
    for split, setting, result in rows:
        lines.append(f"| {split} | {label(setting)} | {result['users']} | "
                     + " | ".join(f"{result[key]:.4f}" for key in METRICS) + f" | {result['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, nargs="+",
                        help="checkpoint folder; several of one catalog are tuned as an ensemble (cobra_hf.ensemble)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--splits", help="frozen splits.pt ({\"validation\"/\"test\": {\"history\", \"target\"}}) with catalog indices")
    source.add_argument("--data", help="dataset folder, split with the checkpoint's tokenizer")
    parser.add_argument("--grid", required=True, help="JSON list of dicts of generate() arguments, or a .json file")
    parser.add_argument("--val-users", type=int, default=5000, help="validation users sampled at random (seed 0)")
    parser.add_argument("--test-users", type=int, default=None, help="cap the test split (smoke runs); default all")
    parser.add_argument("--no-test", action="store_true",
                        help="validation only: pick the point, never read the test split (research; test once at the end)")
    parser.add_argument("--select", choices=METRICS, default="recall@10",
                        help="validation metric that picks the grid point tested (default recall@10)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output", required=True, help="JSON report (refuses to overwrite without --overwrite)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if Path(args.output).exists() and not args.overwrite:
        parser.error(f"{args.output} already exists (--overwrite to replace it).")
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = load_grid(args.grid)
    start = time.perf_counter()
    model, tokenizer = load_ensemble(args.model, device=args.device)
    for setting in [*grid, PAPER]:  # a typo in the grid fails now, not after hours of evaluation
        resolve_settings(model.config, model.generation_config, dict(setting))
    splits = load_splits(args, tokenizer, model.config.max_history)
    if args.no_test:
        splits.pop("test", None)
    for name, split in splits.items():
        # splits.pt carries no catalog hash: catch at least indices that cannot belong to this catalog
        highest = max(max(split["target"]), max(max(h) for h in split["history"] if h))
        if highest >= model.config.num_items:
            raise SystemExit(f"the {name} split holds item index {highest}, the checkpoint's catalog has "
                             f"{model.config.num_items} items: it was made with another catalog.")
    validation = sample(splits["validation"], args.val_users)
    test = None if args.no_test else sample(splits["test"], args.test_users)

    points = []
    for setting in grid:
        points.append({"setting": setting, "validation": run(model, tokenizer, validation, setting, args.batch_size)})
        print(json.dumps(points[-1]), flush=True)
    paper_validation = run(model, tokenizer, validation, PAPER, args.batch_size)
    # max() keeps the first of equal points (grid order)
    best = max(points, key=selection_key(args.select))
    report = {
        "model": args.model[0] if len(args.model) == 1 else args.model, "splits": args.splits, "data": args.data,
        "validation_users": len(validation["target"]), "validation_sample_seed": 0,
        "test_users": 0 if test is None else len(test["target"]), "test_capped": args.test_users is not None,
        "generation_config": {key: getattr(model.generation_config, key, default)
                              for key, default in DEFAULT_GENERATION.items()},
        "grid": points, "paper_validation": paper_validation,
        "selected_by": args.select, "best": {"setting": best["setting"], "validation": best["validation"]},
    }
    if test is not None:
        report["test"] = {"paper": run(model, tokenizer, test, PAPER, args.batch_size),
                          "best": run(model, tokenizer, test, best["setting"], args.batch_size)}
    report["seconds"] = round(time.perf_counter() - start, 1)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1, default=str))
    print(markdown(report))
    print(f"best validation {args.select}: {label(best['setting'])}; {report['seconds']} s in all -> {args.output}")


if __name__ == "__main__":
    main()
