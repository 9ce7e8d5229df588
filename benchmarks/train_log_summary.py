"""What the gradient clip did in a research run: the training log's gradient norms, summarised.

Reads the Trainer's log (training_summary.json of runs/research/NAME/model, kept out of git) of each named research
run and writes benchmarks/results/research/train_logs/NAME.json: per logged quantity (the whole gradient's pre-clip
norm `grad_norm`; with an ID trunk trained under the per-backbone clip (commit c493dc1, measured and reverted in
session 23 by 3e53070: docs/EXPERIMENTS.md), the trunk's own `id_trunk_grad_norm`; the
loss and its parts) the 10th, 50th and 90th percentiles over the logged steps, and the share of logged steps whose
norm was above max_grad_norm (read from the run's --train-args, 1.0 by default), i.e. clipped. The logged norm is
one step's (every logging_steps-th), so the shares are samples, not counts. Reads no model and runs no torch.

usage:
  python benchmarks/train_log_summary.py NAME [NAME ...] [--runs runs/research] [--results benchmarks/results/research]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "research"
KEYS = ("grad_norm", "id_trunk_grad_norm", "loss", "sparse_loss", "dense_loss", "history_dense_loss")


def max_grad_norm(train_args: str) -> float:
    """The --max_grad_norm of a research run's --train-args (the Trainer's default, 1.0, when absent)."""
    words = shlex.split(train_args)
    for index, word in enumerate(words):
        if word == "--max_grad_norm" and index + 1 < len(words):
            return float(words[index + 1])
        if word.startswith("--max_grad_norm="):
            return float(word.split("=", 1)[1])
    return 1.0


def summarise(log_history: list[dict], clip: float) -> dict:
    """Per key of KEYS logged during training: {"p10", "p50", "p90", "steps"}, and for the norms "clipped_share"."""
    out = {}
    for key in KEYS:
        values = [float(entry[key]) for entry in log_history if key in entry and "eval_loss" not in entry]
        if len(values) < 2:
            continue
        deciles = statistics.quantiles(values, n=10)
        out[key] = {"p10": round(deciles[0], 4), "p50": round(statistics.median(values), 4),
                    "p90": round(deciles[-1], 4), "steps": len(values)}
        if key.endswith("grad_norm") and clip > 0:
            out[key]["clipped_share"] = round(sum(value > clip for value in values) / len(values), 3)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", help="research run names (benchmarks/results/research/NAME.json)")
    parser.add_argument("--runs", default="runs/research", help="where research_run.py kept the trained models")
    parser.add_argument("--results", default=str(RESULTS), help="the folder of the runs' NAME.json; train_logs/ is written in it")
    args = parser.parse_args(argv)
    results = Path(args.results)
    (results / "train_logs").mkdir(parents=True, exist_ok=True)
    for name in args.names:
        report_path = results / f"{name}.json"
        log_path = Path(args.runs) / name / "model" / "training_summary.json"
        if not report_path.is_file() or not log_path.is_file():
            raise SystemExit(f"error: {name}: needs {report_path} and {log_path} (run benchmarks/research_run.py first)")
        report = json.loads(report_path.read_text(encoding="utf-8"))
        clip = max_grad_norm(report.get("train_args", ""))
        log_history = json.loads(log_path.read_text(encoding="utf-8"))["log_history"]
        summary = {"name": name, "max_grad_norm": clip, "id_trunk": bool(report["config"].get("id_trunk")),
                   # the per-backbone clip (CobraTrainer._clip_grad_norm, since reverted) logged the trunk's own norm
                   "per_backbone_clip": any("id_trunk_grad_norm" in entry for entry in log_history),
                   **summarise(log_history, clip)}
        target = results / "train_logs" / f"{name}.json"
        partial = target.with_suffix(".json.partial")
        partial.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        partial.replace(target)
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
