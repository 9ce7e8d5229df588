"""The "joint" BeamFusion option: joint_fusion by hand, generate(beam_fusion="joint") against a brute-force ranking
from the beams, the paper's fusion staying the default, the psi_h-only limit, validation, CLI flags."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import GenerationConfig

sys.path.insert(0, os.path.dirname(__file__))
from tiny import benchmark_script, random_histories, tiny_model  # noqa: E402

from cobra_hf.cobra_generation import joint_fusion  # noqa: E402

GROUPED_LEVELS = (3, 3, 2)  # 18 possible IDs for 60 items: ~3 items per ID, so num_candidates < group size matters


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def grouped_model():
    model, tok = tiny_model(60, GROUPED_LEVELS, seed=2)
    return model.eval(), tok


def id_free_prediction(model, batch) -> torch.Tensor:
    """v_0 = normalize(history_dense_head(last hidden)) Float[B, D], recomputed outside generate()."""
    item_mask = batch["attention_mask"].view(batch["item_index"].shape[0], -1, model.config.num_levels)[..., 0].bool()
    with torch.no_grad():
        last, _ = model.prefill(batch["input_ids"], item_mask, batch["item_index"])
        return F.normalize(model.history_dense_head(last), dim=-1)


def test_joint_fusion_hand_computed():
    tau, psi, psi_h = 0.5, 4.0, 2.0
    inf = float("inf")
    # user 0: beam 0 with two candidates, beam 1 with one (one padded slot), beam 2 dead (-inf) with a slot flagged
    # valid; user 1: nothing valid at all
    scores = torch.tensor([[-0.5, -1.2, -inf], [-0.1, -0.3, -inf]])
    cos = torch.tensor([[[0.9, 0.1], [0.3, 0.99], [0.5, 0.5]], [[0.2, 0.4], [0.1, 0.3], [0.0, 0.0]]])
    hist = torch.tensor([[[0.2, 0.8], [-0.4, 0.99], [0.7, 0.1]], [[0.5, 0.5], [0.1, 0.2], [0.3, 0.3]]])
    valid = torch.tensor([[[True, True], [True, False], [True, False]], [[False, False], [False, False], [False, False]]])
    pairs = [(0, 0), (0, 1), (1, 0)]
    s = {p: tau * float(scores[0, p[0]]) + psi * float(cos[0][p]) + psi_h * float(hist[0][p]) for p in pairs}
    total = sum(math.exp(v) for v in s.values())
    expected = torch.zeros(2, 3, 2)
    for p, v in s.items():
        expected[0, p[0], p[1]] = math.exp(v) / total
    got = joint_fusion(scores, cos, hist, valid, tau, psi, psi_h)
    assert got.shape == (2, 3, 2)
    assert torch.allclose(got, expected, atol=1e-7)
    assert torch.isfinite(got).all() and abs(float(got[0].sum()) - 1.0) < 1e-6
    assert torch.equal(got[1], torch.zeros(3, 2))  # no valid pair: zeros, not NaN
    # an invalid slot's values never matter, even -inf / NaN-prone ones; tau = 0 with a dead beam gives no NaN
    cos2, hist2 = cos.clone(), hist.clone()
    cos2[0, 1, 1], hist2[0, 1, 1], cos2[1] = 1.0, -inf, -inf
    assert torch.allclose(joint_fusion(scores, cos2, hist2, valid, tau, psi, psi_h), expected, atol=1e-7)
    assert torch.isfinite(joint_fusion(scores, cos, hist, valid, 0.0, psi, psi_h)).all()
    # unlike the paper's fusion, a candidate's weight is not normalised inside its beam: a lone candidate of a beam
    # does not get its beam's whole weight
    lone = joint_fusion(scores[:1, :2], cos[:1, :2], torch.zeros(1, 2, 2), valid[:1, :2], 0.0, psi, 0.0)
    assert float(lone[0, 1, 0]) < float(lone[0, 0, 0])  # cos 0.3 < 0.9


def brute_force_joint(model, out, v0, tau, psi, psi_h, n, k):
    """Per user: every live beam row's N nearest items under its ID (by cos with the beam's vector), scored by
    tau * phi + psi * cos(v_k, a) + psi_h * cos(v_0, a), softmax over all pairs -> (items, scores) of the best k."""
    catalog = F.normalize(model.all_item_vectors(normalized=False), dim=-1)
    codes = model.item_codes.tolist()
    rankings = []
    for b in range(out.semantic_ids.shape[0]):
        logits = {}
        for m in range(out.semantic_ids.shape[1]):
            phi = float(out.beam_scores[b, m])
            if phi == float("-inf"):
                continue
            members = [i for i, row in enumerate(codes) if row == out.semantic_ids[b, m].tolist()]
            vector = F.normalize(out.beam_vectors[b, m], dim=0)
            cos = {i: float(vector @ catalog[i]) for i in members}
            for i in sorted(members, key=lambda i: -cos[i])[:n]:
                assert i not in logits, "an item twice among the candidates"
                logits[i] = tau * phi + psi * cos[i] + psi_h * float(v0[b] @ catalog[i])
        top = max(logits.values())
        total = sum(math.exp(v - top) for v in logits.values())
        ranked = sorted(logits, key=lambda i: -logits[i])[:k]
        rankings.append((ranked, [math.exp(logits[i] - top) / total for i in ranked]))
    return rankings


@pytest.mark.parametrize("guided", [0, 4])
@pytest.mark.parametrize("tau, psi, psi_h", [(0.2, 6.0, 8.0), (0.9, 16.0, 0.0), (1.0, 0.0, 3.0)])
def test_joint_generate_equals_brute_force(grouped_model, guided, tau, psi, psi_h):
    model, tok = grouped_model
    batch = tok(random_histories(60, 5, max_len=7, seed=13))
    n, k = 2, 6
    out = model.generate(**batch, num_beams=5, num_candidates=n, top_k=k, dense_guided_ids=guided,
                         beam_fusion="joint", beam_fusion_tau=tau, beam_fusion_psi=psi, beam_fusion_dense_psi=psi_h)
    assert out.semantic_ids.shape[1] == 5 + guided
    v0 = id_free_prediction(model, batch)
    for b, (items, scores) in enumerate(brute_force_joint(model, out, v0, tau, psi, psi_h, n, k)):
        assert out.item_indices[b].tolist() == items
        assert torch.allclose(out.scores[b], torch.tensor(scores), atol=1e-6)


def test_paper_stays_the_default(grouped_model):
    model, tok = grouped_model
    assert model.generation_config.beam_fusion == "paper" and model.generation_config.beam_fusion_dense_psi == 0.0
    batch = tok(random_histories(60, 8, max_len=7, seed=21))
    for extra in ({}, {"dense_guided_ids": 3}):
        default = model.generate(**batch, num_beams=5, num_candidates=2, top_k=6, **extra)
        paper = model.generate(**batch, num_beams=5, num_candidates=2, top_k=6, beam_fusion="paper", **extra)
        assert torch.equal(default.item_indices, paper.item_indices) and torch.equal(default.scores, paper.scores)
        # a paper call ignores psi_h (the term exists only in the joint score)
        ignored = model.generate(**batch, num_beams=5, num_candidates=2, top_k=6, beam_fusion_dense_psi=5.0, **extra)
        assert torch.equal(ignored.item_indices, paper.item_indices) and torch.equal(ignored.scores, paper.scores)
    # a generation config saved before the option existed (no beam_fusion key) decodes the paper's way
    old = GenerationConfig(num_beams=5, num_candidates=2, recommend_top_k=6, beam_fusion_tau=0.9, beam_fusion_psi=16.0,
                           recommend_mode="cobra", dense_guided_ids=0, exclude_history=False, use_faiss=False)
    assert not hasattr(old, "beam_fusion")
    legacy = model.generate(**batch, generation_config=old)
    paper = model.generate(**batch, num_beams=5, num_candidates=2, top_k=6, beam_fusion="paper")
    assert torch.equal(legacy.item_indices, paper.item_indices) and torch.equal(legacy.scores, paper.scores)
    joint = model.generate(**batch, generation_config=old, beam_fusion="joint", beam_fusion_dense_psi=8.0)
    assert not torch.equal(joint.scores, paper.scores)


def test_paper_fusion_at_tau_0_keeps_dead_beams_out():
    """tau = 0 is allowed (the beams weigh alike); a dead beam (-inf: a guided ID that repeats a beam, or fewer IDs
    than beams) must stay weightless instead of turning the user's whole row into NaN (0 * -inf)."""
    from cobra_hf.cobra_fusion import beam_fusion

    scores = torch.tensor([[-0.5, -2.0, float("-inf")]])
    cos = torch.tensor([[[0.9, 0.2], [0.8, 0.1], [0.0, 0.0]]])
    valid = torch.tensor([[[True, True], [True, False], [False, False]]])
    fused = beam_fusion(scores, cos, valid, tau=0.0, psi=16.0)
    assert torch.isfinite(fused).all() and fused[0, 2].eq(0).all()
    assert torch.allclose(fused[0].sum(-1), torch.tensor([0.5, 0.5, 0.0]))  # two live beams, equal weight
    # tau > 0 is unchanged by the guard
    expected = torch.softmax(torch.tensor([-0.5, -2.0]) * 0.9, -1)
    assert torch.allclose(beam_fusion(scores, cos, valid, tau=0.9, psi=16.0)[0, :2].sum(-1), expected)


