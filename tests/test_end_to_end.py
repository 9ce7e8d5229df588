"""The real-data path on a slice of ../shared/data/scientific: catalog (catalog_scientific) -> `cobra-hf train` ->
a fresh process WITHOUT cobra_hf loads the checkpoint with AutoModel/AutoTokenizer + trust_remote_code and recommends
bit-identically to this process -> evaluation on the test split."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from cobra_hf.cli.main import main as cli_main
from cobra_hf.evaluation import evaluate_split
from cobra_hf.inference import load_checkpoint
from cobra_hf.training import index_splits

sys.path.insert(0, os.path.dirname(__file__))
from isolated import offline_env, run_isolated  # noqa: E402

sys.path.pop(0)

SETTINGS = {"top_k": 10, "num_beams": 6}

GENERATE_CODE = """
import json
import torch
torch.set_num_threads(1)
from transformers import AutoModel, AutoTokenizer
source, histories, settings = {source!r}, {histories!r}, {settings!r}
tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True)
model = AutoModel.from_pretrained(source, trust_remote_code=True).eval()
with torch.no_grad():
    out = model.generate(**tokenizer(histories, return_tensors="pt"), **settings)
print(json.dumps({{"item_indices": out.item_indices.tolist(), "scores": out.scores.tolist(),
                  "items": tokenizer.batch_decode_items(out), "model_class": type(model).__name__}}))
"""


@pytest.mark.slow
def test_scientific_slice_train_reload_without_cobra_hf_and_evaluate(catalog_scientific, tmp_path, capsys, one_torch_thread):
    data = json.loads((Path(catalog_scientific) / "prepare_args.json").read_text())["data_dir"]
    out = tmp_path / "model"
    assert cli_main(["train", "--catalog", str(catalog_scientific), "--output_dir", str(out), "--max_steps", "6",
                     "--per_device_train_batch_size", "16", "--eval_strategy", "no", "--save_strategy", "no",
                     "--eval_users", "0", "--hidden_size", "32", "--num_attention_heads", "2", "--intermediate_size", "64",
                     "--max_history", "10", "--disable_tqdm", "True", "--use_cpu", "True", "--report_to", "none",
                     "--seed", "0"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["global_step"] == 6

    model, tokenizer = load_checkpoint(str(out))
    test = index_splits(data, tokenizer, max_history=model.config.max_history)["test"]
    histories = [[tokenizer.item_ids[i] for i in row] for row in test["history_index"]]
    assert len(histories) > 20
    with torch.no_grad():
        expected = model.generate(**tokenizer(histories, return_tensors="pt"), **SETTINGS)

    got = run_isolated(GENERATE_CODE.format(source=str(out), histories=histories, settings=SETTINGS), cwd=tmp_path,
                       env={**offline_env(tmp_path / "hf"), "OMP_NUM_THREADS": "1"})
    assert got["model_class"] == "CobraForSequentialRecommendation"
    assert torch.equal(torch.tensor(got["item_indices"]), expected.item_indices)
    assert torch.equal(torch.tensor(got["scores"], dtype=expected.scores.dtype), expected.scores)  # bit-exact
    assert got["items"] == tokenizer.batch_decode_items(expected)

    metrics = evaluate_split(model, tokenizer, test, show_progress=False, **SETTINGS)
    assert metrics["users"] == len(test) == len(histories)
    for key in ("recall@5", "recall@10", "ndcg@5", "ndcg@10"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["recall@5"] <= metrics["recall@10"] and metrics["ndcg@5"] <= metrics["ndcg@10"] <= metrics["recall@10"]
    # the metrics agree with the ranking the fresh process produced
    from cobra_hf.evaluation import ranking_metrics

    again = ranking_metrics(torch.tensor(got["item_indices"]), torch.tensor(test["target_index"]))
    assert again == pytest.approx({key: metrics[key] for key in again})
