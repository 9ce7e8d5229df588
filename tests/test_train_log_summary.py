"""benchmarks/train_log_summary.py: percentiles of a research run's logged gradient norms and losses, the share of
logged steps above the run's max_grad_norm, and a one-line refusal when a run's files are missing."""

from __future__ import annotations

import json

import pytest

from tiny import benchmark_script


def _run(tmp_path, train_args: str, log_history: list[dict]) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.json").write_text(json.dumps({"train_args": train_args, "config": {"id_trunk": True}}))
    (tmp_path / "runs" / "r" / "model").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "model" / "training_summary.json").write_text(json.dumps({"log_history": log_history}))


def test_summary_reads_the_runs_clip_and_counts_clipped_steps(tmp_path):
    script = benchmark_script("train_log_summary")
    logs = [{"loss": 3.0 - n / 10, "grad_norm": 0.2 * n, "id_trunk_grad_norm": 0.1, "step": 20 * n} for n in range(1, 11)]
    logs.append({"eval_loss": 9.0, "grad_norm": 99.0, "step": 200})  # an evaluation entry is not a training step
    _run(tmp_path, "--seed 1 --max_grad_norm 1.5", logs)
    script.main(["r", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")])
    summary = json.loads((tmp_path / "results" / "train_logs" / "r.json").read_text())
    assert summary["max_grad_norm"] == 1.5 and summary["per_backbone_clip"] and summary["id_trunk"]
    assert summary["grad_norm"]["steps"] == 10 and summary["grad_norm"]["p50"] == pytest.approx(1.1)
    assert summary["grad_norm"]["clipped_share"] == 0.3  # 1.6, 1.8 and 2.0 are above 1.5
    assert summary["id_trunk_grad_norm"]["clipped_share"] == 0.0 and "clipped_share" not in summary["loss"]
    assert script.max_grad_norm("--lr 1") == 1.0 and script.max_grad_norm("--max_grad_norm=0") == 0.0


def test_a_run_without_its_files_is_refused_in_one_line(tmp_path):
    script = benchmark_script("train_log_summary")
    with pytest.raises(SystemExit, match="needs"):
        script.main(["missing", "--runs", str(tmp_path), "--results", str(tmp_path)])
