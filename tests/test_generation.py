"""generate(): valid IDs only, exact beam search (brute force), greedy, dense vectors, BeamFusion, modes, edge cases."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from tiny import random_histories, tiny_model  # noqa: E402

from cobra_hf.cobra_generation import beam_fusion  # noqa: E402

DENSE_LEVELS = (4, 4, 3)  # 48 possible IDs, most used
SPARSE_LEVELS = (8, 8, 8)  # 512 possible IDs, few used: prefix masking matters at every level


@pytest.fixture(scope="module")
def dense_model():
    model, tok = tiny_model(40, DENSE_LEVELS)
    return model.eval(), tok


@pytest.fixture(scope="module")
def sparse_model():
    model, tok = tiny_model(30, SPARSE_LEVELS, seed=3)
    return model.eval(), tok


@pytest.fixture(scope="module")
def trunk_model():
    """An ID trunk (config.id_trunk): its code heads drive the search, the main backbone gives the vectors."""
    model, tok = tiny_model(30, SPARSE_LEVELS, seed=5, id_trunk=True)
    return model.eval(), tok


@pytest.fixture(scope="module")
def item_output_model():
    """Per-item output rows (config.item_output_embeddings), made non-zero: the search must add them as forward does."""
    model, tok = tiny_model(30, SPARSE_LEVELS, seed=4, item_output_embeddings=True)
    with torch.no_grad():
        model.item_output.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    return model.eval(), tok


@pytest.fixture(scope="module")
def trunk_item_output_model():
    """An ID trunk with per-item output rows (the trunk's), made non-zero: its heads and rows drive the search."""
    model, tok = tiny_model(30, SPARSE_LEVELS, seed=6, id_trunk=True, item_output_embeddings=True)
    with torch.no_grad():
        model.id_trunk.item_output.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(1))
    return model.eval(), tok


def valid_ids(model) -> set[tuple[int, ...]]:
    return {tuple(row) for row in model.item_codes.tolist()}


def item_with_prefix(model, prefix) -> int:
    for index, row in enumerate(model.item_codes.tolist()):
        if tuple(row[: len(prefix)]) == tuple(prefix):
            return index
    raise AssertionError(f"no item with prefix {prefix}")


def allowed_codes(model, prefix) -> list[int]:
    level = len(prefix)
    return sorted({row[level] for row in valid_ids(model) if row[:level] == tuple(prefix)})


def teacher_forced(model, tok, history: list[int], next_items: list[int]):
    """Full non-cached forward passes over `history + [item]` for each item; returns the model output."""
    batch = tok.encode_indices([history + [item] for item in next_items], max_history=len(history) + 1)
    with torch.no_grad():
        return model(**batch)


def masked_log_probs(logits: torch.Tensor, allowed: list[int]) -> torch.Tensor:
    mask = torch.full_like(logits, float("-inf"))
    mask[allowed] = 0.0
    return torch.log_softmax(logits + mask, dim=-1)


def brute_force_scores(model, tok, history: list[int]) -> dict[tuple[int, ...], tuple[float, torch.Tensor]]:
    """log P(ID | history) of every valid ID (prefix-masked softmax per level) and its dense vector, each from a
    full forward pass without KV cache."""
    ids = sorted(valid_ids(model))
    out = teacher_forced(model, tok, history, [item_with_prefix(model, code) for code in ids])
    result = {}
    for row, code in enumerate(ids):
        total = 0.0
        for level in range(len(code)):
            logits = out.sparse_logits[level][row, len(history) - 1]
            total += float(masked_log_probs(logits, allowed_codes(model, code[:level]))[code[level]])
        result[code] = (total, out.dense_predictions[row, len(history) - 1])
    return result


