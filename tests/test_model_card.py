"""Model cards (cobra_hf.hub.model_card) and pushing checkpoint folders (cobra_hf.hub.push)."""

from __future__ import annotations

import importlib
import json
import os
import sys

import pytest

from cobra_hf.hub import push_checkpoint, render_model_card, validate_checkpoint, write_model_card

CONFIG = {
    "model_type": "cobra",
    "num_items": 1200,
    "level_sizes": [32, 32, 32],
    "hidden_size": 128,
    "decoder_layers": 2,
    "max_history": 20,
    "auto_map": {"AutoConfig": "configuration_cobra.CobraConfig", "AutoModel": "modeling_cobra.CobraModel"},
}
RESULTS = {"test_recall@5": 0.0512, "test_recall@10": 0.0803, "test_ndcg@5": 0.0321, "test_ndcg@10": 0.0410,
           "test_loss": 3.2}


def card(text: str):
    from huggingface_hub import ModelCard

    return ModelCard(text)  # parses the YAML front matter; raises ValueError when it is invalid


def test_card_yaml_is_valid_with_model_index():
    text = render_model_card(CONFIG, {"steps": 500, "train_runtime": 125.0}, RESULTS, "amazon-beauty", "me/cobra-beauty",
                             example_history=["B004756YJA", "B0020YLEYK"])
    assert "{{" not in text and "}}" not in text
    data = card(text).data
    assert data.library_name == "transformers"
    assert {"recommendation", "generative-retrieval", "semantic-ids", "cobra"} <= set(data.tags)
    assert data.datasets == ["amazon-beauty"] and data.license == "apache-2.0"
    metrics = {r.metric_type: r.metric_value for r in data.eval_results}
    assert metrics == {"recall@5": 0.0512, "recall@10": 0.0803, "ndcg@5": 0.0321, "ndcg@10": 0.041}
    assert {r.task_type for r in data.eval_results} == {"recommendation"}
    assert 'AutoModel.from_pretrained(repo, trust_remote_code=True)' in text
    assert 'tok([["B004756YJA", "B0020YLEYK"]]' in text and "tok.batch_decode_items(out)" in text
    assert "| Recall@10 | 0.0803 |" in text and "2 min 5 s" in text


def test_card_says_cobra_hf_comes_from_its_repository():
    """cobra-hf is not on the package index: no card may tell users to `pip install cobra-hf`."""
    text = render_model_card(CONFIG, None, None, None, "me/cobra-beauty")
    assert "pip install cobra-hf" not in text
    assert "source repository (`pip install -e .` in a checkout" in text
    assert "cobra-hf recommend me/cobra-beauty --history" in text


def test_card_without_results_has_no_model_index():
    text = render_model_card(CONFIG, None, None, None, None)
    data = card(text).data
    assert data.eval_results is None and "model-index" not in text
    assert "Not evaluated yet" in text and "No training details" in text


def test_write_model_card_keeps_user_readme(tmp_path):
    assert write_model_card(tmp_path, CONFIG) is True  # no README yet: written
    assert write_model_card(tmp_path, CONFIG, None, RESULTS) is True  # ours: rewritten
    assert "model-index" in (tmp_path / "README.md").read_text()

    user_text = "# My own notes\n\nDo not touch.\n"
    (tmp_path / "README.md").write_text(user_text)
    assert write_model_card(tmp_path, CONFIG, None, RESULTS) is False
    assert (tmp_path / "README.md").read_text() == user_text
    assert write_model_card(tmp_path, CONFIG, overwrite_user_card=True) is True

    # The Trainer's auto-generated card is not the user's: it gets replaced.
    (tmp_path / "README.md").write_text(
        "---\nlibrary_name: transformers\n---\n\n<!-- This model card has been generated automatically according to "
        "the information the Trainer had access to. You\nshould probably proofread and complete it -->\n"
    )
    assert write_model_card(tmp_path, CONFIG) is True


