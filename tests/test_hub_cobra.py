"""A real (tiny) COBRA checkpoint on the Hub: `cobra-hf push`, model/tokenizer.push_to_hub and the Trainer push a
complete repo (weights, config with auto_map + custom_pipelines, generation config, tokenizer + catalog, code files,
model card); a fresh process where cobra_hf is NOT importable loads it by repo id and recommends exactly what this
process does. Everything runs against the local Hub of tests/hub_server.py."""

from __future__ import annotations

import json

import pytest
import torch
from isolated import recommend_isolated
from tiny import tiny_model

from cobra_hf.hub import checkpoint_problems, is_cobra_model_card, save_checkpoint

HISTORIES = [["i1", "i2", "i3"], ["i7"], ["i5", "i9", "i11", "i13", "i2"]]
SETTINGS = {"num_beams": 6, "top_k": 5}
CODE_FILES = {"configuration_cobra.py", "modeling_cobra.py", "cobra_layers.py", "cobra_generation.py",
              "tokenization_cobra.py", "pipeline_cobra.py"}
REPO_FILES = {"config.json", "model.safetensors", "generation_config.json", "item_catalog.json",
              "tokenizer_config.json", "README.md"} | CODE_FILES


def train_a_little(model, tokenizer, steps: int = 2):
    """A couple of AdamW steps on the model's own loss, so the pushed weights are not the initial ones."""
    batch = tokenizer([["i1", "i2", "i3", "i4"], ["i5", "i6", "i7"], ["i8", "i9", "i10", "i11", "i12"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def reference(model, tokenizer):
    out = model.generate(**tokenizer(HISTORIES), **SETTINGS)
    return tokenizer.batch_decode_items(out), out.scores.tolist()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(folder, model, tokenizer, items, scores): a trained tiny checkpoint saved with save_checkpoint."""
    model, tokenizer = tiny_model()
    train_a_little(model, tokenizer)
    folder = save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("ckpt") / "model",
                             training_info={"steps": 2, "batch_size": 3}, eval_results={"recall@5": 0.25},
                             dataset_name="tiny-random")
    items, scores = reference(model, tokenizer)
    return folder, model, tokenizer, items, scores


def assert_same_recommendations(result, items, scores):
    assert result["items"] == items
    assert torch.allclose(torch.tensor(result["scores"]), torch.tensor(scores), atol=1e-5)
    assert not result["cobra_hf_loaded"]
    assert not result["model_class"].startswith("cobra_hf")


def test_saved_checkpoint_is_complete(checkpoint):
    folder, model, *_ = checkpoint
    assert REPO_FILES <= {path.name for path in folder.iterdir()}
    assert checkpoint_problems(folder) == []
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_cobra.CobraForSequentialRecommendation"
    assert config["custom_pipelines"]["cobra-recommendation"]["impl"] == "pipeline_cobra.CobraRecommendationPipeline"
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["auto_map"]["AutoTokenizer"][0] == "tokenization_cobra.CobraTokenizer"
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card and is_cobra_model_card(card)
    assert "model-index" in card and "tiny-random" in card
    assert json.loads((folder / "generation_config.json").read_text())["do_sample"] is False


def test_push_then_load_by_repo_id_without_cobra_hf(checkpoint, hub_patched, tmp_path, capsys):
    """`cobra-hf push` of the folder, and model.push_to_hub + tokenizer.push_to_hub; both repos load in one fresh
    process without cobra_hf (one process: starting Python + transformers is most of the time)."""
    from huggingface_hub import HfApi

    from cobra_hf.cli.main import main

    folder, model, tokenizer, items, scores = checkpoint
    cli_repo = hub_patched.repo_id("cobra-cli")
    assert main(["push", str(folder), "--repo-id", cli_repo]) == 0
    head = hub_patched.server.commit_ids(cli_repo)[0]
    assert capsys.readouterr().out.strip().endswith(head)
    assert REPO_FILES <= set(hub_patched.server.files(cli_repo))
    assert main(["push", str(folder), "--repo-id", cli_repo]) == 0  # unchanged: no new commit
    assert hub_patched.server.commit_ids(cli_repo)[0] == head
    info = HfApi().model_info(cli_repo)
    assert info.card_data.library_name == "transformers" and "cobra" in info.tags

    mixin_repo = hub_patched.repo_id("cobra-mixin")
    model.push_to_hub(mixin_repo)
    tokenizer.push_to_hub(mixin_repo)
    # push_to_hub writes transformers' default card; `cobra-hf push` / push_checkpoint write the COBRA card
    assert REPO_FILES <= set(hub_patched.server.files(mixin_repo))
    commits = len(hub_patched.server.commit_ids(mixin_repo))
    model.push_to_hub(mixin_repo)
    tokenizer.push_to_hub(mixin_repo)
    assert len(hub_patched.server.commit_ids(mixin_repo)) == commits

    results = recommend_isolated([cli_repo, mixin_repo], HISTORIES, SETTINGS, cwd=tmp_path,
                                 env=hub_patched.env(tmp_path / "hf"))
    for result in results:
        assert_same_recommendations(result, items, scores)


def test_push_refuses_a_damaged_checkpoint_before_any_upload(checkpoint, hub_patched, tmp_path, capsys):
    """A weights file changed after its save (header intact, one flipped bit): `cobra-hf push` says which file in one
    line and exits 1 before creating the repo."""
    import shutil

    from cobra_hf.cli.main import main

    folder = shutil.copytree(checkpoint[0], tmp_path / "model")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8] ^= 0x01
    weights.write_bytes(bytes(data))
    repo = hub_patched.repo_id("cobra-damaged")
    assert main(["push", str(folder), "--repo-id", repo]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("Pushing")]
    assert len(err) == 1 and "model.safetensors is corrupted" in err[0], err
    assert not [key for key in hub_patched.server.state.repos if key[1].endswith("cobra-damaged")]


def test_push_names_the_repo_in_the_card_and_refuses_a_folder_missing_a_recorded_file(checkpoint, hub_patched,
                                                                                        tmp_path, capsys):
    """The card `cobra-hf train` wrote before the repo existed names a placeholder repo: push fills in the repo id the
    Hub resolved. A folder that lacks a file its checksums.json records (its decoding settings here) is refused
    before the repo is created."""
    import shutil

    from cobra_hf.cli.main import main
    from cobra_hf.hub.model_card import PLACEHOLDER_REPO, write_model_card

    folder = shutil.copytree(checkpoint[0], tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    write_model_card(folder, config_dict=config, training_info=None, eval_results={"recall@10": 0.1, "split": "test"},
                     dataset_name="toy", repo_id=None)
    assert PLACEHOLDER_REPO in (folder / "README.md").read_text()
    repo = hub_patched.repo_id("cobra-named")
    assert main(["push", str(folder), "--repo-id", repo]) == 0
    card = (folder / "README.md").read_text()
    assert PLACEHOLDER_REPO not in card and f'repo = "{repo}"' in card and f"# {repo.split('/')[-1]}" in card
    assert "name: cobra-model" not in card
    assert main(["push", str(folder), "--repo-id", repo]) == 0  # the filled card is final: nothing new to upload

    # a folder with no card at all, pushed under a bare name: the card push writes names the repo the Hub made
    bare = shutil.copytree(checkpoint[0], tmp_path / "bare")
    (bare / "README.md").unlink(missing_ok=True)
    name = hub_patched.repo_id("cobra-bare").split("/")[-1]
    assert main(["push", str(bare), "--repo-id", name]) == 0
    card = (bare / "README.md").read_text()
    assert f'repo = "{hub_patched.user}/{name}"' in card and PLACEHOLDER_REPO not in card
    assert f'repo = "{name}"' not in card

    broken = shutil.copytree(checkpoint[0], tmp_path / "broken")
    (broken / "generation_config.json").unlink()  # recorded; a load would fall back to the package defaults
    capsys.readouterr()
    assert main(["push", str(broken), "--repo-id", hub_patched.repo_id("cobra-broken")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("Pushing")]
    assert len(err) == 1 and "lacks generation_config.json, which its checksums.json records" in err[0], err
    assert not [key for key in hub_patched.server.state.repos if key[1].endswith("cobra-broken")]


def test_trainer_push_to_hub_writes_the_cobra_card(hub_patched, tmp_path):
    from datasets import Dataset
    from transformers import TrainingArguments

    from cobra_hf.training import CobraDataCollator, CobraTrainer

    model, tokenizer = tiny_model()
    sequences = [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18], [19, 20, 21]]
    repo_id = hub_patched.repo_id("cobra-trainer")
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=3, save_strategy="no",
        logging_steps=1, use_cpu=True, report_to="none", push_to_hub=True, hub_model_id=repo_id, disable_tqdm=True,
    )
    trainer = CobraTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"item_index": sequences}),
                           data_collator=CobraDataCollator(tokenizer, max_items=9), processing_class=tokenizer)
    trainer.train()
    trainer.push_to_hub(commit_message="end of training")

    files = hub_patched.server.files(repo_id)
    assert REPO_FILES <= set(files)
    card = files["README.md"].decode() if isinstance(files["README.md"], bytes) else files["README.md"]
    assert is_cobra_model_card(card) and "optimizer steps | 2" in card
    assert not any(name.startswith("checkpoint-") for name in files)


def test_save_pretrained_with_push_to_hub_uploads_the_complete_save(checkpoint, hub_patched, tmp_path):
    """model.save_pretrained(push_to_hub=True): transformers' own push runs inside save_pretrained, before cobra-hf
    writes checksums.json and catalog/; the upload must hold every file of the local save."""
    _, model, *_ = checkpoint
    repo = hub_patched.repo_id("cobra-save-push")
    folder = tmp_path / "cobra-save-push"
    model.save_pretrained(folder, push_to_hub=True, repo_id=repo, commit_message="save and push")
    local = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    assert "checksums.json" in local
    assert local <= set(hub_patched.server.files(repo))