@pytest.mark.parametrize("which", ["dense_model", "sparse_model", "item_output_model"])
def test_no_invalid_id_and_real_items(which, request):
    model, tok = request.getfixturevalue(which)
    ids = valid_ids(model)
    histories = random_histories(model.config.num_items, 24, max_len=8, seed=7)
    batch = tok(histories)
    for beams, mode in ((1, "cobra"), (2, "sparse"), (5, "cobra"), (17, "no_fusion"), (64, "cobra")):
        out = model.generate(**batch, num_beams=beams, top_k=5, num_candidates=3, mode=mode)
        finite = torch.isfinite(out.beam_scores)
        assert finite[:, 0].all()
        assert model.id_index.is_valid(out.semantic_ids)[finite].all()
        for row_codes, row_finite in zip(out.semantic_ids.tolist(), finite.tolist()):
            alive = [tuple(c) for c, f in zip(row_codes, row_finite) if f]
            assert set(alive) <= ids
            assert len(set(alive)) == len(alive), "a beam appears twice"
        assert out.item_indices.shape == (24, 5)
        assert ((out.item_indices >= 0) & (out.item_indices < model.config.num_items)).all()
        for row in out.item_indices.tolist():
            assert len(set(row)) == 5
        assert (out.scores[:, :-1] >= out.scores[:, 1:]).all(), "items are not best first"


@pytest.mark.parametrize("which", ["dense_model", "sparse_model", "trunk_model", "item_output_model",
                                   "trunk_item_output_model"])
def test_exhaustive_beam_search_equals_brute_force(which, request):
    model, tok = request.getfixturevalue(which)
    num_ids = len(valid_ids(model))
    for history in ([3, 1, 4, 1, 5], [9], [2, 6, 5, 3, 5, 8, 9, 7]):
        exact = brute_force_scores(model, tok, history)
        ranking = sorted(exact, key=lambda code: -exact[code][0])
        out = model.generate(**tok.encode_indices([history]), num_beams=num_ids + 3, top_k=3)
        codes = [tuple(c) for c in out.semantic_ids[0, :num_ids].tolist()]
        assert codes == ranking
        expected_scores = torch.tensor([exact[c][0] for c in ranking])
        assert torch.allclose(out.beam_scores[0, :num_ids], expected_scores, atol=1e-5)
        # probabilities of all valid IDs sum to one (the masks make a proper distribution over valid IDs)
        assert abs(float(expected_scores.exp().sum()) - 1.0) < 1e-5
        assert torch.isinf(out.beam_scores[0, num_ids:]).all()
        # (c) each beam's dense vector equals the non-cached pass
        expected_vectors = torch.stack([exact[c][1] for c in ranking])
        assert torch.allclose(out.beam_vectors[0, :num_ids], expected_vectors, atol=1e-5)


@pytest.mark.parametrize("which", ["dense_model", "sparse_model"])
def test_partial_beam_search_keeps_best_prefixes(which, request):
    """With M beams, a standard beam search keeps the M best prefixes at each level: check it level by level."""
    model, tok = request.getfixturevalue(which)
    history, beams = [4, 2, 7], 4
    out = model.generate(**tok.encode_indices([history]), num_beams=beams, top_k=3)
    frontier = [((), 0.0)]
    for level in range(model.config.num_levels):
        expanded = []
        run = teacher_forced(model, tok, history, [item_with_prefix(model, prefix) for prefix, _ in frontier])
        for row, (prefix, score) in enumerate(frontier):
            log_probs = masked_log_probs(run.sparse_logits[level][row, len(history) - 1], allowed_codes(model, prefix))
            for code in allowed_codes(model, prefix):
                expanded.append((prefix + (code,), score + float(log_probs[code])))
        frontier = sorted(expanded, key=lambda pair: -pair[1])[:beams]
    assert [tuple(c) for c in out.semantic_ids[0].tolist()] == [p for p, _ in frontier]
    assert torch.allclose(out.beam_scores[0], torch.tensor([s for _, s in frontier]), atol=1e-5)


