"""`CobraEnsemble`: one member is the model exactly; members' scores are averaged (cosines, code log-probs); members
of another catalog are refused; `cobra-hf evaluate/recommend --ensemble` on checkpoints trained on real data."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from cobra_hf import CobraForSequentialRecommendation
from cobra_hf.cli.main import main as cli_main
from cobra_hf.ensemble import CobraEnsemble

sys.path.insert(0, os.path.dirname(__file__))
from test_training import TINY_TRAIN, _data_dir  # noqa: E402
from tiny import random_histories, tiny_model  # noqa: E402

sys.path.pop(0)

LEVELS = (4, 4, 3)
SETTINGS = [
    {"mode": "cobra"},
    {"mode": "cobra", "beam_fusion": "joint", "dense_guided_ids": 4, "beam_fusion_dense_psi": 4.0},
    {"mode": "dense"},
    {"mode": "sparse"},
    {"mode": "no_fusion"},
]


def _sibling(model, seed: int) -> CobraForSequentialRecommendation:
    """Another model of the same catalog, other initial weights."""
    torch.manual_seed(seed)
    other = CobraForSequentialRecommendation(model.config)
    other.set_catalog(model.item_codes, model.item_text_ids, None, model.config.catalog_hash)
    return other.eval()


def _script(name: str):
    from tiny import benchmark_script

    return benchmark_script(name)


@pytest.fixture(scope="module")
def pair():
    model, tok = tiny_model(40, LEVELS)
    return model.eval(), _sibling(model, 7), tok


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_one_member_is_the_model_exactly(pair, settings):
    model, _, tok = pair
    batch = tok(random_histories(40, 6, seed=2), unknown_items="error")
    expected = model.generate(**batch, num_beams=5, top_k=6, **settings)
    got = CobraEnsemble([model]).eval().generate(**batch, num_beams=5, top_k=6, **settings)
    assert torch.equal(got.item_indices, expected.item_indices)
    assert torch.equal(got.scores, expected.scores)


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_a_model_twice_ranks_like_the_model(pair, settings):
    """Mean of equal log-probs / cosines = the member's: the same items, scores equal up to rounding."""
    model, _, tok = pair
    batch = tok(random_histories(40, 6, seed=3), unknown_items="error")
    expected = model.generate(**batch, num_beams=5, top_k=6, **settings)
    got = CobraEnsemble([model, model]).eval().generate(**batch, num_beams=5, top_k=6, **settings)
    torch.testing.assert_close(got.scores, expected.scores, rtol=1e-5, atol=1e-6)
    assert torch.equal(got.item_indices, expected.item_indices)


def test_two_members_average_cosines_and_log_probs(pair):
    first, second, tok = pair
    ensemble = CobraEnsemble([first, second]).eval()
    batch = tok(random_histories(40, 5, seed=4), unknown_items="error")
    everything = first.config.num_items
    out = ensemble.generate(**batch, mode="dense", top_k=everything)
    cosines = []
    for member in (first, second):
        member_out = member.generate(**batch, mode="dense", top_k=everything)
        cosines.append(torch.zeros_like(member_out.scores).scatter(1, member_out.item_indices, member_out.scores))
    mean = (cosines[0] + cosines[1]) / 2
    torch.testing.assert_close(out.scores, mean.gather(1, out.item_indices), rtol=1e-5, atol=1e-6)
    assert torch.equal(out.item_indices[:, :5], mean.topk(5).indices)  # no near-ties among 40 random items

    hidden = torch.randn(3, 2 * first.config.hidden_size)
    allowed = torch.tensor([True, False, True, True])
    width = first.config.hidden_size
    expected = torch.log_softmax((first.level_log_probs(hidden[:, :width], 0, allowed)
                                  + second.level_log_probs(hidden[:, width:], 0, allowed)) / 2, dim=-1)
    torch.testing.assert_close(ensemble.level_log_probs(hidden, 0, allowed), expected)
    assert torch.isinf(expected[:, 1]).all() and torch.allclose(expected.exp().sum(-1), torch.ones(3))

    cobra = ensemble.generate(**batch, num_beams=6, top_k=10, beam_fusion="joint", dense_guided_ids=3,
                              beam_fusion_dense_psi=4.0)
    assert ((cobra.item_indices >= 0) & (cobra.item_indices < everything)).all()
    for row in cobra.item_indices:
        assert len(set(row.tolist())) == len(row)


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_a_model_in_both_roles_ranks_like_the_model(pair, settings):
    """One model as the "ids" member and again as the "vectors" member decodes like the model alone."""
    model, _, tok = pair
    batch = tok(random_histories(40, 6, seed=5), unknown_items="error")
    expected = model.generate(**batch, num_beams=5, top_k=6, **settings)
    got = CobraEnsemble([model, model], roles=["vectors", "ids"]).eval().generate(**batch, num_beams=5, top_k=6,
                                                                                  **settings)
    torch.testing.assert_close(got.scores, expected.scores, rtol=1e-5, atol=1e-6)
    assert torch.equal(got.item_indices, expected.item_indices)


