"""Full-ranking metrics against hand computations, evaluate_model, and the `cobra-hf evaluate` / `recommend` CLIs on a
tiny checkpoint trained on a small real catalog (catalog_scientific)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from cobra_hf.cli.main import main as cli_main
from cobra_hf.configuration_cobra import GENERATION_MODES
from cobra_hf.evaluation import evaluate_model, ranking_metrics
from cobra_hf.evaluation.metrics import ndcg_at_rank

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_model  # noqa: E402

sys.path.pop(0)

TINY_TRAIN = ["--hidden_size", "32", "--num_attention_heads", "2", "--intermediate_size", "64", "--disable_tqdm", "True",
              "--use_cpu", "True", "--report_to", "none", "--init_text_embeddings", "False", "--seed", "0"]
METRIC_KEYS = {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}


# ------------------------------------------------------------------------------------------------ ranking_metrics
def test_ranking_metrics_match_a_hand_computation():
    ranked = torch.tensor([
        [7, 1, 2, 3, 4, 5, 6, 8, 9, 10],       # target 7 at rank 0
        [1, 2, 3, 7, 4, 5, 6, 8, 9, 10],       # rank 3
        [1, 2, 3, 4, 5, 6, 8, 7, 9, 10],       # rank 7: a hit @10 only
        [1, 2, 3, 4, 5, 6, 8, 9, 10, 11],      # miss
        [3, 7, -1, -1, -1, -1, -1, -1, -1, -1],  # rank 1, then empty slots
        [3, 4, -1, -1, -1, -1, -1, -1, -1, -1],  # miss among empty slots
        [2, 7, 7, 1, 0, 4, 5, 6, 8, 9],        # duplicated target: the first one counts (rank 1)
    ])
    targets = torch.tensor([7, 7, 7, 7, 7, 7, 7])
    ranks = [0, 3, 7, None, 1, None, 1]  # by hand
    users = len(ranks)
    expected = {}
    for k in (5, 10):
        hits = [r for r in ranks if r is not None and r < k]
        expected[f"recall@{k}"] = len(hits) / users
        expected[f"ndcg@{k}"] = sum(1.0 / math.log2(r + 2) for r in hits) / users
    got = ranking_metrics(ranked, targets, ks=(5, 10))
    assert set(got) == METRIC_KEYS
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert got["recall@5"] == pytest.approx(4 / 7) and got["recall@10"] == pytest.approx(5 / 7)
    assert got["ndcg@10"] - got["ndcg@5"] == pytest.approx(1 / math.log2(9) / 7, abs=1e-6)  # only the rank-7 hit
    assert ndcg_at_rank(0) == 1.0 and ndcg_at_rank(3) == pytest.approx(1 / math.log2(5))

    single = ranking_metrics(torch.tensor([[5, 6, 7]]), torch.tensor([7]), ks=(1, 3))
    assert single == pytest.approx({"recall@1": 0.0, "ndcg@1": 0.0, "recall@3": 1.0, "ndcg@3": 0.5})


def test_ranking_metrics_errors():
    with pytest.raises(ValueError, match="@10 need at least 10 recommendations per user, got 5"):
        ranking_metrics(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, dtype=torch.long), ks=(5, 10))
    with pytest.raises(ValueError, match="3 rankings for 2 targets"):
        ranking_metrics(torch.zeros(3, 10, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="No users"):
        ranking_metrics(torch.zeros(0, 10, dtype=torch.long), torch.zeros(0, dtype=torch.long))


# ------------------------------------------------------------------------------------------------ evaluate_model
def test_evaluate_model_keys_counts_and_batching(one_torch_thread):
    model, tokenizer = tiny_model()
    model.eval()
    gen = torch.Generator().manual_seed(3)
    histories = [torch.randint(0, 40, (int(n),), generator=gen).tolist() for n in torch.randint(1, 7, (13,), generator=gen)]
    targets = torch.randint(0, 40, (13,), generator=gen).tolist()
    result = evaluate_model(model, tokenizer, histories, targets, batch_size=5, show_progress=False, num_beams=4)
    assert set(result) == METRIC_KEYS | {"users", "mode", "seconds", "users_per_second"}
    assert result["users"] == 13 and result["mode"] == model.generation_config.recommend_mode
    assert all(0.0 <= result[key] <= 1.0 for key in METRIC_KEYS)
    assert result["recall@5"] <= result["recall@10"] and result["ndcg@5"] <= result["ndcg@10"]
    assert not model.training  # the mode is restored

    # one big batch gives the same numbers, and they equal ranking_metrics over generate's own ranking
    whole = evaluate_model(model, tokenizer, histories, targets, batch_size=256, show_progress=False, num_beams=4)
    assert {k: whole[k] for k in METRIC_KEYS} == {k: result[k] for k in METRIC_KEYS}
    ranked = torch.cat([model.generate(**tokenizer.encode_indices([h]), top_k=10, num_beams=4).item_indices for h in histories])
    assert ranking_metrics(ranked, torch.tensor(targets)) == pytest.approx({k: result[k] for k in METRIC_KEYS})

    dense = evaluate_model(model, tokenizer, histories, targets, show_progress=False, mode="dense", ks=(1, 3))
    assert dense["mode"] == "dense" and {"recall@1", "ndcg@3"} <= set(dense)
    model.train()
    evaluate_model(model, tokenizer, histories[:2], targets[:2], show_progress=False)
    assert model.training
    with pytest.raises(ValueError, match="2 histories for 3 targets"):
        evaluate_model(model, tokenizer, histories[:2], targets[:3], show_progress=False)


# ------------------------------------------------------------------------------------------------ CLIs
@pytest.fixture(scope="module")
def trained(catalog_scientific, tmp_path_factory):
    """(checkpoint folder, data folder): a tiny model trained 3 steps by `cobra-hf train` on catalog_scientific."""
    import torch as _torch

    before = _torch.get_num_threads()
    _torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("evaluation") / "model"
    code = cli_main(["train", "--catalog", str(catalog_scientific), "--output_dir", str(out), "--max_steps", "3",
                     "--per_device_train_batch_size", "16", "--eval_strategy", "no", "--save_strategy", "no",
                     "--eval_users", "0", "--recipe", "none", *TINY_TRAIN])  # bare defaults: no ID-free head
    _torch.set_num_threads(before)
    assert code == 0
    data = json.loads((Path(catalog_scientific) / "prepare_args.json").read_text())["data_dir"]
    return out, data


def _last_json(text: str):
    return json.loads(text.strip().splitlines()[-1])


def test_evaluate_cli_prints_json_and_writes_output(trained, tmp_path, capsys, one_torch_thread):
    model_dir, data = trained
    base = ["evaluate", str(model_dir), "--data", data, "--max-users", "15", "--num-beams", "4"]
    assert cli_main(base) == 0
    result = _last_json(capsys.readouterr().out)
    assert METRIC_KEYS | {"mode", "users"} <= set(result)
    assert result["users"] == 15 and result["split"] == "test" and result["mode"] == "cobra"
    assert all(0.0 <= result[key] <= 1.0 for key in METRIC_KEYS)

    output = tmp_path / "metrics.json"
    assert cli_main([*base, "--split", "validation", "--mode", "sparse", "--output", str(output)]) == 0
    printed = _last_json(capsys.readouterr().out)
    written = json.loads(output.read_text())
    assert written == printed and written["split"] == "validation" and written["mode"] == "sparse"

    before = output.read_text()
    assert cli_main([*base, "--output", str(output)]) == 1
    captured = capsys.readouterr()
    assert "already exists" in captured.err and str(output) in captured.err and captured.out == ""
    assert output.read_text() == before


def test_evaluate_cli_passes_dense_guided_ids(trained, capsys, one_torch_thread):
    model_dir, data = trained  # trained without the ID-free dense head: the option is refused, naming the reason
    assert cli_main(["evaluate", str(model_dir), "--data", data, "--max-users", "4", "--dense-guided-ids", "5"]) == 1
    captured = capsys.readouterr()
    assert "--dense-guided-ids" in captured.err and "history_dense_loss_weight" in captured.err and captured.out == ""


def test_evaluate_cli_all_modes(trained, tmp_path, capsys, one_torch_thread):
    model_dir, data = trained
    output = tmp_path / "modes.json"
    assert cli_main(["evaluate", str(model_dir), "--data", data, "--max-users", "8", "--num-beams", "3", "--all-modes",
                     "--output", str(output)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    # trained without the ID-free head: every mode but "dense" (refused for such a model, issue 19 case 6)
    assert [line["mode"] for line in lines] == [mode for mode in GENERATION_MODES if mode != "dense"]
    assert all(line["users"] == 8 and METRIC_KEYS <= set(line) for line in lines)
    assert json.loads(output.read_text()) == lines


def test_recommend_cli_table_json_and_unknown_items(trained, capsys, one_torch_thread):
    from cobra_hf import CobraTokenizer

    model_dir, _ = trained
    tokenizer = CobraTokenizer.from_pretrained(str(model_dir))
    history = tokenizer.item_ids[:3]
    assert cli_main(["recommend", str(model_dir), "--history", *history, "--top-k", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 5 and [row["rank"] for row in rows] == [1, 2, 3, 4, 5]
    for row in rows:
        assert set(row) == {"rank", "item_id", "title", "score"}
        assert row["item_id"] in tokenizer.item_to_index and row["title"] == tokenizer.title(row["item_id"])
    scores = [row["score"] for row in rows]
    assert scores == sorted(scores, reverse=True)

    assert cli_main(["recommend", str(model_dir), "--history", *history, "--top-k", "5"]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].split()[:3] == ["rank", "item", "score"] and len(table) == 6
    for line, row in zip(table[1:], rows):
        assert line.split()[:2] == [str(row["rank"]), row["item_id"]]
        assert line.rstrip().endswith(row["title"].rstrip())

    assert cli_main(["recommend", str(model_dir), "--history", history[0], "NOPE-ITEM-42"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    # transformers' "Loading weights" progress bar also goes to stderr (the weights load before the history is read)
    err_lines = [line for line in captured.err.strip().splitlines() if not line.startswith("Loading weights")]
    assert len(err_lines) == 1 and "NOPE-ITEM-42" in err_lines[0] and err_lines[0].startswith("cobra-hf recommend: error")

    assert cli_main(["recommend", str(model_dir), "--history", history[0], "NOPE-ITEM-42", "--skip-unknown",
                     "--top-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