@pytest.mark.parametrize("which", ["dense_model", "sparse_model"])
def test_one_beam_is_greedy(which, request):
    model, tok = request.getfixturevalue(which)
    for history in ([1, 2, 3], [11], [5, 5, 6, 7, 20, 21]):
        prefix, total = (), 0.0
        for level in range(model.config.num_levels):
            run = teacher_forced(model, tok, history, [item_with_prefix(model, prefix)])
            log_probs = masked_log_probs(run.sparse_logits[level][0, len(history) - 1], allowed_codes(model, prefix))
            code = int(log_probs.argmax())
            prefix, total = prefix + (code,), total + float(log_probs[code])
        dense = teacher_forced(model, tok, history, [item_with_prefix(model, prefix)]).dense_predictions[0, -1]
        out = model.generate(**tok.encode_indices([history]), num_beams=1, top_k=4)
        assert tuple(out.semantic_ids[0, 0].tolist()) == prefix
        assert abs(float(out.beam_scores[0, 0]) - total) < 1e-5
        assert torch.allclose(out.beam_vectors[0, 0], dense, atol=1e-5)


def test_beam_fusion_hand_computed():
    tau, psi = 0.9, 16.0
    scores = torch.tensor([[-0.5, -1.2, float("-inf")]])
    cos = torch.tensor([[[0.9, 0.1], [0.3, -0.2], [0.5, 0.5]]])
    valid = torch.tensor([[[True, True], [True, False], [False, False]]])
    e0, e1 = math.exp(tau * -0.5), math.exp(tau * -1.2)
    w = [e0 / (e0 + e1), e1 / (e0 + e1), 0.0]
    a, b = math.exp(psi * 0.9), math.exp(psi * 0.1)
    expected = torch.tensor([[[w[0] * a / (a + b), w[0] * b / (a + b)], [w[1] * 1.0, 0.0], [0.0, 0.0]]])
    got = beam_fusion(scores, cos, valid, tau, psi)
    assert torch.allclose(got, expected, atol=1e-7)
    assert torch.isfinite(got).all()
    # an invalid candidate with a high cosine takes no weight from the valid ones
    cos2 = cos.clone()
    cos2[0, 1, 1] = 1.0
    assert torch.allclose(beam_fusion(scores, cos2, valid, tau, psi), expected, atol=1e-7)


def test_cobra_scores_are_beam_fusion(dense_model):
    """Recompute generate()'s "cobra" ranking from its own beams: Phi over the N nearest items of each beam's ID."""
    model, tok = dense_model
    history, beams, n = [1, 2, 3, 4], 6, 2
    out = model.generate(**tok.encode_indices([history]), num_beams=beams, num_candidates=n, top_k=5)
    catalog = torch.nn.functional.normalize(model.all_item_vectors(normalized=False), dim=-1)
    weights = torch.softmax(0.9 * out.beam_scores[0], 0)
    phi = {}
    for m in range(beams):
        members = [i for i, row in enumerate(model.item_codes.tolist()) if row == out.semantic_ids[0, m].tolist()]
        vector = torch.nn.functional.normalize(out.beam_vectors[0, m], dim=0)
        cos = torch.tensor([float(vector @ catalog[i]) for i in members])
        top = cos.argsort(descending=True)[:n]
        soft = torch.softmax(16.0 * cos[top], 0)
        for j, t in enumerate(top.tolist()):
            phi[members[t]] = float(weights[m] * soft[j])
    ranking = sorted(phi, key=lambda i: -phi[i])[:5]
    assert out.item_indices[0].tolist() == ranking
    assert torch.allclose(out.scores[0], torch.tensor([phi[i] for i in ranking]), atol=1e-6)


@pytest.mark.parametrize("mode", ["cobra", "sparse", "dense", "no_fusion"])
def test_modes_and_exclude_history(dense_model, mode):
    model, tok = dense_model
    histories = random_histories(40, 16, max_len=8, seed=11)
    batch = tok(histories)
    k = 7
    out = model.generate(**batch, num_beams=5, top_k=k, mode=mode, exclude_history=True)
    assert out.item_indices.shape == (16, k)
    for row, history in zip(out.item_indices.tolist(), histories):
        assert len(set(row)) == k and all(0 <= i < 40 for i in row)
        assert not set(row) & {int(h[1:]) for h in history}, "a history item was recommended"
    kept = model.generate(**batch, num_beams=5, top_k=k, mode=mode, exclude_history=False)
    assert ((kept.item_indices >= 0) & (kept.item_indices < 40)).all()
    if mode in ("sparse", "no_fusion"):
        # the first item belongs to the best beam's ID
        first = model.item_codes[kept.item_indices[:, 0]]
        assert torch.equal(first, kept.semantic_ids[:, 0])


