"""The ID trunk's own phase at the end of `cobra-hf train` (`--recipe trunk`, `--id_trunk_epochs`): one command is
bit-identical to the two it replaces (a run, then `--init_from RUN --train_only id_trunk`), a run killed in either
phase resumes to the same model, and what cannot work is refused in one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from cobra_hf.cli.main import main as cli_main
from cobra_hf.training.id_trunk_phase import PHASE_DIR, default_phase, phase_arguments, phase_settings, resume_points
from cobra_hf.training.recipes import RECIPES, load_recipe, recipe_from_dict

# no validation (eval_users 0 also skips the recipe's decoding selection): the tests compare weights; the phase
# comes from --id_trunk True and --id_trunk_epochs over the joint recipe, whatever the CLI's default is
BASE = ["--use_cpu", "True", "--disable_tqdm", "True", "--report_to", "none", "--seed", "0",
        "--per_device_train_batch_size", "16", "--num_train_epochs", "1"]
RUN = [*BASE, "--eval_strategy", "no", "--eval_users", "0", "--recipe", "joint"]
TINY_MODEL = ["--hidden_size", "32", "--num_attention_heads", "2", "--intermediate_size", "64"]


def _weights(folder) -> dict:
    return load_file(str(folder / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_one_command_equals_the_two_it_replaces(catalog_scientific, tmp_path, one_torch_thread):
    """--id_trunk_epochs 1 after one main epoch == a main run, then --init_from it --train_only id_trunk for one
    epoch: every saved tensor equal, and only the trunk moved in the second phase."""
    model = ["--id_trunk", "True", *TINY_MODEL]
    one = tmp_path / "one"
    assert cli_main(["train", "--catalog", str(catalog_scientific), "--output_dir", str(one), *RUN, *model,
                     "--save_strategy", "no", "--id_trunk_epochs", "1"]) == 0
    first, second = tmp_path / "first", tmp_path / "second"
    assert cli_main(["train", "--catalog", str(catalog_scientific), "--output_dir", str(first), *RUN, *model,
                     "--save_strategy", "no"]) == 0
    assert cli_main(["train", "--catalog", str(catalog_scientific), "--output_dir", str(second), *RUN,
                     "--save_strategy", "no", "--init_from", str(first), "--train_only", "id_trunk"]) == 0
    assert _same(_weights(one), _weights(second))
    moved = {name for name, value in _weights(second).items() if not torch.equal(value, _weights(first)[name])}
    assert moved and all(name.startswith("id_trunk.") for name in moved)
    summary = json.loads((one / "training_summary.json").read_text())
    phase = summary["id_trunk_phase"]
    assert phase["global_step"] == json.loads((second / "training_summary.json").read_text())["global_step"] > 0
    assert phase["num_train_epochs"] == 1 and summary["recipe"]["id_trunk_phase"] == {"num_train_epochs": 1.0}


def test_a_run_killed_in_either_phase_resumes_to_the_same_model(catalog_scientific, tmp_path, capsys,
                                                                 one_torch_thread):
    """Killed after the main phase (its last checkpoint whole, nothing of the trunk's phase): `last` loads the main
    phase's weights and trains only the trunk's phase. Killed inside the trunk's phase: `last` resumes that phase's
    checkpoint. Both end at the uninterrupted run's weights; resuming the finished run is refused."""
    flags = ["train", "--catalog", str(catalog_scientific), *RUN, "--id_trunk", "True", *TINY_MODEL,
             "--id_trunk_epochs", "1", "--save_strategy", "steps", "--save_steps", "2"]
    resume = [*flags, "--resume_from_checkpoint", "last"]
    full = tmp_path / "full"
    assert cli_main([*flags, "--output_dir", str(full)]) == 0
    phase_checkpoints = sorted((full / PHASE_DIR).glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    assert len(phase_checkpoints) >= 2
    expected = _weights(full)
    # killed after the main phase: the main run's checkpoints only
    after_main = tmp_path / "after_main"
    after_main.mkdir()
    for folder in full.glob("checkpoint-*"):
        shutil.copytree(folder, after_main / folder.name)
    assert cli_main([*resume, "--output_dir", str(after_main)]) == 0
    assert _same(_weights(after_main), expected)
    summary = json.loads((after_main / "training_summary.json").read_text())
    assert "resumed_after_main_phase" in summary and summary["global_step"] > 0
    # killed inside the trunk's phase: its first checkpoint kept, the later ones lost
    inside = tmp_path / "inside"
    inside.mkdir()
    for folder in full.glob("checkpoint-*"):
        shutil.copytree(folder, inside / folder.name)
    shutil.copytree(phase_checkpoints[0], inside / PHASE_DIR / phase_checkpoints[0].name)
    assert resume_points("last", str(inside), True) == (None, str(inside / PHASE_DIR / phase_checkpoints[0].name))
    assert cli_main([*resume, "--output_dir", str(inside)]) == 0
    assert _same(_weights(inside), expected)
    capsys.readouterr()
    assert cli_main([*resume, "--output_dir", str(full)]) == 1
    assert "already reached" in capsys.readouterr().err
    # the main phase's last checkpoint of the finished run: the phase would train again over the final model
    main_last = max(full.glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    assert cli_main([*flags, "--resume_from_checkpoint", str(main_last), "--output_dir", str(full)]) == 1
    err = capsys.readouterr().err
    assert "already holds the final model of this run, after its ID-trunk phase" in err and "--overwrite" in err
    assert _same(_weights(full), expected)


def test_refusals_and_the_recipe(catalog_scientific, tmp_path, capsys):
    """A phase without a trunk, a phase on top of --train_only, a negative count: one line, exit 1, nothing
    written. The trunk recipe is checked like any other and writes its phase into recipe files."""
    base = ["train", "--catalog", str(catalog_scientific), *RUN, *TINY_MODEL]
    for flags, message in ((["--id_trunk_epochs", "1"], "--id_trunk_epochs adds an ID-trunk phase, but the model has no ID trunk"),
                           (["--recipe", "trunk", "--id_trunk", "False"], "--recipe trunk adds an ID-trunk phase"),
                           (["--id_trunk_epochs", "-1"], "must be 0 (no ID-trunk phase) or more")):
        assert cli_main([*base, *flags, "--output_dir", str(tmp_path / "refused")]) == 1
        err = capsys.readouterr().err
        assert message in err, err
    trunk_model = tmp_path / "trunk"
    assert cli_main([*base, "--id_trunk", "True", "--max_steps", "1", "--save_strategy", "no",
                     "--output_dir", str(trunk_model)]) == 0
    capsys.readouterr()
    assert cli_main(["train", "--catalog", str(catalog_scientific), *RUN, "--init_from", str(trunk_model),
                     "--train_only", "id_trunk", "--recipe", "trunk", "--output_dir", str(tmp_path / "refused")]) == 1
    assert "--train_only id_trunk already trains the ID trunk alone; --recipe trunk" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    trunk = RECIPES["trunk"]
    # what the Beauty runs it stands for trained and decoded with (trunk2ph_hd2_rqk3x256d_e16p16*)
    assert trunk.model == {**RECIPES["joint"].model, "id_trunk": True}
    assert trunk.training == trunk.id_trunk_phase == {"num_train_epochs": 16, "learning_rate": 2e-3}
    assert (trunk.generation["beam_fusion_tau"], trunk.generation["beam_fusion_psi"]) == (0.3, 2.0)
    assert phase_settings(trunk, None) == trunk.id_trunk_phase and phase_settings(trunk, 0) == {}
    assert phase_settings(RECIPES["joint"], 2) == {"num_train_epochs": 2.0} and phase_settings(None, None) == {}
    # a --max_steps of the command line outranks the recipe's epochs for the phase; --id_trunk_epochs outranks both
    from transformers import TrainingArguments

    quick = TrainingArguments(output_dir=str(tmp_path / "quick"), max_steps=3, num_train_epochs=16, report_to="none")
    bounded = phase_arguments(quick, phase_settings(trunk, None, quick.max_steps))
    assert bounded.max_steps == 3 and bounded.learning_rate == 2e-3
    assert phase_settings(trunk, None, 3) == {"max_steps": 3, "learning_rate": 2e-3}
    by_epochs = phase_arguments(quick, phase_settings(trunk, 2, quick.max_steps))
    assert (by_epochs.max_steps, by_epochs.num_train_epochs) == (-1, 2.0)
    assert phase_settings(RECIPES["joint"], None, 3) == {}  # no phase stays no phase
    assert phase_settings(trunk, None, -1, 2.0) == {"num_train_epochs": 2.0, "learning_rate": 2e-3}
    assert phase_settings(trunk, None, -1, 16.0) == trunk.id_trunk_phase  # the recipe's own length
    assert phase_settings(trunk, 4, -1, 2.0)["num_train_epochs"] == 4.0
    assert recipe_from_dict(trunk.to_dict(), source="x") == trunk
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({**trunk.to_dict(), "id_trunk_phase": {"epochs": 3}}))
    with pytest.raises(ValueError, match="id_trunk_phase key 'epochs' is not a TrainingArguments field"):
        load_recipe(str(path))


def test_the_default_recipes_phase_is_skipped_where_it_cannot_apply(catalog_scientific, tmp_path, caplog):
    """With no --recipe (the default, trunk), fine-tuning a checkpoint without a trunk, or `--train_only id_trunk`,
    trains without the last phase and says so in one warning; named explicitly, the recipe is still refused there."""
    phase = RECIPES["trunk"].id_trunk_phase
    assert default_phase(phase, True, "id_trunk", None) == phase  # asked for: check_phase refuses it later
    assert default_phase(phase, False, None, None) == phase
    assert default_phase({}, False, "id_trunk", None) == {}
    plain = tmp_path / "plain"
    assert cli_main(["train", "--catalog", str(catalog_scientific), *RUN, *TINY_MODEL, "--max_steps", "1",
                     "--save_strategy", "no", "--output_dir", str(plain)]) == 0
    assert default_phase(phase, False, None, str(plain)) == {}
    quick = [*BASE, "--eval_strategy", "no", "--eval_users", "0", "--max_steps", "1", "--save_strategy", "no"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="cobra_hf.training.id_trunk_phase"):
        assert cli_main(["train", "--catalog", str(catalog_scientific), *quick, "--init_from", str(plain),
                         "--output_dir", str(tmp_path / "tuned")]) == 0
    assert f"skipped: the --init_from checkpoint {plain} has no ID trunk" in caplog.text, caplog.text
    summary = json.loads((tmp_path / "tuned" / "training_summary.json").read_text())
    assert summary["recipe"]["name"] == "trunk" and "id_trunk_phase" not in summary
    assert not (tmp_path / "tuned" / PHASE_DIR).exists()
    assert cli_main(["train", "--catalog", str(catalog_scientific), *quick, "--init_from", str(plain), "--recipe",
                     "trunk", "--output_dir", str(tmp_path / "refused")]) == 1
    assert not (tmp_path / "refused").exists()


def test_recipe_trunk_end_to_end_picks_its_decoding_after_both_phases(catalog_scientific, tmp_path, one_torch_thread):
    """--recipe trunk in one command: both phases train and validate, the decoding grid is evaluated on the trained
    trunk (after its phase), the summary records the phase and the checkpoint loads with its picked defaults."""
    from cobra_hf.inference import load_checkpoint

    out = tmp_path / "trunk"
    assert cli_main(["train", "--catalog", str(catalog_scientific), *BASE, *TINY_MODEL, "--recipe", "trunk",
                     "--id_trunk_epochs", "1", "--eval_users", "8", "--eval_strategy", "epoch",
                     "--save_strategy", "no", "--output_dir", str(out)]) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["recipe"]["name"] == "trunk" and summary["recipe"]["model"]["id_trunk"] is True
    phase_evals = [entry for entry in summary["id_trunk_phase"]["log_history"] if "eval_recall@10" in entry]
    assert phase_evals and summary["id_trunk_phase"]["learning_rate"] == 2e-3
    selection = summary["decoding_selection"]
    assert len(selection["points"]) == 1 + len(RECIPES["trunk"].decoding_grid)
    model, _ = load_checkpoint(str(out))
    assert model.config.id_trunk and model.generation_config.beam_fusion == selection["chosen_settings"]["beam_fusion"]
