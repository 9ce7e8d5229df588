"""The "cobra-recommendation" pipeline: in this process with in-memory objects, and from a saved folder / a Hub repo
in a fresh process where cobra_hf is not importable (the pipeline class comes from the checkpoint)."""

from __future__ import annotations

import pytest
from isolated import run_isolated
from tiny import tiny_model
from transformers import pipeline

from cobra_hf.hub import push_checkpoint, save_checkpoint
from cobra_hf.inference import recommend
from cobra_hf.pipeline_cobra import CobraRecommendationPipeline

HISTORY = ["i1", "i2", "i3"]
HISTORIES = [HISTORY, ["i7"], ["i5", "i9", "i11"]]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = tiny_model()
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def recommender(tiny):
    model, tokenizer = tiny
    return pipeline("cobra-recommendation", model=model, tokenizer=tokenizer, device="cpu")


def test_pipeline_matches_recommend(tiny, recommender):
    model, tokenizer = tiny
    assert isinstance(recommender, CobraRecommendationPipeline)
    single = recommender(HISTORY, top_k=4, num_beams=5)
    expected = recommend(model, tokenizer, [HISTORY], top_k=4, num_beams=5)[0]
    assert [row["item_id"] for row in single] == [row["item_id"] for row in expected]
    assert [row["rank"] for row in single] == [1, 2, 3, 4]
    assert set(single[0]) == {"item_id", "title", "score", "rank"}
    assert single[0]["title"] == tokenizer.title(single[0]["item_id"])
    assert single == sorted(single, key=lambda row: -row["score"])

    batch = recommender(HISTORIES, top_k=4, num_beams=5)  # one batched generate call
    assert len(batch) == 3 and batch[0] == single
    assert recommender(" ".join(HISTORY), top_k=4, num_beams=5) == single  # a whitespace-separated string


def test_pipeline_parameters(recommender):
    in_history = recommender(HISTORY, top_k=10, exclude_history=True)
    assert len(in_history) == 10 and not {row["item_id"] for row in in_history} & set(HISTORY)
    assert len(recommender(HISTORY, top_k=3, mode="sparse")) == 3
    assert recommender(["i1", "nope"], top_k=2, unknown_items="drop") == recommender(["i1"], top_k=2)
    with pytest.raises(KeyError, match="nope"):
        recommender(["i1", "nope"])
    # a flat list of int ids is one history, as the tokenizer reads it (1490 is item "1490"; unknown here)
    with pytest.raises(KeyError, match=r"\['12', '7'\]"):
        recommender([12, 7])
    with pytest.raises(ValueError, match="^unknown_items must be 'error' or 'drop'"):
        recommender(HISTORY, unknown_items="skip")
    with pytest.raises(ValueError, match="unknown parameters"):
        recommender(HISTORY, temperature=0.5)
    with pytest.raises(ValueError, match="history"):
        recommender([])


PIPELINE_CODE = """
import json, sys
from transformers import pipeline
results = []
for source in {sources!r}:
    recommender = pipeline("cobra-recommendation", model=source, trust_remote_code=True, device="cpu")
    results.append({{"batch": recommender({histories!r}, top_k=4, num_beams=5),
                     "class": type(recommender).__module__ + "." + type(recommender).__name__}})
# the task can also come from config.json's custom_pipelines
assert type(pipeline(model=recommender.model.name_or_path, trust_remote_code=True, device="cpu")).__name__ \
    == "CobraRecommendationPipeline"
results.append(any(name.startswith("cobra_hf") for name in sys.modules))
print(json.dumps(results))
"""


def test_pipeline_from_folder_and_repo_without_cobra_hf(tiny, recommender, hub_patched, tmp_path):
    model, tokenizer = tiny
    folder = save_checkpoint(model, tokenizer, tmp_path / "model")
    repo_id = hub_patched.repo_id("cobra-pipeline")
    push_checkpoint(folder, repo_id)

    code = PIPELINE_CODE.format(sources=[str(folder), repo_id], histories=HISTORIES)
    *results, cobra_hf_loaded = run_isolated(code, cwd=tmp_path, env=hub_patched.env(tmp_path / "hf"))
    assert not cobra_hf_loaded
    expected_batch = recommender(HISTORIES, top_k=4, num_beams=5)
    for result in results:
        assert not result["class"].startswith("cobra_hf")
        assert len(result["batch"]) == len(expected_batch)
        for got, want in zip(result["batch"], expected_batch):
            assert [row["item_id"] for row in got] == [row["item_id"] for row in want]
            assert [row["score"] for row in got] == pytest.approx([row["score"] for row in want], abs=1e-5)