def test_top_k_larger_than_catalog(dense_model):
    model, tok = dense_model
    with pytest.raises(ValueError, match="top_k"):
        model.generate(**tok([["i1"]]), top_k=41)
    out = model.generate(**tok([["i1"]]), top_k=40, num_beams=3)
    assert sorted(out.item_indices[0].tolist()) == list(range(40))


@pytest.mark.parametrize("mode", ["cobra", "no_fusion", "sparse"])
def test_fewer_beams_than_k_tops_up(dense_model, mode):
    model, tok = dense_model
    out = model.generate(**tok([["i1", "i2"], ["i5"]]), num_beams=1, num_candidates=1, top_k=12, mode=mode)
    for row, scores in zip(out.item_indices.tolist(), out.scores):
        assert len(set(row)) == 12 and min(row) >= 0
        assert torch.isfinite(scores).all() and (scores[:-1] >= scores[1:]).all()
    # top-up items score in [-2, -1], below every beam candidate
    assert (out.scores[:, -1] >= -2.0).all() and (out.scores[:, -1] <= -1.0).all()


def test_bad_generation_arguments(dense_model):
    model, tok = dense_model
    batch = tok([["i1"]])
    for kwargs, field in (({"num_beams": 0}, "num_beams"), ({"mode": "fancy"}, "mode"), ({"do_sample": True}, "do_sample"),
                          ({"temperature": 0.5}, "temperature"), ({"num_candidates": 0}, "num_candidates")):
        with pytest.raises(ValueError, match=field):
            model.generate(**batch, **kwargs)


def test_batch_sizes_padding_and_determinism(dense_model):
    model, tok = dense_model
    histories = random_histories(40, 1024, max_len=8, seed=5)
    batch = tok(histories)
    big = model.generate(**batch, num_beams=4, top_k=5)
    assert big.item_indices.shape == (1024, 5)
    assert ((big.item_indices >= 0) & (big.item_indices < 40)).all()
    small = tok(histories[:64])
    once, again = (model.generate(**small, num_beams=4, top_k=5) for _ in range(2))
    assert torch.equal(once.item_indices, again.item_indices) and torch.equal(once.scores, again.scores)
    assert torch.equal(once.item_indices, big.item_indices[:64])
    for row in (0, 17, 1023):  # alone (batch of 1, no padding) gives the same
        alone = model.generate(**tok([histories[row]]), num_beams=4, top_k=5)
        assert torch.equal(alone.item_indices[0], big.item_indices[row])
        assert torch.allclose(alone.scores[0], big.scores[row], atol=1e-5)
        assert torch.equal(alone.semantic_ids[0], big.semantic_ids[row])


def test_generate_refuses_train_mode():
    model, tok = tiny_model(40, DENSE_LEVELS)
    model.train()
    with pytest.raises(RuntimeError, match="eval"):
        model.generate(**tok([["i1"]]), top_k=3)


def test_generation_config_defaults_used(dense_model):
    model, tok = dense_model
    assert model.generation_config.do_sample is False
    out = model.generate(**tok([["i1", "i2"]]))
    assert out.item_indices.shape == (1, model.generation_config.recommend_top_k)
    assert out.semantic_ids.shape[1] == model.generation_config.num_beams


def test_generation_config_agrees_with_tokenizer_special_tokens(dense_model):
    """The Trainer aligns the configs with the tokenizer's special tokens, and warns, when they differ: they must not."""
    from transformers.trainer_utils import align_special_tokens

    model, tok = dense_model
    assert model.generation_config.pad_token_id == model.config.pad_token_id == tok.pad_token_id
    before = (model.config.to_dict(), model.generation_config.to_dict())
    align_special_tokens(model, tok)
    assert (model.config.to_dict(), model.generation_config.to_dict()) == before


