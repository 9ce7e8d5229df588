"""The local Hub (tests/hub_server.py) is good enough for huggingface_hub and transformers.

Pushes a tiny generic BERT, loads it back by repo id in a fresh process, checks that an
unchanged re-push creates no commit, pushes custom (trust_remote_code) code, and lets the
Trainer push. Everything runs against 127.0.0.1; nothing reaches the real Hub.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "blue", "lip", "##stick", "soap", "cream"]


def run_python(code: str, env: dict, cwd=None) -> str:
    """Run `code` in a fresh interpreter with `env` added; return stdout (fail with its stderr)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def tiny_bert(tmp_path):
    """A 1-layer BERT and its WordPiece tokenizer (vocab file in tmp_path)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab_dir = tmp_path / "vocab"
    vocab_dir.mkdir()
    (vocab_dir / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizer.from_pretrained(vocab_dir)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32,
    )
    return BertModel(config).eval(), tokenizer


def test_errors_map_to_hub_exceptions(hub_patched):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi()
    repo_id = api.create_repo(hub_patched.repo_id("errors")).repo_id
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo_id, "missing.json")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(f"{hub_patched.user}/does-not-exist")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, ".gitattributes", revision="no-such-branch")
    assert api.whoami()["name"] == hub_patched.user


def test_push_to_hub_then_load_in_fresh_process(hub_patched, tiny_bert, tmp_path):
    import torch

    model, tokenizer = tiny_bert
    repo_id = hub_patched.repo_id("tiny-bert")
    # Tokenize before pushing: a fast tokenizer called with padding=True keeps that padding in
    # the tokenizer.json it saves (transformers 5.24), which would make the re-push below differ.
    batch = tokenizer(["red lipstick", "blue soap cream"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).last_hidden_state.sum().item()
    model.push_to_hub(repo_id)
    tokenizer.push_to_hub(repo_id)
    files = set(hub_patched.server.files(repo_id))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= files

    # A new process with an empty cache, configured only through environment variables.
    out = run_python(
        f"""
        import torch
        from transformers import AutoModel, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({repo_id!r})
        model = AutoModel.from_pretrained({repo_id!r}).eval()
        batch = tok(["red lipstick", "blue soap cream"], padding=True, return_tensors="pt")
        with torch.no_grad():
            print(model(**batch).last_hidden_state.sum().item())
        """,
        hub_patched.env(tmp_path / "fresh_home"),
    )
    assert float(out.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-5, abs=1e-5)

    # Pushing the same weights and tokenizer again changes nothing: no new commit.
    before = hub_patched.server.commit_ids(repo_id)
    model.push_to_hub(repo_id)
    tokenizer.push_to_hub(repo_id)
    assert hub_patched.server.commit_ids(repo_id) == before

    # A real change makes exactly one commit, and the new head is what gets served.
    with torch.no_grad():
        model.pooler.dense.bias.add_(1.0)
    model.push_to_hub(repo_id, commit_message="bias + 1")
    after = hub_patched.server.commit_ids(repo_id)
    assert len(after) == len(before) + 1 and after[1:] == before

    from huggingface_hub import HfApi, snapshot_download

    assert HfApi().model_info(repo_id).sha == after[0]
    assert [c.title for c in HfApi().list_repo_commits(repo_id)][0] == "bias + 1"
    local = snapshot_download(repo_id)
    assert os.path.basename(local) == after[0]


REMOTE_CODE = '''
import torch
from transformers import PreTrainedConfig, PreTrainedModel


class TinyRemoteConfig(PreTrainedConfig):
    model_type = "tiny-remote"

    def __init__(self, width=4, **kwargs):
        self.width = width
        super().__init__(**kwargs)


class TinyRemoteModel(PreTrainedModel):
    config_class = TinyRemoteConfig

    def __init__(self, config):
        super().__init__(config)
        self.proj = torch.nn.Linear(config.width, config.width)
        self.post_init()

    def forward(self, x):
        return self.proj(x)
'''


def test_trust_remote_code_round_trip(hub_patched, tmp_path, monkeypatch):
    """Push custom code (register_for_auto_class) and load it with trust_remote_code in a fresh process."""
    import importlib

    import torch

    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "tiny_remote.py").write_text(REMOTE_CODE)
    monkeypatch.syspath_prepend(str(code_dir))
    tiny_remote = importlib.import_module("tiny_remote")
    monkeypatch.setitem(sys.modules, "tiny_remote", tiny_remote)  # removed again after the test
    tiny_remote.TinyRemoteConfig.register_for_auto_class("AutoConfig")
    tiny_remote.TinyRemoteModel.register_for_auto_class("AutoModel")
    torch.manual_seed(0)
    repo_id = hub_patched.repo_id("tiny-remote")
    tiny_remote.TinyRemoteModel(tiny_remote.TinyRemoteConfig(width=4)).push_to_hub(repo_id)

    files = hub_patched.server.files(repo_id)
    assert "tiny_remote.py" in files
    assert json.loads(files["config.json"])["auto_map"]["AutoModel"] == "tiny_remote.TinyRemoteModel"

    out = run_python(
        f"""
        from transformers import AutoModel
        model = AutoModel.from_pretrained({repo_id!r}, trust_remote_code=True)
        print(type(model).__name__, model.config.width)
        """,
        hub_patched.env(tmp_path / "home_load"),
        cwd=tmp_path,  # tiny_remote is not importable here: the code must come from the Hub
    )
    assert out.split()[-2:] == ["TinyRemoteModel", "4"]


def test_trainer_push_to_hub(hub_patched, tiny_bert, tmp_path):
    import torch
    from datasets import Dataset
    from transformers import BertForMaskedLM, Trainer, TrainingArguments

    _, tokenizer = tiny_bert
    model = BertForMaskedLM(tiny_bert[0].config)
    enc = tokenizer(["red lipstick", "blue soap", "cream soap", "red cream"] * 2, padding="max_length", max_length=8)
    dataset = Dataset.from_dict({**enc, "labels": enc["input_ids"]})
    repo_id = hub_patched.repo_id("tiny-trainer")
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=4,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        use_cpu=True,
        report_to="none",
        push_to_hub=True,
        hub_model_id=repo_id,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    trainer.push_to_hub(commit_message="end of training")

    files = hub_patched.server.files(repo_id)
    assert {"config.json", "model.safetensors", "tokenizer.json", "training_args.bin", "README.md"} <= set(files)
    assert not any(name.startswith("checkpoint-") for name in files)  # hub_strategy="every_save" pushes the top folder
    titles = [c.title for c in __import__("huggingface_hub").HfApi().list_repo_commits(repo_id)]
    assert titles[0] == "end of training"
    assert torch.is_tensor(next(model.parameters()))
