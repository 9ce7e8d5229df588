"""The ID trunk (config.id_trunk, cobra_id_trunk.py): a joined model decodes exactly like the pair of checkpoints it
was joined from; each loss trains only its own backbone; a trunk model trains, saves and loads bit-exact; joining
refuses models that do not fit."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from cobra_hf import CobraForSequentialRecommendation
from cobra_hf.ensemble import CobraEnsemble, join_id_trunk

sys.path.insert(0, os.path.dirname(__file__))
from test_ensemble import LEVELS, SETTINGS  # noqa: E402  (the same catalog shape and decoding settings)
from tiny import random_histories, tiny_model  # noqa: E402

sys.path.pop(0)


def _ids_model(model, seed: int, **overrides) -> CobraForSequentialRecommendation:
    """A model of the same catalog without the ID-free head (as one trained for IDs alone), other weights."""
    config = type(model.config).from_dict({**model.config.to_dict(), "history_dense_loss_weight": 0.0, **overrides})
    torch.manual_seed(seed)
    other = CobraForSequentialRecommendation(config)
    other.set_catalog(model.item_codes, model.item_text_ids, None, model.config.catalog_hash)
    return other.eval()


@pytest.fixture(scope="module")
def pair():
    model, tok = tiny_model(40, LEVELS)
    return model.eval(), _ids_model(model, 11), tok


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_joined_model_decodes_like_the_pair(pair, settings):
    """join_id_trunk(vectors, ids) ranks exactly like CobraEnsemble([vectors, ids], roles=["vectors", "ids"]), in
    every mode; its sparse mode ranks the beams of the ids model, its dense mode is the vectors model's."""
    vectors, ids, tok = pair
    joined = join_id_trunk(vectors, ids).eval()
    assert joined.config.id_trunk and joined.decoder_width == 2 * vectors.config.hidden_size
    batch = tok(random_histories(40, 6, seed=5), unknown_items="error")
    expected = CobraEnsemble([vectors, ids], roles=["vectors", "ids"]).eval().generate(**batch, num_beams=5, top_k=6,
                                                                                      **settings)
    got = joined.generate(**batch, num_beams=5, top_k=6, **settings)
    assert torch.equal(got.item_indices, expected.item_indices)
    torch.testing.assert_close(got.scores, expected.scores, rtol=1e-5, atol=1e-6)
    alone = {"sparse": ids, "dense": vectors}.get(settings["mode"])
    if alone is not None:
        # (sparse mode tops short beam lists up with items near the vectors model's dense vector: those, scored
        # below -1, may differ from what the ids model alone would add)
        reference = alone.generate(**batch, num_beams=5, top_k=6, **settings).item_indices
        beams = got.scores > -1
        assert torch.equal(got.item_indices[beams], reference[beams])


@pytest.mark.parametrize("settings", SETTINGS[:2] + SETTINGS[3:4], ids=lambda s: "-".join(str(v) for v in s.values()))
def test_the_ids_models_item_output_rows_become_the_trunks(pair, settings):
    """An ids model with per-item output rows (config.item_output_embeddings): the joined model decodes like the
    pair; the rows are the trunk's; a vectors model's own rows are left out (its code heads drive no beam)."""
    vectors, _, tok = pair
    ids = _ids_model(vectors, 12, item_output_embeddings=True)
    vectors_with_rows = _ids_model(vectors, 0, item_output_embeddings=True,
                                   history_dense_loss_weight=vectors.config.history_dense_loss_weight)
    vectors_with_rows.load_state_dict(vectors.state_dict(), strict=False)
    with torch.no_grad():
        ids.item_output.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(3))
        vectors_with_rows.item_output.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(4))
    joined = join_id_trunk(vectors_with_rows.eval(), ids).eval()
    assert joined.config.item_output_embeddings and joined.item_output is None
    assert torch.equal(joined.id_trunk.item_output.weight, ids.item_output.weight)
    batch = tok(random_histories(40, 6, seed=5), unknown_items="error")
    expected = CobraEnsemble([vectors, ids], roles=["vectors", "ids"]).eval().generate(**batch, num_beams=5, top_k=6,
                                                                                      **settings)
    got = joined.generate(**batch, num_beams=5, top_k=6, **settings)
    assert torch.equal(got.item_indices, expected.item_indices)
    torch.testing.assert_close(got.scores, expected.scores, rtol=1e-5, atol=1e-6)