def fake_checkpoint(folder):
    """A folder with every file a COBRA checkpoint needs (contents are placeholders), plus Trainer leftovers."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    (folder / "item_catalog.json").write_text(json.dumps({"items": ["a", "b"]}))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["tokenization_cobra.CobraTokenizer", None]}})
    )
    (folder / "configuration_cobra.py").write_text("X = 1\n")
    (folder / "modeling_cobra.py").write_text("from .configuration_cobra import X\nfrom .cobra_layers import Y\n")
    (folder / "cobra_layers.py").write_text("Y = 2\n")
    (folder / "tokenization_cobra.py").write_text("Z = 3\n")
    write_model_card(folder, CONFIG, None, RESULTS, "amazon-beauty")
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"state")
    (folder / "runs").mkdir()
    (folder / "runs" / "events.out").write_bytes(b"log")
    (folder / "optimizer.pt").write_bytes(b"state")
    return folder


def test_validate_checkpoint_lists_everything_missing(tmp_path):
    folder = fake_checkpoint(tmp_path / "ckpt")
    validate_checkpoint(folder)
    for name in ("model.safetensors", "item_catalog.json", "cobra_layers.py", "README.md"):
        os.remove(folder / name)
    with pytest.raises(ValueError) as err:
        validate_checkpoint(folder)
    for name in ("model.safetensors", "item_catalog.json", "cobra_layers.py", "README.md"):
        assert name in str(err.value)
    with pytest.raises(FileNotFoundError):
        validate_checkpoint(tmp_path / "nope")


def test_push_checkpoint_uploads_only_the_checkpoint(hub_patched, tmp_path):
    folder = fake_checkpoint(tmp_path / "ckpt")
    repo_id = hub_patched.repo_id("cobra-fake")
    url = push_checkpoint(folder, repo_id, commit_message="first upload")
    head = hub_patched.server.commit_ids(repo_id)[0]
    assert url.endswith(head)
    files = set(hub_patched.server.files(repo_id))
    assert files == {".gitattributes", "config.json", "model.safetensors", "item_catalog.json", "tokenizer_config.json",
                     "configuration_cobra.py", "modeling_cobra.py", "cobra_layers.py", "tokenization_cobra.py",
                     "README.md"}
    # Same folder again: no new commit.
    assert push_checkpoint(folder, repo_id).endswith(head)
    assert hub_patched.server.commit_ids(repo_id)[0] == head

    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id)
    assert info.card_data.library_name == "transformers" and "cobra" in info.tags


REMOTE_CODE = '''
import torch
from transformers import PreTrainedConfig, PreTrainedModel


class TinyConfig(PreTrainedConfig):
    model_type = "tiny-push"

    def __init__(self, width=3, **kwargs):
        self.width = width
        super().__init__(**kwargs)


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.proj = torch.nn.Linear(config.width, config.width)
        self.post_init()
'''


def test_cli_push_of_a_real_saved_model(hub_patched, tmp_path, monkeypatch, capsys):
    """save_pretrained of a real (tiny, custom-code) model + tokenizer files + card, pushed by `cobra-hf push`."""
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "tiny_push.py").write_text(REMOTE_CODE)
    monkeypatch.syspath_prepend(str(code_dir))
    tiny = importlib.import_module("tiny_push")
    monkeypatch.setitem(sys.modules, "tiny_push", tiny)
    tiny.TinyConfig.register_for_auto_class("AutoConfig")
    tiny.TinyModel.register_for_auto_class("AutoModel")
    folder = tmp_path / "model"
    model = tiny.TinyModel(tiny.TinyConfig())
    model.save_pretrained(folder)
    (folder / "item_catalog.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text("{}")

    from cobra_hf.cli.main import main

    repo_id = hub_patched.repo_id("tiny-push")
    argv = ["push", str(folder), "--repo-id", repo_id]
    assert main(argv + ["--no-card"]) == 1
    err = capsys.readouterr().err
    assert "README.md" in err and "Traceback" not in err  # one clear sentence

    assert write_model_card(folder, model.config.to_dict(), {"steps": 1}, None, None, repo_id) is True
    assert main(argv + ["--commit-message", "tiny"]) == 0
    head = hub_patched.server.commit_ids(repo_id)[0]
    assert capsys.readouterr().out.strip().endswith(head)
    files = hub_patched.server.files(repo_id)
    assert files["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert json.loads(files["config.json"])["auto_map"]["AutoModel"] == "tiny_push.TinyModel"
    assert "tiny_push.py" in files

    assert main(["push", str(tmp_path / "missing"), "--repo-id", repo_id]) == 1
    assert "does not exist" in capsys.readouterr().err
