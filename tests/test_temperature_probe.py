"""benchmarks/temperature_probe.py on a tiny saved checkpoint: T = 1 given again decodes the same lists (a zero paired
difference), the fitted temperatures are the NLL minimum on half A, and a malformed setting is refused before any
decoding."""

from __future__ import annotations

import json

import pytest

from conftest import make_cold_start
from tiny import benchmark_script


def test_temperature_probe_fits_on_one_half_and_compares_paired(tmp_path, data_tiny_encoder, monkeypatch, capsys):
    cold = make_cold_start(tmp_path, data_tiny_encoder)
    monkeypatch.chdir(tmp_path)  # the probe writes under ./benchmarks/results
    script = benchmark_script("temperature_probe")
    levels = len(json.loads((cold["checkpoint"] / "config.json").read_text())["level_sizes"])
    ones, flat = [1.0] * levels, [3.0] * levels
    script.main(["--model", str(cold["checkpoint"]), "--data", str(cold["data"]), "--num-beams", "4",
                 "--settings", json.dumps([ones, flat]), "--output", "probe/t.json"])
    report = json.loads((tmp_path / "benchmarks/results/probe/t.json").read_text())
    assert report["users_b"] == report["users"] - report["users"] // 2 > 0
    grid = report["grid"]
    for level, t in enumerate(report["fitted_on_a"]):  # the grid point with the lowest NLL on half A
        assert report["nll_a"][level][grid.index(t)] == min(report["nll_a"][level])
    first, fitted, again, flatter = report["beam"]
    assert first["temperatures"] == ones and "diff_recall@10" not in first["B"]
    assert fitted["temperatures"] == report["fitted_on_a"]
    for half in "AB":  # T = 1 given as a setting is the untempered search: the same lists, user for user
        assert again[half]["recall@10"] == first[half]["recall@10"] and again[half]["ndcg@10"] == first[half]["ndcg@10"]
        assert again[half]["diff_recall@10"] == 0 and again[half]["se_diff_ndcg@10"] == 0
        assert 0 <= flatter[half]["recall@10"] <= 1
    assert "benchmarks/temperature_probe.py" in report["command"] and "--settings" in report["command"]
    assert len(capsys.readouterr().out.strip().splitlines()) == 4
    assert not list((tmp_path / "benchmarks/results/probe").glob("*.tmp"))
    before = (tmp_path / "benchmarks/results/probe/t.json").read_text()
    with pytest.raises(SystemExit) as exit_info:  # a recorded result is kept unless --overwrite, before any decoding
        script.main(["--model", "missing", "--data", "missing", "--output", "probe/t.json"])
    assert exit_info.value.code == 1 and "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "benchmarks/results/probe/t.json").read_text() == before


@pytest.mark.parametrize("kind", ["too few", "zero", "negative", "not JSON", "not a list of lists"])
def test_temperature_probe_refuses_a_malformed_setting(tmp_path, data_tiny_encoder, monkeypatch, kind, capsys):
    cold = make_cold_start(tmp_path, data_tiny_encoder)
    monkeypatch.chdir(tmp_path)
    levels = len(json.loads((cold["checkpoint"] / "config.json").read_text())["level_sizes"])
    settings = {"too few": json.dumps([[1.0] * (levels - 1)]), "zero": json.dumps([[1.0] * (levels - 1) + [0.0]]),
                "negative": json.dumps([[-1.0] + [1.0] * (levels - 1)]), "not JSON": "[[1, 1",
                "not a list of lists": json.dumps([1.0] * levels)}[kind]
    with pytest.raises(SystemExit) as exit_info:
        benchmark_script("temperature_probe").main(["--model", str(cold["checkpoint"]), "--data", str(cold["data"]),
                                                    "--settings", settings, "--output", "probe/t.json"])
    assert exit_info.value.code == 1
    assert f"{levels} positive temperatures, one per level" in capsys.readouterr().err
    assert not (tmp_path / "benchmarks").exists()