def test_each_loss_trains_only_its_own_backbone(pair):
    """The trunk's sparse loss reaches the trunk alone; the dense losses and the backbone's own code heads never
    reach the trunk; the loss is their weighted sum."""
    vectors, ids, tok = pair
    joined = join_id_trunk(vectors, ids).train()
    batch = tok(random_histories(40, 8, seed=9), unknown_items="error")
    out = joined(**batch, labels=batch["input_ids"].clone())
    config = joined.config
    total = (config.sparse_loss_weight * (out.sparse_loss + out.backbone_sparse_loss)
             + config.dense_loss_weight * out.dense_loss + config.history_dense_loss_weight * out.history_dense_loss)
    torch.testing.assert_close(out.loss, total)
    trunk = list(joined.id_trunk.parameters())
    main = [p for name, p in joined.named_parameters() if not name.startswith("id_trunk.")]
    for loss, reaches, never in ((out.sparse_loss, trunk, main),
                                 (out.dense_loss + out.history_dense_loss + out.backbone_sparse_loss, main, trunk)):
        grads = torch.autograd.grad(loss, reaches + never, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads[: len(reaches)])
        assert all(g is None or not g.any() for g in grads[len(reaches):])


def test_a_trunk_model_learns_and_loads_bit_exact(tmp_path):
    """A model built with id_trunk=True: AdamW steps lower its trunk's sparse loss; save/load keeps every tensor
    and every recommendation."""
    model, tok = tiny_model(40, LEVELS, id_trunk=True)
    batch = tok(random_histories(40, 16, seed=3), unknown_items="error")
    labels = batch["input_ids"].clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(25):
        out = model(**batch, labels=labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.sparse_loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = CobraForSequentialRecommendation.from_pretrained(tmp_path).eval()
    assert loaded.config.id_trunk
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys() and any(key.startswith("id_trunk.") for key in state)
    assert all(torch.equal(state[key], loaded_state[key]) for key in state)
    for settings in SETTINGS:
        expected = model.generate(**batch, num_beams=5, top_k=6, **settings)
        got = loaded.generate(**batch, num_beams=5, top_k=6, **settings)
        assert torch.equal(got.item_indices, expected.item_indices) and torch.equal(got.scores, expected.scores)


def test_a_trunk_model_in_an_ensemble(pair):
    """A trunk model is an ensemble member like any other: alone it is itself, twice it ranks like itself."""
    vectors, ids, tok = pair
    joined = join_id_trunk(vectors, ids).eval()
    batch = tok(random_histories(40, 6, seed=4), unknown_items="error")
    expected = joined.generate(**batch, num_beams=5, top_k=6)
    for members in ([joined], [joined, joined]):
        got = CobraEnsemble(members).eval().generate(**batch, num_beams=5, top_k=6)
        assert torch.equal(got.item_indices, expected.item_indices)
    CobraEnsemble([joined, vectors]).eval().generate(**batch, num_beams=5, top_k=6)  # widths 2D and D side by side


def test_join_refuses_what_does_not_fit(pair):
    vectors, ids, _ = pair
    with pytest.raises(ValueError, match="hidden_size"):
        join_id_trunk(vectors, _ids_model(vectors, 3, hidden_size=16, intermediate_size=32))
    with pytest.raises(ValueError, match="already has an ID trunk"):
        join_id_trunk(join_id_trunk(vectors, ids), ids)
    other, _ = tiny_model(40, LEVELS, seed=5)
    with pytest.raises(ValueError, match="another catalog"):
        join_id_trunk(vectors, _ids_model(other, 3))
    with pytest.raises(ValueError, match="ID-free dense head"):
        join_id_trunk(ids, vectors).generate(**pair[2](random_histories(40, 2), unknown_items="error"), mode="dense")


def test_join_cli_writes_one_checkpoint_that_decodes_like_the_pair(pair, tmp_path, capsys):
    """`cobra-hf join MODEL --beams-from IDS --output NEW` writes a checkpoint that recommends what the pair does;
    a non-empty --output or a model of other sizes is refused in one line, exit 1, nothing written."""
    from cobra_hf.cli.main import main as cli_main
    from cobra_hf.hub.checkpoint import save_checkpoint
    from cobra_hf.inference import load_checkpoint

    vectors, ids, tok = pair
    save_checkpoint(vectors, tok, tmp_path / "vectors")
    save_checkpoint(ids, tok, tmp_path / "ids")
    save_checkpoint(_ids_model(vectors, 3, hidden_size=16, intermediate_size=32), tok, tmp_path / "narrow")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert cli_main(["join", str(tmp_path / "vectors"), "--beams-from", str(tmp_path / "ids"), "--output",
                     str(busy)]) == 1
    assert "not empty" in capsys.readouterr().err and [p.name for p in busy.iterdir()] == ["mine.txt"]
    assert cli_main(["join", str(tmp_path / "vectors"), "--beams-from", str(tmp_path / "narrow"), "--output",
                     str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cobra-hf join: error:")]
    assert len(errors) == 1 and "hidden_size" in errors[0] and not (tmp_path / "bad").exists()

    # a failure while saving leaves no --output and no staging folder behind
    import cobra_hf.hub.checkpoint as checkpoint_module

    def broken(*args, **kwargs):
        raise OSError("disk full")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint_module, "write_model_card", broken)
        with pytest.raises(OSError, match="disk full"):
            cli_main(["join", str(tmp_path / "vectors"), "--beams-from", str(tmp_path / "ids"), "--output",
                      str(tmp_path / "joined")])
    assert not (tmp_path / "joined").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    (tmp_path / "vectors" / "notes.txt").write_text("mine")  # the source's other files stay where they are
    assert cli_main(["join", str(tmp_path / "vectors"), "--beams-from", str(tmp_path / "ids"), "--output",
                     str(tmp_path / "joined")]) == 0
    assert not (tmp_path / "joined" / "notes.txt").exists() and (tmp_path / "vectors" / "notes.txt").exists()
    joined, joined_tok = load_checkpoint(str(tmp_path / "joined"))
    assert joined.config.id_trunk and joined_tok.catalog_hash == tok.catalog_hash
    batch = tok(random_histories(40, 6, seed=8), unknown_items="error")
    expected = CobraEnsemble([vectors, ids], roles=["vectors", "ids"]).eval().generate(**batch, num_beams=5, top_k=6)
    got = joined.generate(**batch, num_beams=5, top_k=6)
    assert torch.equal(got.item_indices, expected.item_indices)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_train_id_trunk_only_runs_the_trunk_alone_and_trains_nothing_else():
    """train_id_trunk_only: forward's loss is the trunk's sparse loss of a full forward (dropout off: the same
    number, without running the main backbone); AdamW steps change the trunk's weights and no other; turning it off
    restores what was trainable; a model without a trunk refuses it."""
    model, tok = tiny_model(40, LEVELS, id_trunk=True)
    batch = tok(random_histories(40, 16, seed=8), unknown_items="error")
    labels = batch["input_ids"].clone()
    model.eval()
    full = model(**batch, labels=labels)
    model.train_id_trunk_only()
    alone = model(**batch, labels=labels)
    torch.testing.assert_close(alone.loss, model.config.sparse_loss_weight * full.sparse_loss)
    assert alone.dense_loss is None and alone.backbone_sparse_loss is None
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith("id_trunk.") for name in changed)
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith("id_trunk."))
    model.train_id_trunk_only(False)
    assert all(p.requires_grad for p in model.parameters())
    assert model(**batch, labels=labels).dense_loss is not None
    plain, _ = tiny_model(40, LEVELS)
    with pytest.raises(ValueError, match="needs a model with an ID trunk"):
        plain.train_id_trunk_only()