def test_roles_split_the_beams_from_the_vectors(pair):
    """An "ids" member without an ID-free head drives the beams, a "vectors" member gives every vector: sparse mode
    is the ids member's, dense mode the vectors member's."""
    first, _, tok = pair
    ids_only, _ = tiny_model(40, LEVELS, history_dense_loss_weight=0.0, seed=0)
    ids_only = _sibling(ids_only, 11)
    ensemble = CobraEnsemble([first, ids_only], roles=["vectors", "ids"]).eval()
    assert ensemble.config.history_dense_loss_weight == first.config.history_dense_loss_weight
    batch = tok(random_histories(40, 6, seed=6), unknown_items="error")
    for mode, source in (("sparse", ids_only), ("dense", first)):
        expected = source.generate(**batch, mode=mode, num_beams=5, top_k=6)
        got = ensemble.generate(**batch, mode=mode, num_beams=5, top_k=6)
        assert torch.equal(got.item_indices, expected.item_indices), mode
        torch.testing.assert_close(got.scores, expected.scores, rtol=1e-5, atol=1e-6)
    cobra = ensemble.generate(**batch, num_beams=6, top_k=10, beam_fusion="joint", dense_guided_ids=3,
                              beam_fusion_dense_psi=4.0)
    assert ((cobra.item_indices >= 0) & (cobra.item_indices < 40)).all()
    # with the ID-free head only on the ids side, the vectors' side has none: refused
    with pytest.raises(ValueError, match="ID-free dense head"):
        CobraEnsemble([ids_only, first], roles=["vectors", "ids"]).generate(**batch, mode="dense")
    for roles in (["ids"], ["ids", "ids"], ["vectors", "both", "ids"], ["vector", "ids"]):
        with pytest.raises(ValueError, match="roles"):
            CobraEnsemble([first, ids_only][:len(roles)] if len(roles) < 3 else [first, ids_only], roles=roles)


def test_members_of_another_catalog_are_refused(pair):
    model, _, _ = pair
    other, _ = tiny_model(40, LEVELS, seed=5)  # other semantic IDs
    with pytest.raises(ValueError, match="another catalog"):
        CobraEnsemble([model, other])
    with pytest.raises(ValueError, match="at least one"):
        CobraEnsemble([])
    no_head, _ = tiny_model(40, LEVELS, history_dense_loss_weight=0.0)
    with pytest.raises(ValueError, match="ID-free dense head"):
        CobraEnsemble([model, no_head])
    shorter, _ = tiny_model(40, LEVELS, max_history=4)  # its position table ends at 4: it failed mid-decoding
    with pytest.raises(ValueError, match=r"^Ensemble member 2 reads histories of up to 4 items and member 1 of 8"):
        CobraEnsemble([model, shorter], roles=["vectors", "ids"])
    with pytest.raises(ValueError, match="only normalised"):
        CobraEnsemble([model]).all_item_vectors(normalized=False)