def test_paper_fusion_at_tau_0_decodes_finite_scores(grouped_model):
    model, tok = grouped_model
    batch = tok(random_histories(60, 6, max_len=7, seed=3))
    # more beams than the catalog has IDs on some prefixes, and guided IDs that repeat beams: dead rows
    out = model.generate(**batch, num_beams=model.id_index.num_ids + 3, num_candidates=2, top_k=6,
                         dense_guided_ids=3, beam_fusion="paper", beam_fusion_tau=0.0)
    real = out.item_indices >= 0
    assert real.any() and torch.isfinite(out.scores[real]).all()


def test_joint_with_only_psi_h_is_dense_mode_among_candidates(grouped_model):
    """tau = psi = 0, psi_h = 1: the joint score is cos(v_0, a). With the IDs of the K items nearest to v_0 decoded
    beside the beams and every item of an ID a candidate, the top K are dense mode's top K, in its order."""
    model, tok = grouped_model
    batch = tok(random_histories(60, 10, max_len=7, seed=5))
    k = 5
    dense = model.generate(**batch, mode="dense", top_k=k)
    joint = model.generate(**batch, num_beams=3, num_candidates=model.id_index.max_items_per_id, top_k=k,
                           dense_guided_ids=k, beam_fusion="joint", beam_fusion_tau=0.0, beam_fusion_psi=0.0,
                           beam_fusion_dense_psi=1.0)
    assert torch.equal(joint.item_indices, dense.item_indices)
    # scores: softmax of the cosines, so their log-ratios are the cosine differences
    assert torch.allclose(joint.scores.log() - joint.scores[:, :1].log(), dense.scores - dense.scores[:, :1], atol=1e-5)