def test_join_cli_picks_the_cascades_decoding_on_validation_or_takes_the_users(tmp_path, capsys):
    """`join --data DATA` scores MODEL_DIR's own decoding and the `trunk` recipe's points on validation users and saves
    the best by Recall@10 as the joined checkpoint's defaults (the printed record's numbers are the real ones);
    `--generation` sets them by hand; a bad one is a one-line error, exit 1, nothing written."""
    import json

    from cobra_hf.cli.main import main as cli_main
    from cobra_hf.evaluation import evaluate_split, sample_split
    from cobra_hf.hub.checkpoint import save_checkpoint
    from cobra_hf.inference import load_checkpoint
    from cobra_hf.training import build_model, index_splits
    from cobra_hf.training.recipes import RECIPES

    sys.path.insert(0, os.path.dirname(__file__))
    from test_training_safety import _catalog  # a hand-written 40-item catalog with its data folder

    sys.path.pop(0)
    catalog = _catalog(tmp_path / "cat")
    sizes = {"init_text_embeddings": False, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    torch.manual_seed(0)
    vectors, tok = build_model(catalog, history_dense_loss_weight=1.0, **sizes)
    ids, _ = build_model(catalog, dense_loss_weight=0.0, **sizes)
    save_checkpoint(vectors.eval(), tok, tmp_path / "vectors")
    save_checkpoint(ids.eval(), tok, tmp_path / "ids")
    base = ["join", str(tmp_path / "vectors"), "--beams-from", str(tmp_path / "ids")]
    data = str(tmp_path / "cat" / "data")

    assert cli_main([*base, "--output", str(tmp_path / "picked"), "--data", data, "--eval-users", "12"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    trunk = RECIPES["trunk"]
    assert [point["settings"] for point in record["points"]] == [{}, trunk.generation, *trunk.decoding_grid]
    joined, joined_tok = load_checkpoint(str(tmp_path / "picked"))
    users = sample_split(index_splits(data, joined_tok, max_history=joined.config.max_history)["validation"], 12)
    chosen = next(point for point in record["points"] if point["name"] == record["chosen"])
    assert chosen["recall@10"] == max(point.get("recall@10", -1) for point in record["points"])
    again = evaluate_split(joined, joined_tok, users, show_progress=False)  # the saved defaults are the chosen point
    assert again["recall@10"] == pytest.approx(chosen["recall@10"])
    assert again["ndcg@10"] == pytest.approx(chosen["ndcg@10"])

    assert cli_main([*base, "--output", str(tmp_path / "set"), "--generation", '{"beam_fusion_tau": 0.45}']) == 0
    assert "--data" not in capsys.readouterr().out
    assert load_checkpoint(str(tmp_path / "set"))[0].generation_config.beam_fusion_tau == 0.45
    assert cli_main([*base, "--output", str(tmp_path / "plain")]) == 0
    assert "pass --data DATA" in capsys.readouterr().out

    for bad, named in (('{"beam_fusion_tau": "x"', "not valid JSON"), ('{"beams": 3}', "beams"), ("[1]", "object")):
        assert cli_main([*base, "--output", str(tmp_path / "bad"), "--generation", bad]) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cobra-hf join: error:")]
        assert len(errors) == 1 and named in errors[0] and not (tmp_path / "bad").exists()
    assert cli_main([*base, "--output", str(tmp_path / "bad"), "--data", str(tmp_path / "nothing")]) == 1
    assert "--data" in capsys.readouterr().err and not (tmp_path / "bad").exists()