def test_set_generation_defaults_are_checked_used_and_saved(tmp_path):
    model, tok = tiny_model(40, DENSE_LEVELS)
    model.eval()
    batch = tok(random_histories(40, 6, seed=9))
    tuned = dict(beam_fusion="joint", dense_guided_ids=5, beam_fusion_tau=0.2, beam_fusion_psi=2.0,
                 beam_fusion_dense_psi=8.0, num_beams=3, top_k=4)
    expected = model.generate(**batch, **tuned)
    before = model.generation_config.to_dict()
    with pytest.raises(ValueError, match="num_beams"):
        model.set_generation_defaults(beam_fusion="joint", num_beams=0)
    assert model.generation_config.to_dict() == before  # a refused setting changes nothing
    model.set_generation_defaults(**tuned)
    assert (model.generation_config.beam_fusion, model.generation_config.recommend_top_k) == ("joint", 4)
    assert model.generation_config.recommend_mode == "cobra"  # not given: kept
    plain = model.generate(**batch)
    assert torch.equal(plain.item_indices, expected.item_indices) and torch.equal(plain.scores, expected.scores)
    model.save_pretrained(tmp_path / "tuned")
    loaded = type(model).from_pretrained(tmp_path / "tuned").eval()
    assert loaded.generation_config.dense_guided_ids == 5 and loaded.generation_config.num_beams == 3
    again = loaded.generate(**batch)
    assert torch.equal(again.item_indices, expected.item_indices)


def test_a_partial_generation_config_takes_the_rest_from_the_model(tmp_path):
    """generate(generation_config=G) and from_pretrained(generation_config=G) with G setting only some fields (as
    transformers 5 reads them): generate fills the unset ones from the model's own decoding, from_pretrained from the
    defaults, and neither crashes on transformers' None; G.top_k (sampling's) is refused, naming recommend_top_k."""
    from transformers import GenerationConfig

    model, tok = tiny_model(40, DENSE_LEVELS)
    model.eval().set_generation_defaults(beam_fusion="joint", dense_guided_ids=5, num_beams=3, top_k=4)
    batch = tok(random_histories(40, 6, seed=9))
    for given, same_as in ((GenerationConfig(), {}), (GenerationConfig(num_candidates=2), {"num_candidates": 2}),
                           (GenerationConfig(recommend_top_k=6, num_beams=None), {"top_k": 6})):
        got, expected = model.generate(**batch, generation_config=given), model.generate(**batch, **same_as)
        assert torch.equal(got.item_indices, expected.item_indices) and torch.equal(got.scores, expected.scores)
    with pytest.raises(ValueError, match="^generation_config.top_k is transformers' sampling setting.*recommend_top_k"):
        model.generate(**batch, generation_config=GenerationConfig(top_k=5))
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path, generation_config=GenerationConfig(recommend_top_k=3))
    assert loaded.generation_config.recommend_top_k == 3 and loaded.generation_config.num_beams == 20


@pytest.mark.parametrize("mode", ["cobra", "dense", "no_fusion"])
def test_faiss_matches_torch(dense_model, mode):
    pytest.importorskip("faiss")
    model, tok = dense_model
    batch = tok(random_histories(40, 12, max_len=6, seed=2))
    for kwargs in ({"num_beams": 5, "top_k": 6}, {"num_beams": 1, "num_candidates": 1, "top_k": 9}):
        a = model.generate(**batch, mode=mode, use_faiss=False, exclude_history=True, **kwargs)
        b = model.generate(**batch, mode=mode, use_faiss=True, exclude_history=True, **kwargs)
        assert torch.equal(a.item_indices, b.item_indices)
        assert torch.allclose(a.scores, b.scores, atol=1e-5)


def test_load_state_dict_refreshes_cached_catalog():
    """generate() caches item vectors and the ID index; loading other weights/codes in eval mode must not reuse them."""
    model, tok = tiny_model(40, DENSE_LEVELS)
    other, _ = tiny_model(40, DENSE_LEVELS, seed=4)  # other weights AND other item codes
    model.eval(), other.eval()
    batch = tok([["i1", "i2"]])
    model.generate(**batch, num_beams=3, top_k=5)  # fills the caches
    model.load_state_dict(other.state_dict())
    assert torch.equal(model.all_item_vectors(), other.all_item_vectors())
    assert torch.equal(model.id_index.sorted_item_keys, other.id_index.sorted_item_keys)


