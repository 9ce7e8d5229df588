"""benchmarks/bench_option_cost.py on a tiny catalog: the base and the variant are timed in turns in one process, the
ratio is variant over base, the training state is counted exactly, and bad flags are refused before any work."""

from __future__ import annotations

import json

import pytest

from conftest import COLD_MODEL, make_cold_start
from tiny import benchmark_script


def test_bench_option_cost_times_base_and_variant_in_turns(tmp_path, data_tiny_encoder, capsys):
    cold = make_cold_start(tmp_path, data_tiny_encoder)
    output = tmp_path / "cost.json"
    flags = ["--catalog", str(cold["catalog"]), "--data", str(cold["data"]), "--base", json.dumps(COLD_MODEL),
             "--variant", '{"item_output_embeddings": true}', "--batch-size", "4", "--train-steps", "1",
             "--rounds", "2", "--generate-users", "6", "--num-beams", "3", "--threads", "1", "--output", str(output)]
    benchmark_script("bench_option_cost").main(flags)
    report = json.loads(output.read_text())
    assert report["variant"] == {**COLD_MODEL, "item_output_embeddings": True} and report["threads"] == 1
    for what in ("train_sequences_per_s", "generate_users_per_s"):
        assert all(len(report[what][name]) == 2 and min(report[what][name]) > 0 for name in ("base", "variant"))
    assert report["train_speed_ratio"] > 0 and report["generate_speed_ratio"] > 0
    # the variant holds one more row table: items x hidden floats, four copies (weights, gradients, two moments)
    extra = report["items"] * COLD_MODEL["hidden_size"] * 4 * 4 / 2**20
    assert report["training_state_mb"]["variant"] - report["training_state_mb"]["base"] == pytest.approx(extra, abs=0.11)
    assert report["command"].startswith("python benchmarks/bench_option_cost.py --catalog")
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []
    capsys.readouterr()
    before = output.read_text()
    with pytest.raises(SystemExit):  # an existing report is not replaced without --overwrite
        benchmark_script("bench_option_cost").main(flags)
    assert "--overwrite" in capsys.readouterr().err and output.read_text() == before


@pytest.mark.parametrize("flags, message", [(["--variant", "[]"], "--variant must be a JSON object"),
                                            (["--variant", "{}"], "must change at least one"),
                                            (["--variant", '{"dropout": 0.2}', "--base", "x"], "--base must be a JSON"),
                                            (["--variant", '{"dropout": 0.2}', "--rounds", "0"], "at least 1")])
def test_bench_option_cost_refuses_bad_flags(flags, message, capsys):
    with pytest.raises(SystemExit):
        benchmark_script("bench_option_cost").main(["--catalog", "c", "--data", "d", "--output", "o.json", *flags])
    assert message in capsys.readouterr().err
