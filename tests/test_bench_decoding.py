"""benchmarks/bench_decoding.py on a tiny saved checkpoint: every setting is timed in turns on the same users, the
first is the baseline, and a setting that changes the lists is told apart from one that does not."""

from __future__ import annotations

import json

import pytest

from conftest import make_cold_start
from tiny import benchmark_script


def load_script():
    return benchmark_script("bench_decoding")


def test_bench_decoding_times_each_setting_against_the_first(tmp_path, data_tiny_encoder, capsys):
    cold = make_cold_start(tmp_path, data_tiny_encoder)
    script = load_script()
    output = tmp_path / "speed.json"
    settings = [{"mode": "sparse", "num_beams": 10}, {"mode": "sparse", "num_beams": 10}, {"mode": "sparse", "num_beams": 3}]
    script.main(["--model", str(cold["checkpoint"]), "--data", str(cold["data"]), "--settings", json.dumps(settings),
                 "--users", "12", "--rounds", "2", "--batch-size", "5", "--threads", "1", "--output", str(output)])
    report = json.loads(output.read_text())
    assert report["users"] == 12 and report["rounds"] == 2 and report["threads"] == 1
    rows = report["results"]
    assert [row["setting"] for row in rows] == settings
    assert all(len(row["seconds_per_round"]) == 2 and row["users_per_second"] > 0 for row in rows)
    assert rows[0]["ratio"] == 1.0
    assert rows[1]["same_top10_share"] == 1.0  # the same setting decodes the same lists
    assert rows[2]["same_top10_share"] < 1.0  # 3 beams cannot fill the top 10 that 10 beams fill
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []
    before = output.read_text()
    with pytest.raises(SystemExit):  # an existing report is not replaced without --overwrite, before any decoding
        script.main(["--model", "missing", "--data", "missing", "--settings", json.dumps(settings),
                     "--output", str(output)])
    assert "--overwrite" in capsys.readouterr().err and output.read_text() == before


@pytest.mark.parametrize("flags, message", [(["--settings", "{}"], "non-empty JSON list"),
                                            (["--settings", "[]"], "non-empty JSON list"),
                                            (["--settings", '[{"num_beams": 2}]', "--users", "0"], "at least 1")])
def test_bench_decoding_refuses_bad_flags(flags, message, capsys):
    with pytest.raises(SystemExit):
        load_script().main(["--model", "m", "--data", "d", "--output", "o.json", *flags])
    assert message in capsys.readouterr().err