@pytest.mark.parametrize("which", ["dense_model", "sparse_model"])
def test_dense_guided_ids_are_scored_exactly_and_never_twice(which, request):
    model, tok = request.getfixturevalue(which)
    history = [3, 1, 4, 1, 5]
    exact = brute_force_scores(model, tok, history)
    batch = tok.encode_indices([history])
    beams, guided = 3, 6
    out = model.generate(**batch, num_beams=beams, dense_guided_ids=guided, top_k=5)
    assert out.semantic_ids.shape[1] == beams + guided
    # the guided rows are the IDs of the items nearest to the ID-free dense prediction, in that order
    item_mask = batch["attention_mask"].view(1, -1, len(model.config.level_sizes))[..., 0].bool()
    last, _ = model.prefill(batch["input_ids"], item_mask, batch["item_index"])
    query = F.normalize(model.history_dense_head(last), dim=-1)
    nearest = (query @ model.all_item_vectors().T).topk(guided, dim=-1).indices[0]
    assert torch.equal(out.semantic_ids[0, beams:], model.item_codes[nearest])
    seen = [tuple(c) for c in out.semantic_ids[0, :beams].tolist()]
    for row in range(beams, beams + guided):
        code = tuple(out.semantic_ids[0, row].tolist())
        if code in seen:  # already a beam or an earlier guided row: dropped
            assert out.beam_scores[0, row] == float("-inf")
        else:
            assert abs(float(out.beam_scores[0, row]) - exact[code][0]) < 1e-5
            assert torch.allclose(out.beam_vectors[0, row], exact[code][1], atol=1e-5)
        seen.append(code)
    assert len(set(out.item_indices[0].tolist())) == 5 and (out.item_indices >= 0).all()
    # with no guided IDs the output is the paper's decoding, unchanged
    plain = model.generate(**batch, num_beams=beams, top_k=5)
    assert torch.equal(plain.semantic_ids, out.semantic_ids[:, :beams])
    with pytest.raises(ValueError, match="dense_guided_ids"):
        model.generate(**batch, dense_guided_ids=-1)


def test_generation_config_file_errors_name_the_file(tmp_path):
    model, _ = tiny_model(40, DENSE_LEVELS)
    model.save_pretrained(tmp_path / "old")
    (tmp_path / "old" / "generation_config.json").unlink()  # a checkpoint from before the file: defaults
    assert type(model).from_pretrained(tmp_path / "old").generation_config.beam_fusion == "paper"
    model.save_pretrained(tmp_path / "bad")
    path = tmp_path / "bad" / "generation_config.json"
    path.write_text(path.read_text().replace('"num_beams": 20', '"num_beams": -3'))
    with pytest.raises(ValueError, match="generation_config.json.*num_beams"):
        type(model).from_pretrained(tmp_path / "bad")
    path.write_text("{ not json")
    with pytest.raises(ValueError, match="generation_config.json"):
        type(model).from_pretrained(tmp_path / "bad")


@pytest.mark.parametrize("name,value", [("tokenizer", object()), ("return_dict_in_generate", True),
                                        ("max_new_tokens", 3)])
def test_transformers_arguments_that_would_do_nothing_are_refused(dense_model, name, value):
    """transformers' generate takes these; COBRA's would ignore them, so it refuses them in one line naming them."""
    model, tok = dense_model
    with pytest.raises(ValueError, match=rf"^generate\(\) does not take {name}: ") as err:
        model.eval().generate(**tok([["i1", "i2"]]), **{name: value})
    assert "\n" not in str(err.value)


def test_unknown_arguments_and_top_k_errors_use_the_argument_names(dense_model):
    model, tok = dense_model
    batch = tok([["i1", "i2"]])
    with pytest.raises(ValueError, match=r"unknown arguments \['temperature'\]; it takes .*'mode'.*'top_k'"):
        model.eval().generate(**batch, temperature=0.7)
    with pytest.raises(ValueError, match="^top_k must be at least 1"):
        model.generate(**batch, top_k=0)
