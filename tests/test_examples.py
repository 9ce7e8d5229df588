"""Every script in examples/ runs, with tiny settings: quickstart (in a fresh process without cobra_hf), push to a
local Hub, and train -> fine-tune -> evaluate on a small catalog prepared from the Scientific data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from isolated import offline_env, run_isolated
from tiny import tiny_model

from cobra_hf.hub import save_checkpoint
from cobra_hf.inference import recommend

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    model, tokenizer = tiny_model()
    folder = save_checkpoint(model.eval(), tokenizer, tmp_path_factory.mktemp("examples") / "model")
    return folder, model, tokenizer


def test_every_example_has_a_test():
    tested = {"quickstart", "push_to_hub", "train_with_trainer", "finetune", "evaluate"}
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested


def test_quickstart_without_cobra_hf(tiny_checkpoint, tmp_path):
    folder, model, tokenizer = tiny_checkpoint
    code = f"""
    import json, runpy, sys
    sys.argv = ["quickstart.py", "--model", {str(folder)!r}, "--history", "i1", "i2", "i3", "--top-k", "4",
                "--num-beams", "5"]
    namespace = runpy.run_path({str(EXAMPLES / "quickstart.py")!r})
    rows = namespace["main"]()
    print(json.dumps(rows))
    """
    rows = run_isolated(code, cwd=tmp_path, env=offline_env(tmp_path / "hf"))
    expected = recommend(model, tokenizer, [["i1", "i2", "i3"]], top_k=4, num_beams=5)[0]
    assert [row["item_id"] for row in rows] == [row["item_id"] for row in expected]
    assert [row["rank"] for row in rows] == [1, 2, 3, 4]


def test_push_to_hub_example(tiny_checkpoint, hub_patched, capsys):
    folder, *_ = tiny_checkpoint
    repo_id = hub_patched.repo_id("cobra-example")
    url = load_example("push_to_hub").main(["--model", str(folder), "--repo-id", repo_id])
    assert url.endswith(hub_patched.server.commit_ids(repo_id)[0])
    assert {"model.safetensors", "README.md", "pipeline_cobra.py"} <= set(hub_patched.server.files(repo_id))


@pytest.mark.slow
def test_train_finetune_evaluate_examples(catalog_scientific, tmp_path, capsys):
    catalog = Path(catalog_scientific)
    data = json.loads((catalog / "prepare_args.json").read_text())["data_dir"]
    model_dir, tuned_dir = tmp_path / "model", tmp_path / "tuned"

    summary = load_example("train_with_trainer").main(
        ["--catalog", str(catalog), "--data", data, "--output", str(model_dir), "--max-steps", "3",
         "--batch-size", "32", "--hidden-size", "32", "--eval-users", "20"])
    assert summary["steps"] == 3 and "recall@10" in summary
    assert (model_dir / "README.md").is_file() and (model_dir / "pipeline_cobra.py").is_file()

    tuned = load_example("finetune").main(
        ["--model", str(model_dir), "--data", data, "--output", str(tuned_dir), "--max-steps", "2", "--batch-size", "16"])
    assert tuned["steps"] == 2 and (tuned_dir / "model.safetensors").is_file()

    metrics = load_example("evaluate").main(["--model", str(tuned_dir), "--data", data, "--max-users", "20",
                                             "--num-beams", "4"])
    assert metrics["split"] == "test" and 0.0 <= metrics["recall@10"] <= 1.0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == metrics


def test_examples_refuse_what_the_cli_refuses(catalog_scientific, tiny_checkpoint, tmp_path):
    """train_with_trainer refuses an --output that holds its --catalog before training (its final save writes
    catalog/ there); evaluate refuses data whose targets the model does not know; a sample size below 1 is refused
    (a negative one evaluated all users but the last ones)."""
    import shutil

    from conftest import data_make_folder

    catalog = Path(catalog_scientific)
    data = json.loads((catalog / "prepare_args.json").read_text())["data_dir"]
    inside = tmp_path / "run"
    shutil.copytree(catalog, inside / "catalog")
    with pytest.raises(ValueError, match="--output .* holds the --catalog folder"):
        load_example("train_with_trainer").main(["--catalog", str(inside / "catalog"), "--data", data,
                                                 "--output", str(inside), "--max-steps", "1"])
    assert not (inside / "model.safetensors").exists()
    folder = tiny_checkpoint[0]
    foreign = data_make_folder(tmp_path / "foreign", num_items=30, num_users=20)
    with pytest.raises(ValueError, match="can be evaluated|not in the catalog"):
        load_example("evaluate").main(["--model", str(folder), "--data", str(foreign)])
    from cobra_hf.evaluation.sampling import sample_rows

    with pytest.raises(ValueError, match="^max_users must be at least 1, got -5"):
        sample_rows(100, -5)