def test_bad_fusion_settings_raise(grouped_model):
    model, tok = grouped_model
    batch = tok([["i1", "i2"]])
    cases = (
        ({"beam_fusion": "fancy"}, r"beam_fusion must be one of \('paper', 'joint'\)"),
        ({"beam_fusion_dense_psi": "lots"}, "beam_fusion_dense_psi"),
        ({"beam_fusion_dense_psi": float("nan"), "beam_fusion": "joint"}, "beam_fusion_dense_psi"),
        ({"beam_fusion_tau": float("inf")}, "beam_fusion_tau"),
        ({"beam_fusion_psi": None}, "beam_fusion_psi"),
        # a negative weight would rank the least likely beams / least similar items first, with exit 0
        ({"beam_fusion_psi": -16.0}, r"^beam_fusion_psi must be >= 0, got -16.0"),
        ({"beam_fusion_tau": -0.9}, r"^beam_fusion_tau must be >= 0"),
        ({"beam_fusion_dense_psi": -1.0, "beam_fusion": "joint"}, r"^beam_fusion_dense_psi must be >= 0"),
        # a JSON string "false" (--generation, a recipe file) used to count as True; int() read 2.9 beams as 2
        ({"exclude_history": "false"}, r"^exclude_history must be true or false, got 'false'"),
        ({"use_faiss": "no"}, r"^use_faiss must be true or false"),
        ({"num_beams": 2.9}, r"^num_beams must be a whole number, got 2.9"),
        ({"top_k": True}, r"^top_k must be a whole number, got True"),
        ({"dense_guided_ids": "5"}, r"^dense_guided_ids must be a whole number"),
    )
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            model.generate(**batch, **kwargs)
    with pytest.raises(ValueError, match="exclude_history must be true or false"):
        model.set_generation_defaults(exclude_history="false")
    # whole floats and numpy / torch integers and bools still pass
    import numpy as np
    plain = model.generate(**batch, num_beams=4, top_k=5, exclude_history=False)
    same = model.generate(**batch, num_beams=4.0, top_k=np.int64(5), exclude_history=np.bool_(False))
    assert torch.equal(plain.item_indices, same.item_indices)
    plain, plain_tok = tiny_model(20, GROUPED_LEVELS, history_dense_loss_weight=0.0)
    plain.eval()
    with pytest.raises(ValueError, match="beam_fusion_dense_psi.*history_dense_loss_weight"):
        plain.generate(**plain_tok([["i1"]]), beam_fusion="joint", beam_fusion_dense_psi=1.0, top_k=3)
    # without psi_h the joint fusion needs no ID-free head
    out = plain.generate(**plain_tok([["i1"]]), beam_fusion="joint", top_k=3, num_beams=4)
    assert (out.item_indices >= 0).all()