def test_evaluate_and_recommend_cli_with_an_ensemble(catalog_scientific, tmp_path, capsys, one_torch_thread):
    """Two checkpoints trained on real data (seeds 0 and 1): `evaluate --ensemble` gives CobraEnsemble's numbers,
    recommends only real items; a checkpoint of another catalog is named in the error."""
    from cobra_hf.evaluation import evaluate_split
    from cobra_hf.inference import load_ensemble
    from cobra_hf.training import index_splits

    folders = []
    for seed in (0, 1):
        out = tmp_path / f"seed{seed}"
        assert cli_main(["train", "--catalog", str(catalog_scientific), "--output_dir", str(out), *TINY_TRAIN, "--seed", str(seed),
                         "--max_steps", "3", "--eval_strategy", "no", "--save_strategy", "no",
                         "--history_dense_loss_weight", "0.5"]) == 0
        folders.append(str(out))
    capsys.readouterr()
    data = _data_dir(catalog_scientific)
    assert cli_main(["evaluate", folders[0], "--ensemble", folders[1], "--data", data, "--split", "validation",
                     "--max-users", "20", "--mode", "dense"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["ensemble"] == folders

    ensemble, tokenizer = load_ensemble(folders)
    assert isinstance(ensemble, CobraEnsemble) and len(ensemble.members) == 2
    # the last --seed wins: two different models
    assert not torch.equal(ensemble.members[0].dense_head.weight, ensemble.members[1].dense_head.weight)
    validation = index_splits(data, tokenizer, max_history=ensemble.config.max_history)["validation"]
    result = evaluate_split(ensemble, tokenizer, validation, max_users=20, mode="dense", show_progress=False)
    for key in ("recall@10", "ndcg@5"):
        assert printed[key] == pytest.approx(result[key]), key
    single = evaluate_split(ensemble.members[0], tokenizer, validation, max_users=20, mode="dense", show_progress=False)
    assert single["users"] == result["users"] == 20

    history = list(tokenizer.item_ids[:3])
    assert cli_main(["recommend", folders[0], "--ensemble", folders[1], "--history", *history, "--json",
                     "--top-k", "5"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(rows) == 5 and all(row["item_id"] in set(tokenizer.item_ids) for row in rows)

    # --beams-from: the second checkpoint's beams, the first's vectors (sparse mode is the second's, dense the first's)
    for mode, source in (("sparse", 1), ("dense", 0)):
        assert cli_main(["evaluate", folders[0], "--beams-from", folders[1], "--data", data, "--split", "validation",
                         "--max-users", "20", "--mode", mode]) == 0
        printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        alone = evaluate_split(load_ensemble([folders[source]])[0], tokenizer, validation, max_users=20, mode=mode,
                               show_progress=False)
        assert printed["beams_from"] == folders[1]
        assert (printed["recall@10"], printed["ndcg@10"]) == pytest.approx((alone["recall@10"], alone["ndcg@10"]))
    assert cli_main(["recommend", folders[0], "--beams-from", folders[1], "--history", *history, "--json",
                     "--top-k", "5"]) == 0
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == 5

    # the benchmark scripts: test metrics of the ensemble in each mode, the members' training time summed; the
    # fusion grid tunes an ensemble like a single model
    evaluate_script = _script("evaluate_ensemble")
    report_dir = tmp_path / "ensemble_report"
    argv = ["--models", *folders, "--data", data, "--output", str(report_dir), "--modes", "dense,cobra",
            "--eval-users", "20", "--generate-args", '{"beam_fusion": "joint", "beam_fusion_dense_psi": 4}']
    evaluate_script.main(argv)
    report = json.loads((report_dir / "results.json").read_text())
    seconds = [json.loads((tmp_path / f"seed{seed}" / "training_summary.json").read_text())["train_seconds"]
               for seed in (0, 1)]
    assert report["train_seconds_total"] == pytest.approx(sum(seconds), abs=0.11) and report["members"] == folders
    assert report["test"]["dense"]["users"] == 20 and set(report["test"]) == {"dense", "cobra"}
    test = index_splits(data, tokenizer, max_history=ensemble.config.max_history)["test"]
    joint = evaluate_split(ensemble, tokenizer, test, max_users=20, beam_fusion="joint", beam_fusion_dense_psi=4.0,
                           show_progress=False)
    assert report["test"]["cobra"]["ndcg@5"] == pytest.approx(joint["ndcg@5"])
    assert "cobra-hf COBRA (joint BeamFusion" in (report_dir / "results.md").read_text()
    with pytest.raises(SystemExit):  # an existing report is not overwritten
        evaluate_script.main(argv)
    capsys.readouterr()
    tune = tmp_path / "tune.json"
    _script("tune_fusion").main(["--model", *folders, "--data", data, "--val-users", "10", "--test-users", "10",
                                 "--grid", '[{"beam_fusion": "joint", "beam_fusion_dense_psi": 4.0}]',
                                 "--output", str(tune)])
    tuned = json.loads(tune.read_text())
    assert tuned["model"] == folders and tuned["test"]["best"]["users"] == 10
    capsys.readouterr()

    stranger = tmp_path / "stranger"
    model, tok = tiny_model(40, LEVELS)
    model.save_pretrained(stranger)
    tok.save_pretrained(stranger)
    assert cli_main(["evaluate", folders[0], "--ensemble", str(stranger), "--data", data, "--max-users", "4"]) == 1
    assert "stranger" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["cobra", "dense"])
def test_faiss_search_on_the_joined_vectors_matches_torch(pair, mode):
    pytest.importorskip("faiss")
    first, second, tok = pair
    ensemble = CobraEnsemble([first, second]).eval()
    batch = tok(random_histories(40, 8, seed=6), unknown_items="error")
    exact = ensemble.generate(**batch, mode=mode, num_beams=4, top_k=7, exclude_history=True)
    searched = ensemble.generate(**batch, mode=mode, num_beams=4, top_k=7, exclude_history=True, use_faiss=True)
    assert torch.equal(exact.item_indices, searched.item_indices)
    torch.testing.assert_close(exact.scores, searched.scores, atol=1e-5, rtol=1e-5)
    assert ensemble.faiss_index().d == 2 * first.config.hidden_size


def test_new_member_weights_reach_the_ensemble(pair):
    """Loading other weights into a member (its own caches drop) refreshes the ensemble's joined catalog."""
    first, second, tok = pair
    ensemble = CobraEnsemble([first, _sibling(first, 11)]).eval()
    batch = tok(random_histories(40, 4, seed=7), unknown_items="error")
    before = ensemble.generate(**batch, mode="dense", top_k=5)
    ensemble.members[1].load_state_dict(second.state_dict())
    after = ensemble.generate(**batch, mode="dense", top_k=5)
    expected = CobraEnsemble([first, second]).eval().generate(**batch, mode="dense", top_k=5)
    assert torch.equal(after.scores, expected.scores) and not torch.equal(after.scores, before.scores)
