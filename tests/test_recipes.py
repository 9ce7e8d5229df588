"""Training recipes (`cobra-hf train --recipe`): the registry, the precedence of recipe < --model_config < model
flags and recipe < TrainingArguments flags, recipe files and their one-line errors, `--recipe none` as the bare
defaults, the recipe recorded in training_summary.json, and decoding defaults picked on validation at the end of
training (recorded, saved in generation_config.json, skipped when --generation is given)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from cobra_hf import CobraConfig
from cobra_hf.cli.main import main as cli_main
from cobra_hf.cobra_generation import DEFAULT_GENERATION, SETTING_NAMES
from cobra_hf.training.decoding_selection import (NEEDS_HEAD, plan_decoding, recipe_generation, select_decoding,
                                                  skip_reason)
from cobra_hf.training.recipes import RECIPES, Recipe, check_recipe, load_recipe, model_settings
from cobra_hf.training.train import parse_args

sys.path.insert(0, os.path.dirname(__file__))
from test_training_safety import _catalog  # noqa: E402  (a hand-written 40-item catalog with sentence embeddings)
from tiny import tiny_model  # noqa: E402

sys.path.pop(0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = ["--hidden_size", "32", "--num_attention_heads", "2", "--intermediate_size", "64", "--per_device_train_batch_size",
        "8", "--use_cpu", "True", "--seed", "0", "--eval_strategy", "no", "--save_strategy", "no", "--max_steps", "2",
        "--init_text_embeddings", "False", "--disable_tqdm", "True", "--report_to", "none"]
BASE = ["--catalog", "c", "--output_dir", "o"]
POINT_A = {"beam_fusion": "joint", "beam_fusion_tau": 0.2, "beam_fusion_psi": 4.0, "num_beams": 4}
POINT_B = {"beam_fusion": "paper", "beam_fusion_tau": 0.9, "beam_fusion_psi": 16.0, "num_beams": 6}


def _write_recipe(folder: Path, **content) -> str:
    path = folder / "mine.json"
    path.write_text(json.dumps(content))
    return str(path)


def _train_with(tmp_path: Path, capsys, *flags: str) -> tuple[Path, Path, dict]:
    """`cobra-hf train` on the tiny catalog with TINY and `flags`: (catalog, output folder, training_summary.json)."""
    catalog = _catalog(tmp_path / "cat")
    out = tmp_path / "model"
    assert cli_main(["train", "--catalog", str(catalog), "--output_dir", str(out), *TINY, *flags]) == 0
    capsys.readouterr()
    return catalog, out, json.loads((out / "training_summary.json").read_text())


def _saved_generation(folder: Path) -> dict:
    saved = json.loads((folder / "generation_config.json").read_text())
    return {SETTING_NAMES.get(name, name): saved.get(name, default) for name, default in DEFAULT_GENERATION.items()}


# ------------------------------------------------------------------------------------------------ registry
def test_registry_holds_the_papers_recipe_and_the_joint_one():
    for recipe in RECIPES.values():
        check_recipe(recipe)  # every key is a field its layer knows
    paper = RECIPES["paper"]
    assert {key: paper.model[key] for key in ("sparse_loss_weight", "dense_loss_weight", "use_item_embeddings",
                                              "text_embedding_dim", "history_dense_loss_weight",
                                              "dense_logq_correction", "item_deletion")} == {
        "sparse_loss_weight": 1.0, "dense_loss_weight": 1.0, "use_item_embeddings": False, "text_embedding_dim": 0,
        "history_dense_loss_weight": 0.0, "dense_logq_correction": False, "item_deletion": 0.0}
    assert (paper.model["encoder_layers"], paper.model["decoder_layers"]) == (1, 2)  # the paper's public-data model
    assert paper.generation["beam_fusion"] == "paper"
    assert (paper.generation["beam_fusion_tau"], paper.generation["beam_fusion_psi"]) == (0.9, 16.0)
    assert paper.decoding_grid == () and paper.training == {}

    joint = RECIPES["joint"]
    assert joint.model["history_dense_loss_weight"] == 2.0 and joint.model["text_embedding_dim"] == -1
    assert joint.training == {"num_train_epochs": 32, "learning_rate": 2e-3}
    assert joint.generation["beam_fusion"] == "joint" and joint.generation["dense_guided_ids"] == 50
    assert 4 <= len(joint.decoding_grid) + 1 <= 6 and joint.generation not in joint.decoding_grid
    assert any(point["beam_fusion"] == "paper" and point["beam_fusion_tau"] == 0.9 for point in joint.decoding_grid)
    assert load_recipe(None) is RECIPES["trunk"] and load_recipe("none") is None and load_recipe("paper") is paper

    ids = RECIPES["ids"]  # the README's ID-only row: the code loss alone, decoded as IDs
    assert ids.model["dense_loss_weight"] == 0 and ids.model["history_dense_loss_weight"] == 0
    assert ids.model["item_output_embeddings"] is True and ids.model["dropout"] == 0.2
    assert ids.generation["mode"] == "sparse" and ids.decoding_grid == ()


# ------------------------------------------------------------------------------------------------ precedence
def test_training_settings_defaults_then_recipe_then_command_line():
    _, args = parse_args(BASE)  # the CLI's default recipe is trunk
    assert (args.num_train_epochs, args.learning_rate) == (16, 2e-3)
    assert args.weight_decay == 0.01 and args.lr_scheduler_type.value == "cosine"  # TRAINING_DEFAULTS stay under it
    _, args = parse_args([*BASE, "--recipe", "joint"])
    assert (args.num_train_epochs, args.learning_rate) == (32, 2e-3)
    _, args = parse_args([*BASE, "--num_train_epochs", "3"])
    assert (args.num_train_epochs, args.learning_rate) == (3, 2e-3)
    _, args = parse_args([*BASE, "--learning_rate=5e-4", "--recipe", "joint"])
    assert (args.num_train_epochs, args.learning_rate) == (32, 5e-4)
    for name in ("none", "paper"):  # no training settings: TRAINING_DEFAULTS
        _, args = parse_args([*BASE, "--recipe", name])
        assert (args.num_train_epochs, args.learning_rate) == (10, 1e-3)


def test_model_settings_recipe_then_model_config_then_flags():
    cobra_args, _ = parse_args([*BASE, "--model_config", '{"item_deletion": 0.1, "contrastive_temperature": 0.5}',
                                "--contrastive_temperature", "0.3"])
    settings = model_settings(load_recipe(cobra_args.recipe), cobra_args.model_overrides)
    assert settings == {**RECIPES["trunk"].model, "item_deletion": 0.1, "contrastive_temperature": 0.3}
    cobra_args, _ = parse_args([*BASE, "--recipe", "none", "--hidden_size", "64"])
    assert model_settings(load_recipe(cobra_args.recipe), cobra_args.model_overrides) == {"hidden_size": 64}
    # the alias of text_embedding_dim in a recipe, overridden by the flag
    alias = Recipe("a", model={"use_text_embeddings": True, "item_deletion": 0.1})
    assert model_settings(alias, {"text_embedding_dim": 0}) == {"text_embedding_dim": 0, "item_deletion": 0.1}


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("content, named", [
    ({"model": {"num_items": 3}}, "model key 'num_items'"),
    ({"model": {"hiden_size": 3}}, "model key 'hiden_size'"),
    ({"training": {"epochs": 3}}, "training key 'epochs'"),
    ({"generation": {"beams": 3}}, "generation key 'beams'"),
    ({"decoding_grid": [{"tau": 0.1}]}, "decoding_grid[0] key 'tau'"),
    ({"decoding_grid": {"tau": 0.1}}, "decoding_grid must be a list"),
    ({"models": {}}, "unknown key 'models'"),
    ([1, 2], "a JSON object"),
])
def test_bad_recipe_files_are_one_line_errors(tmp_path, content, named):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as caught:
        parse_args([*BASE, "--recipe", str(path)])
    message = str(caught.value)
    assert message.startswith(f"--recipe {path}: ") and named in message and "\n" not in message
    assert "known recipes: paper, joint, trunk, ids, none" in message


def test_unknown_recipe_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^--recipe fancy: unknown recipe; known recipes: paper, joint, trunk, ids, none"):
        parse_args([*BASE, "--recipe", "fancy"])
    with pytest.raises(ValueError, match="no such file"):
        parse_args([*BASE, "--recipe", str(tmp_path / "missing.json")])
    (tmp_path / "broken.json").write_text("{nope")
    with pytest.raises(ValueError, match="not JSON"):
        parse_args([*BASE, "--recipe", str(tmp_path / "broken.json")])
    assert cli_main(["train", *BASE, "--recipe", "fancy"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1 and "--recipe fancy" in err[0] and "joint" in err[0]


def test_a_recipe_file_sets_all_three_layers(tmp_path):
    path = _write_recipe(tmp_path, description="mine", model={"item_deletion": 0.3, "use_item_embeddings": True},
                         training={"learning_rate": 5e-3, "warmup_steps": 3}, generation={"num_beams": 7},
                         decoding_grid=[POINT_A])
    recipe = load_recipe(path)
    assert recipe == Recipe("mine", "mine", {"item_deletion": 0.3, "use_item_embeddings": True},
                            {"learning_rate": 5e-3, "warmup_steps": 3}, {"num_beams": 7}, (POINT_A,))
    cobra_args, args = parse_args([*BASE, "--recipe", path, "--warmup_steps", "5"])
    assert (args.learning_rate, args.warmup_steps, args.num_train_epochs) == (5e-3, 5, 10)
    assert model_settings(recipe, cobra_args.model_overrides) == {"item_deletion": 0.3, "use_item_embeddings": True}


# ------------------------------------------------------------------------------------------------ selection logic
def test_selection_picks_the_best_recall_first_on_ties_and_sets_the_defaults(monkeypatch):
    import cobra_hf.training.decoding_selection as selection

    model, tokenizer = tiny_model()
    recipe = Recipe("r", generation={"num_beams": 3}, decoding_grid=(POINT_A, POINT_B, {"num_beams": 5}))
    assert recipe_generation(model, recipe) == ({"num_beams": 3}, None)
    model.set_generation_defaults(num_beams=3)
    plan = plan_decoding(model, recipe, None)
    recalls = {3: 0.1, 4: 0.3, 6: 0.3, 5: 0.2}  # by num_beams: grid[0] and grid[1] tie, the earlier one wins

    def fake(model_, tokenizer_, split, show_progress, ks, **settings):
        assert ks == (5, 10) and not show_progress
        return {"recall@10": recalls[settings["num_beams"]], "ndcg@10": 0.0, "users": len(split)}

    monkeypatch.setattr(selection, "evaluate_split", fake)
    record = select_decoding(model, tokenizer, list(range(7)), plan)
    assert record["chosen"] == "grid[0]" and record["chosen_settings"] == POINT_A
    assert record["users"] == 7 and record["metric"] == "recall@10"
    assert [point["recall@10"] for point in record["points"]] == [0.1, 0.3, 0.3, 0.2]
    assert model.generation_config.num_beams == 4 and model.generation_config.beam_fusion == "joint"
    assert model.generation_config.beam_fusion_tau == 0.2


def test_a_point_with_a_small_top_k_is_scored_at_10_and_keeps_its_top_k_as_the_default():
    """A recipe's generation top_k of 5 (or a grid point's) used to reach evaluation, which cannot give Recall@10: the
    run failed after training, before the model was saved."""
    model, tokenizer = tiny_model()
    model.eval()
    recipe = Recipe("r", generation={"num_beams": 3, "top_k": 5}, decoding_grid=({"num_beams": 4, "top_k": 5},))
    model.set_generation_defaults(num_beams=3, top_k=5)
    plan = plan_decoding(model, recipe, None)
    histories = [[1, 2, 3], [4, 5], [6, 7, 8], [2, 9]]
    validation = {"history_index": histories, "target_index": [4, 6, 9, 3]}
    record = select_decoding(model, tokenizer, validation, plan)
    assert all("recall@10" in point for point in record["points"])
    assert model.generation_config.recommend_top_k == 5  # the chosen point's own top_k stays the default


def test_points_that_need_the_dense_head_are_skipped_without_it():
    model, _ = tiny_model(history_dense_loss_weight=0.0)
    joint = RECIPES["joint"]
    settings, note = recipe_generation(model, joint)  # joint fusion + guided IDs need the head: not used, said why
    assert settings == {} and note and NEEDS_HEAD in note
    plan = plan_decoding(model, joint, note)
    assert plan[0] == {"name": "recipe", "settings": {}}
    assert [entry.get("skipped") for entry in plan[1:-1]] == [NEEDS_HEAD] * (len(plan) - 2)
    # the paper point decodes exactly as this model's defaults (the paper's): evaluated once
    assert plan[-1]["skipped"] == "decodes exactly as recipe"
    with pytest.raises(ValueError, match=r"^--recipe r: decoding_grid point grid\[0\]: num_beams"):
        plan_decoding(model, Recipe("r", decoding_grid=({"num_beams": 0},)), None)


def test_skip_reasons():
    grid = Recipe("g", decoding_grid=(POINT_A,))
    assert skip_reason(grid, True, False, 8) is None and skip_reason(grid, True, False, None) is None
    assert "--recipe none" in skip_reason(None, True, False, 8)
    assert "no decoding_grid" in skip_reason(RECIPES["paper"], True, False, 8)
    assert "--select_decoding False" in skip_reason(grid, False, False, 8)
    assert "--generation" in skip_reason(grid, True, True, 8)
    assert "--eval_users 0" in skip_reason(grid, True, False, 0)
    assert parse_args(BASE)[0].select_decoding is True
    assert parse_args([*BASE, "--select_decoding", "False"])[0].select_decoding is False


# ------------------------------------------------------------------------------------------------ training
def test_training_selects_decoding_on_validation_and_records_the_recipe(tmp_path, capsys, caplog):
    from cobra_hf.evaluation import evaluate_split, sample_split
    from cobra_hf.inference import load_checkpoint
    from cobra_hf.training import index_splits

    catalog = _catalog(tmp_path / "cat")
    recipe = _write_recipe(tmp_path, name="two", model={"history_dense_loss_weight": 0.5, "item_deletion": 0.1},
                           training={"learning_rate": 3e-3}, generation={"num_beams": 5},
                           decoding_grid=[POINT_A, POINT_B])
    out = tmp_path / "model"
    assert cli_main(["train", "--catalog", str(catalog), "--output_dir", str(out), *TINY, "--recipe", recipe,
                     "--eval_users", "12", "--item_deletion", "0.05"]) == 0
    captured = capsys.readouterr()
    assert "decoding picked on 12 validation users" in captured.err
    summary = json.loads((out / "training_summary.json").read_text())
    selection = summary["decoding_selection"]
    assert selection["users"] == 12 and selection["metric"] == "recall@10"
    assert [point["name"] for point in selection["points"]] == ["recipe", "grid[0]", "grid[1]"]
    assert [point["settings"] for point in selection["points"]] == [{"num_beams": 5}, POINT_A, POINT_B]
    best = max(point["recall@10"] for point in selection["points"])
    first_best = next(point for point in selection["points"] if point["recall@10"] == best)
    assert selection["chosen"] == first_best["name"] and selection["chosen_settings"] == first_best["settings"]
    saved = _saved_generation(out)
    assert {key: saved[key] for key in selection["chosen_settings"]} == selection["chosen_settings"]

    # the recorded metrics are the validation users' real numbers, under each point's settings
    model, tokenizer = load_checkpoint(str(out))
    users = sample_split(index_splits(str(tmp_path / "cat" / "data"), tokenizer, max_history=8)["validation"], 12)
    defaults = {SETTING_NAMES.get(name, name): value for name, value in DEFAULT_GENERATION.items()}
    for point in selection["points"]:  # each point applies over the recipe's generation (num_beams 5)
        settings = {**defaults, "num_beams": 5, **point["settings"]}
        again = evaluate_split(model, tokenizer, users, show_progress=False, **settings)
        assert point["recall@10"] == pytest.approx(again["recall@10"]) and point["ndcg@5"] == pytest.approx(again["ndcg@5"])

    record = summary["recipe"]
    assert record["name"] == "two" and record["decoding_grid"] == [POINT_A, POINT_B]
    assert record["model"]["history_dense_loss_weight"] == 0.5 and record["model"]["item_deletion"] == 0.05  # flag wins
    assert record["model"]["hidden_size"] == 32 and record["model"]["use_item_embeddings"] is False
    assert record["training"]["learning_rate"] == 3e-3 and record["training"]["max_steps"] == 2
    assert record["generation"] == saved
    assert model.config.item_deletion == 0.05 and model.config.history_dense_loss_weight == 0.5
    assert "recipe (`cobra-hf train --recipe`) | two" in (out / "README.md").read_text()

    # --init_from with an explicit --recipe: its model settings are not applied, and the run says so
    tuned = tmp_path / "tuned"
    with caplog.at_level(logging.WARNING, logger="cobra_hf.training.train"):
        assert cli_main(["train", "--catalog", str(catalog), "--init_from", str(out), "--output_dir", str(tuned),
                         *TINY[8:], "--per_device_train_batch_size", "8", "--eval_users", "0", "--recipe", "paper"]) == 0
    capsys.readouterr()
    assert any("do not apply with --init_from" in message for message in caplog.messages)
    tuned_summary = json.loads((tuned / "training_summary.json").read_text())
    assert tuned_summary["recipe"]["model"]["history_dense_loss_weight"] == 0.5  # the checkpoint's config
    assert "--init_from" in tuned_summary["recipe"]["model_note"]
    assert _saved_generation(tuned)["num_beams"] == 20  # the recipe's generation still applies


def test_generation_flag_wins_over_the_recipe_and_skips_selection(tmp_path, capsys):
    catalog = _catalog(tmp_path / "cat")
    recipe = _write_recipe(tmp_path, model={"history_dense_loss_weight": 0.5},
                           generation={"num_beams": 5, "beam_fusion": "joint", "beam_fusion_tau": 0.3},
                           decoding_grid=[POINT_A, POINT_B])
    out = tmp_path / "model"
    assert cli_main(["train", "--catalog", str(catalog), "--output_dir", str(out), *TINY, "--recipe", recipe,
                     "--eval_users", "12", "--generation", '{"num_beams": 3}']) == 0
    capsys.readouterr()
    summary = json.loads((out / "training_summary.json").read_text())
    assert "--generation" in summary["decoding_selection"]["skipped"] and "chosen" not in summary["decoding_selection"]
    saved = _saved_generation(out)
    assert (saved["num_beams"], saved["beam_fusion"], saved["beam_fusion_tau"]) == (3, "joint", 0.3)


def test_recipe_none_trains_with_the_bare_defaults(tmp_path, capsys):
    from cobra_hf.training import build_model

    catalog, out, summary = _train_with(tmp_path, capsys, "--recipe", "none", "--eval_users", "12")
    assert summary["recipe"] is None and "--recipe none" in summary["decoding_selection"]["skipped"]
    assert _saved_generation(out) == {SETTING_NAMES.get(name, name): value for name, value in DEFAULT_GENERATION.items()}
    # the Python API's model with the same flags: the same config
    expected, _ = build_model(catalog, init_text_embeddings=False, hidden_size=32, num_attention_heads=2,
                              intermediate_size=64)
    saved = CobraConfig.from_pretrained(out).to_dict()
    for key, value in expected.config.to_dict().items():
        if key not in ("transformers_version", "architectures", "auto_map", "dtype", "torch_dtype"):
            assert saved[key] == value, key
    assert "recipe (`cobra-hf train" not in (out / "README.md").read_text()


def test_joint_recipe_without_the_dense_head_keeps_the_models_decoding(tmp_path, capsys):
    """--history_dense_loss_weight 0 under the joint recipe: its joint decoding needs the head, so it is not used
    (said in the record) and only the grid points that fit are tried."""
    catalog = _catalog(tmp_path / "cat")
    out = tmp_path / "model"
    assert cli_main(["train", "--catalog", str(catalog), "--output_dir", str(out), *TINY, "--eval_users", "12",
                     "--history_dense_loss_weight", "0", "--recipe", "joint"]) == 0
    capsys.readouterr()
    summary = json.loads((out / "training_summary.json").read_text())
    assert NEEDS_HEAD in summary["recipe"]["generation_note"] and summary["recipe"]["name"] == "joint"
    points = summary["decoding_selection"]["points"]
    assert [point.get("skipped") for point in points[1:-1]] == [NEEDS_HEAD] * (len(points) - 2)
    assert summary["decoding_selection"]["chosen"] == "recipe" and "recall@10" in points[0]
    assert _saved_generation(out)["beam_fusion"] == "paper" and _saved_generation(out)["dense_guided_ids"] == 0


def test_ids_recipe_trains_an_id_only_model_that_decodes_ids(tmp_path, capsys):
    from cobra_hf.evaluation import evaluate_split, sample_split
    from cobra_hf.inference import load_checkpoint
    from cobra_hf.training import index_splits

    _, out, summary = _train_with(tmp_path, capsys, "--recipe", "ids", "--eval_users", "12")
    assert summary["recipe"]["name"] == "ids" and "no decoding_grid" in summary["decoding_selection"]["skipped"]
    model, tokenizer = load_checkpoint(str(out))
    config = model.config
    assert (config.dense_loss_weight, config.history_dense_loss_weight, config.dropout) == (0.0, 0.0, 0.2)
    assert config.item_output_embeddings and config.item_output_weight_decay == 1.0
    assert model.item_output_table is not None
    assert (_saved_generation(out)["mode"], _saved_generation(out)["num_beams"]) == ("sparse", 20)
    # the checkpoint's defaults decode IDs: the same numbers as sparse mode asked for by name
    users = sample_split(index_splits(str(tmp_path / "cat" / "data"), tokenizer, max_history=8)["validation"], 12)
    default, sparse = (evaluate_split(model, tokenizer, users, show_progress=False, **mode)
                       for mode in ({}, {"mode": "sparse"}))
    assert {k: v for k, v in default.items() if "@" in k} == {k: v for k, v in sparse.items() if "@" in k}
    assert default["mode"] == "sparse"