@pytest.mark.parametrize("command", ["evaluate", "recommend"])
def test_cli_fusion_flags(command):
    import importlib

    from cobra_hf.cli.generation_flags import generation_kwargs

    module = importlib.import_module(f"cobra_hf.cli.{command}")
    required = ["m", "--data", "d"] if command == "evaluate" else ["m", "--history", "x"]
    args = module.build_parser().parse_args(
        [*required, "--beam-fusion", "joint", "--beam-fusion-tau", "0.2", "--beam-fusion-psi", "6",
         "--beam-fusion-dense-psi", "8", "--dense-guided-ids", "10"]
    )
    assert generation_kwargs(args) == {"beam_fusion": "joint", "beam_fusion_tau": 0.2, "beam_fusion_psi": 6.0,
                                       "beam_fusion_dense_psi": 8.0, "dense_guided_ids": 10}
    assert args.dense_guided_ids == 10
    assert generation_kwargs(module.build_parser().parse_args(required)) == {}  # the checkpoint's settings
    with pytest.raises(SystemExit):
        module.build_parser().parse_args([*required, "--beam-fusion", "fancy"])


def test_tune_fusion_script(grouped_model, tmp_path, capsys):
    """benchmarks/tune_fusion.py on a saved tiny checkpoint and frozen splits: every grid point on the validation
    sample, the best one and the paper's fusion on the (capped) test split, JSON + Markdown."""
    import json

    model, tok = grouped_model
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    histories = [[int(h[1:]) for h in row] for row in random_histories(60, 30, max_len=6, seed=8)]
    split = {"history": histories, "target": [(sum(h) * 7) % 60 for h in histories]}
    torch.save({"validation": split, "test": split}, tmp_path / "splits.pt")
    script = benchmark_script("tune_fusion")
    grid = [{"beam_fusion": "joint", "num_beams": 4, "beam_fusion_dense_psi": 8.0}, {"num_beams": 6}]
    output = tmp_path / "tune.json"
    argv = ["--model", str(folder), "--splits", str(tmp_path / "splits.pt"), "--val-users", "20",
            "--test-users", "25", "--grid", json.dumps(grid), "--output", str(output), "--batch-size", "8"]
    script.main(argv)
    report = json.loads(output.read_text())
    assert [point["setting"] for point in report["grid"]] == grid
    assert report["validation_users"] == 20 and report["test_users"] == 25
    assert all(point["validation"]["users"] == 20 for point in report["grid"])
    recalls = [point["validation"]["recall@10"] for point in report["grid"]]
    assert report["best"]["setting"] == grid[recalls.index(max(recalls))] and report["selected_by"] == "recall@10"
    assert set(report["test"]) == {"paper", "best"} and report["test"]["paper"]["users"] == 25
    assert "| test | beam_fusion=paper |" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an existing report is not overwritten
        script.main(argv)
    by_ndcg = tmp_path / "tune_ndcg5.json"
    script.main([*argv[:-4], "--output", str(by_ndcg), "--select", "ndcg@5", "--batch-size", "8"])
    report = json.loads(by_ndcg.read_text())
    # NDCG@5 first, ties by Recall@10, NDCG@10, Recall@5, then grid order (max keeps the first of equals)
    order = ("ndcg@5", "recall@10", "ndcg@10", "recall@5")
    expected = max(report["grid"], key=lambda point: tuple(point["validation"][key] for key in order))
    assert report["selected_by"] == "ndcg@5" and report["best"]["setting"] == expected["setting"]
    with pytest.raises(SystemExit):  # only the four reported metrics can select
        script.main([*argv[:-4], "--output", str(tmp_path / "x.json"), "--select", "mrr"])
    with pytest.raises(ValueError, match="beam_fusion"):  # a bad grid point fails before any evaluation
        script.main([*argv[:-4], "--output", str(tmp_path / "other.json"), "--grid", '[{"beam_fusion": "x"}]'])
