"""The full COBRA pipeline on a real dataset: prepare -> train -> evaluate on test in every mode.

Writes into --output: results.json (config, timings, validation curve, test metrics per mode), results.md
(a Markdown table beside the paper's rows) and curve.png (validation Recall@10 over training time).

usage:
  python benchmarks/run_benchmark.py --data ../shared/data/beauty --output runs/bench/beauty \
      --train-args "--num_train_epochs 20" --model-args '{"hidden_size": 128}' \
      [--generate-args '{"beam_fusion": "joint", "beam_fusion_dense_psi": 8}']
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

from transformers import TrainerCallback

from cobra_hf.configuration_cobra import GENERATION_MODES
from cobra_hf.evaluation import evaluate_split
from cobra_hf.evaluation.coverage import covered_split
from cobra_hf.inference import load_checkpoint
from cobra_hf.modeling_cobra import DEFAULT_GENERATION
from cobra_hf.semantic_ids.catalog import build_catalog
from cobra_hf.training.datasets import index_splits
from cobra_hf.training.id_trunk_phase import PHASE_DIR
from cobra_hf.training.train import parse_args, run_training

# ../shared/PAPER.md (COBRA, arXiv 2503.02453, Table 2; TIGER and SASRec as reported there)
PAPER_ROWS = {
    "beauty": {
        "SASRec": {"recall@5": 0.0387, "ndcg@5": 0.0249, "recall@10": 0.0605, "ndcg@10": 0.0318},
        "TIGER": {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384},
        "COBRA (paper)": {"recall@5": 0.0537, "ndcg@5": 0.0395, "recall@10": 0.0725, "ndcg@10": None},
    },
}
MODE_NAMES = {"cobra": "cobra-hf COBRA", "sparse": "cobra-hf sparse only (no dense)",
              "dense": "cobra-hf dense only (no ID)", "no_fusion": "cobra-hf no BeamFusion (top-1 ID + ANN)"}


class CurveRecorder(TrainerCallback):
    """Records (seconds since training start, step, validation metrics) at every evaluation."""

    def __init__(self):
        self.start = None
        self.points: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        # eval_loss and the recommendation metrics arrive as two log entries of the same step: merge them
        if logs and any(key.startswith("eval_") for key in logs):
            values = {k: v for k, v in logs.items() if k.startswith("eval_")}
            if Path(args.output_dir).name == PHASE_DIR:  # the second phase of --recipe trunk: its steps restart
                values["phase"] = "id_trunk"
            if self.points and self.points[-1]["step"] == state.global_step:
                self.points[-1].update(values)
            else:
                self.points.append({"seconds": round(time.perf_counter() - self.start, 1), "step": state.global_step, **values})


def parse_generate_args(parser: argparse.ArgumentParser, text: str) -> dict:
    """--generate-args: a JSON object of generate() settings other than the mode and K (a parser error otherwise)."""
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as err:
        parser.error(f"--generate-args is not JSON: {err}")
    allowed = set(DEFAULT_GENERATION) - {"recommend_mode", "recommend_top_k"}
    if not isinstance(settings, dict) or set(settings) - allowed:
        parser.error(f"--generate-args must be a JSON object with keys among {sorted(allowed)}.")
    return settings


def markdown_table(dataset: str, measured: dict[str, dict], generation: dict | None = None) -> str:
    lines = ["| model | Recall@5 | NDCG@5 | Recall@10 | NDCG@10 |", "|---|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for name, row in PAPER_ROWS.get(dataset, {}).items():
        lines.append(f"| {name} | " + " | ".join(fmt(row[k]) for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")) + " |")
    for mode, row in measured.items():
        name = MODE_NAMES[mode]
        if mode == "cobra" and (generation or {}).get("beam_fusion", "paper") != "paper":
            name += f" ({generation['beam_fusion']} BeamFusion, not the paper's)"  # the row is not Eq. 7
        lines.append(f"| **{name}** | " + " | ".join(fmt(row[k]) for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")) + " |")
    return "\n".join(lines) + "\n"


def plot_curve(points: list[dict], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no curve.png (pip install 'cobra-hf[bench]')")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, name in (("eval_recall@10", "COBRA"), ("eval_dense_recall@10", "dense only"),
                      ("eval_sparse_recall@10", "sparse only")):
        drawn = [p for p in points if key in p]
        if drawn:
            ax.plot([p["seconds"] / 60 for p in drawn], [p[key] for p in drawn], marker="o", label=name)
    ax.legend()
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("validation Recall@10")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--catalog", help="reuse this catalog instead of preparing one")
    parser.add_argument("--cache-dir", default=None, help="sentence-embedding cache")
    parser.add_argument("--model-args", default="{}", help="JSON of `cobra-hf train` model flags")
    parser.add_argument("--train-args", default="", help="extra TrainingArguments flags, as on the command line")
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--num-candidates", type=int, default=None)
    parser.add_argument("--generate-args", default="{}",
                        help="JSON of any other generate() settings for the test evaluation, e.g. "
                        '\'{"beam_fusion": "joint", "beam_fusion_dense_psi": 8}\' (every mode is evaluated: no "mode")')
    parser.add_argument("--eval-users", type=int, default=-1, help="test users (-1 = all)")
    parser.add_argument("--curve-modes", default="dense,sparse",
                        help="modes validated at each epoch beside COBRA (with the same generate() settings), drawn "
                        "in curve.png; dense is skipped without the ID-free head")
    args = parser.parse_args()
    extra_generation = parse_generate_args(parser, args.generate_args)  # checked before hours of training, not after

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    dataset = Path(args.data).name
    timings = {}
    start = time.perf_counter()
    catalog = args.catalog or str(out / "catalog")
    if not args.catalog:
        build_catalog(args.data, catalog, cache_dir=args.cache_dir, overwrite=True)
    timings["prepare_seconds"] = round(time.perf_counter() - start, 1)

    kwargs = {"num_beams": args.num_beams}
    if args.num_candidates:
        kwargs["num_candidates"] = args.num_candidates
    kwargs.update(extra_generation)
    model_args = json.loads(args.model_args)
    curve_modes = [mode for mode in args.curve_modes.split(",") if mode.strip()]
    if not float(model_args.get("history_dense_loss_weight", 0)):
        curve_modes = [mode for mode in curve_modes if mode.strip() != "dense"]
    # the validation curve and the saved checkpoint use the settings the test is evaluated with
    # --recipe none: every setting comes from this script's flags, so past runs stay comparable
    flags = ["--recipe", "none", "--catalog", catalog, "--data", args.data, "--output_dir", str(out / "model"), "--overwrite", "True",
             "--generation", json.dumps(kwargs), "--eval_modes", ",".join(curve_modes)]
    for name, value in model_args.items():
        flags += [f"--{name}", str(value)]
    cobra_args, training_args = parse_args(flags + shlex.split(args.train_args))
    recorder = CurveRecorder()
    summary = run_training(cobra_args, training_args, callbacks=[recorder])
    timings["train_seconds"] = summary["train_seconds"]

    model, tokenizer = load_checkpoint(str(out / "model"))
    test = covered_split(index_splits(args.data, tokenizer, max_history=model.config.max_history), "test", args.data,
                         str(out / "model"))
    max_users = None if args.eval_users < 0 else args.eval_users
    measured = {}
    for mode in GENERATION_MODES:
        if mode == "dense" and not model.config.history_dense_loss_weight:
            continue  # no trained ID-free head in this model
        result = evaluate_split(model, tokenizer, test, max_users=max_users, mode=mode, **kwargs)
        measured[mode] = result
        print(json.dumps({"mode": mode, **result}))
    timings["total_seconds"] = round(time.perf_counter() - start, 1)
    report = {
        "dataset": dataset, "data": args.data, "catalog": catalog, "timings": timings,
        "model_args": json.loads(args.model_args), "train_args": args.train_args,
        "generation": kwargs, "config": model.config.to_dict(), "curve": recorder.points, "test": measured,
        "train_summary": {k: v for k, v in summary.items() if k != "log_history"},
    }
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "results.md").write_text(markdown_table(dataset, measured, kwargs))
    plot_curve(recorder.points, out / "curve.png", f"COBRA on {dataset}: validation Recall@10")
    print(markdown_table(dataset, measured, kwargs))
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
