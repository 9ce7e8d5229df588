"""Training that cannot lose or silently corrupt a run (issue 19, cases 4, 9, 12, 13, 15): the final save appears
atomically (a real SIGKILL in the middle of it), resume refuses another catalog's checkpoint and a finished run,
a catalog smaller than top_k trains into a loadable checkpoint, and `--resume_from_checkpoint last` falls back past
damaged checkpoints."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cobra_hf import CobraTokenizer
from cobra_hf.cli.main import main as cli_main
from cobra_hf.inference import load_checkpoint
from cobra_hf.training.train import resolve_resume_checkpoint
from conftest import move_killer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _catalog(root: Path, num_items: int = 40, num_users: int = 40, seed: int = 0) -> Path:
    """A catalog folder that load_catalog accepts, written by hand (no sentence encoder); `seed` gives other IDs."""
    data, catalog = root / "data", root / "catalog"
    data.mkdir(parents=True)
    catalog.mkdir()
    rng = random.Random(seed)
    ids = [f"I{i:02d}" for i in range(num_items)]
    (data / "items.jsonl").write_text("".join(json.dumps({"item_id": i, "title": f"thing {i}"}) + "\n" for i in ids))
    (data / "sequences.txt").write_text(
        "".join(f"U{u:02d} " + " ".join(rng.choice(ids) for _ in range(rng.randint(4, 8))) + "\n" for u in range(num_users))
    )
    gen = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, 4, (num_items,), generator=gen) for _ in range(3)], 1)
    CobraTokenizer.from_items(ids, codes, [f"thing {i}" for i in ids], [4, 4, 4], max_history=8).save_pretrained(catalog)
    token_ids = torch.randint(3, 20, (num_items, 5), generator=gen)
    token_ids[:, 0] = 1
    save_file({"token_ids": token_ids, "source_token_ids": torch.arange(20),
               "text_embeddings": torch.randn(num_items, 8, generator=gen)}, str(catalog / "item_text.safetensors"))
    (catalog / "prepare_args.json").write_text(json.dumps({"data_dir": str(data)}))
    return catalog


def _args(catalog: Path, output: Path, *extra: str) -> list[str]:
    return ["train", "--catalog", str(catalog), "--output_dir", str(output), "--max_steps", "4", "--save_steps", "2",
            "--save_strategy", "steps", "--eval_strategy", "no", "--hidden_size", "32", "--num_attention_heads", "2",
            "--intermediate_size", "64", "--per_device_train_batch_size", "8", "--use_cpu", "True", "--seed", "0",
            "--logging_steps", "1", "--eval_users", "0", "--init_text_embeddings", "False", "--disable_tqdm", "True",
            "--recipe", "joint", *extra]  # one phase (two-phase resumes: tests/test_id_trunk_phase.py)


def _state(folder: Path) -> dict:
    return json.loads((folder / "trainer_state.json").read_text())


# ---------------------------------------------------------------------------------------------------- case 9
def test_resume_refuses_a_checkpoint_of_another_catalog(tmp_path, capsys):
    catalog_a, catalog_b = _catalog(tmp_path / "a"), _catalog(tmp_path / "b", seed=1)
    assert cli_main(_args(catalog_a, tmp_path / "run_a")) == 0
    capsys.readouterr()
    out_b = tmp_path / "run_b"
    code = cli_main(_args(catalog_b, out_b, "--resume_from_checkpoint", str(tmp_path / "run_a" / "checkpoint-2")))
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "--resume_from_checkpoint" in err and "another catalog" in err and "--catalog" in err
    assert not out_b.exists() or not any(out_b.iterdir())


# ---------------------------------------------------------------------------------------------------- case 13
def test_resuming_a_finished_run_neither_trains_on_nor_overwrites_the_model(tmp_path, capsys):
    catalog, out = _catalog(tmp_path), tmp_path / "run"
    assert cli_main(_args(catalog, out)) == 0
    capsys.readouterr()
    final = (out / "model.safetensors").read_bytes()
    for value in ("last", str(out / "checkpoint-4")):
        code = cli_main(_args(catalog, out, "--resume_from_checkpoint", value))
        err = capsys.readouterr().err
        assert code == 1 and "already" in err and "--max_steps" in err, err
        assert (out / "model.safetensors").read_bytes() == final
        assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    # asking for more steps continues the run
    assert cli_main(_args(catalog, out, "--resume_from_checkpoint", "last", "--max_steps", "6")) == 0
    assert _state(out / "checkpoint-6")["global_step"] == 6


# ---------------------------------------------------------------------------------------------------- case 12
def test_a_catalog_smaller_than_top_k_trains_into_a_loadable_checkpoint(tmp_path, capsys, caplog):
    catalog, out = _catalog(tmp_path, num_items=4, num_users=12), tmp_path / "run"
    validated = ["--eval_strategy", "steps", "--eval_steps", "2", "--eval_users", "-1"]  # metrics up to @4
    with caplog.at_level("WARNING"):
        assert cli_main(_args(catalog, out, *validated)) == 0
    assert "top_k is lowered from 10 to 4" in caplog.text  # said so
    assert '"eval_recall@4"' in capsys.readouterr().out
    model, tokenizer = load_checkpoint(str(out))
    assert model.generation_config.recommend_top_k == 4
    out = model.generate(**tokenizer([["I00", "I01"]]))
    assert out.item_indices.shape[1] == 4
    code = cli_main(_args(catalog, tmp_path / "run2", "--generation", '{"top_k": 10}'))
    err = capsys.readouterr().err
    assert code == 1 and "--generation" in err and "top_k" in err


# ---------------------------------------------------------------------------------------------------- case 15
def _damaged_run(tmp_path: Path) -> tuple[Path, Path]:
    catalog, out = _catalog(tmp_path), tmp_path / "run"
    assert cli_main(_args(catalog, out, "--max_steps", "6", "--save_total_limit", "5")) == 0
    return catalog, out


def test_resume_last_falls_back_past_damaged_checkpoints(tmp_path, caplog):
    _, out = _damaged_run(tmp_path)
    (out / "checkpoint-6" / "trainer_state.json").write_text("")  # empty
    optimizer = out / "checkpoint-4" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])  # truncated
    with caplog.at_level("WARNING"):
        assert resolve_resume_checkpoint("last", str(out)) == str(out / "checkpoint-2")
    assert "checkpoint-6" in caplog.text and "checkpoint-4" in caplog.text and "optimizer.pt" in caplog.text
    with pytest.raises(ValueError, match="checkpoint-4.*optimizer.pt"):
        resolve_resume_checkpoint(str(out / "checkpoint-4"), str(out))


def test_resume_last_with_damaged_newest_checkpoint_continues_the_run(tmp_path, capsys):
    catalog, out = _damaged_run(tmp_path)
    (out / "checkpoint-6" / "trainer_state.json").write_text("")
    for name in ("model.safetensors", "config.json", "training_summary.json"):  # killed before the final save
        (out / name).unlink()
    assert cli_main(_args(catalog, out, "--max_steps", "6", "--save_total_limit", "5",
                          "--resume_from_checkpoint", "last")) == 0
    assert _state(out / "checkpoint-6")["global_step"] == 6 and load_checkpoint(str(out))


# ---------------------------------------------------------------------------------------------------- case 4
FINAL_SAVE_KILLER = """
import os, signal, sys
import transformers
real = transformers.Trainer._save
def killing(self, output_dir=None, state_dict=None, *args, **kwargs):
    real(self, output_dir, state_dict, *args, **kwargs)
    config = os.path.join(output_dir, "config.json")
    open(config, "w").close()  # what a kill while writing it leaves: 0 bytes
    os.kill(os.getpid(), signal.SIGKILL)
transformers.Trainer._save = killing
from cobra_hf.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

SWAP_KILLER = move_killer("count[0] == 3")


@pytest.mark.parametrize("killer", [FINAL_SAVE_KILLER, SWAP_KILLER], ids=["while-writing", "while-moving-in"])
def test_final_save_killed_leaves_no_half_written_model(tmp_path, killer):
    catalog, out = _catalog(tmp_path), tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", killer, *_args(catalog, out, "--save_strategy", "no")],
                            capture_output=True, text=True, timeout=300, env=ENV)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    config = out / "config.json"
    assert not config.exists() or config.stat().st_size > 0  # never a 0-byte config.json
    if out.is_dir():
        with pytest.raises((FileNotFoundError, ValueError)):  # no final model (a half-moved one is undone first)
            load_checkpoint(str(out))
    # the same command again (--overwrite: the folder holds the remains) gives the complete model
    assert cli_main(_args(catalog, out, "--save_strategy", "no", "--overwrite")) == 0
    assert load_checkpoint(str(out))
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_a_finished_epoch_budget_is_recognised(tmp_path):
    """Case 13 with --num_train_epochs (no --max_steps): the checkpoint's own plan says whether the run is over."""
    from types import SimpleNamespace

    from cobra_hf.training.resume import check_not_finished

    folder = tmp_path / "checkpoint-30"
    folder.mkdir()
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 30, "max_steps": 30, "num_train_epochs": 3}))
    with pytest.raises(ValueError, match="already reached --num_train_epochs 3"):
        check_not_finished(str(folder), SimpleNamespace(max_steps=-1, num_train_epochs=3.0), str(tmp_path), False)
    check_not_finished(str(folder), SimpleNamespace(max_steps=-1, num_train_epochs=5.0), str(tmp_path), False)


def test_resume_refuses_weights_changed_inside_and_last_skips_them(tmp_path, caplog):
    """Bytes flipped inside a checkpoint's model.safetensors keep its size and header: only checksums.json tells.
    The Trainer loads checkpoint weights itself (not through from_pretrained's check), so resume must check."""
    _, out = _damaged_run(tmp_path)
    weights = out / "checkpoint-6" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = b"\xff" * 64  # inside the last tensor's data: NaNs, same size, same header
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checkpoint-6.*model.safetensors is corrupted.*sha256"):
        resolve_resume_checkpoint(str(out / "checkpoint-6"), str(out))
    with caplog.at_level("WARNING"):
        assert resolve_resume_checkpoint("last", str(out)) == str(out / "checkpoint-4")
    assert "checkpoint-6" in caplog.text


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_refuses_an_output_dir_that_holds_its_catalog(tmp_path, capsys):
    """The final save replaces the entries it writes (catalog/ among them): an --output_dir holding the --catalog
    folder is refused in one line, --overwrite or not, and the catalog is left as it was."""
    catalog = _catalog(tmp_path)
    before = _files(catalog)
    for extra in ((), ("--overwrite",)):
        code = cli_main(_args(catalog, tmp_path, *extra))
        err = capsys.readouterr().err
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert "--output_dir" in err and "holds the --catalog folder" in err
    code = cli_main(_args(catalog, catalog, "--overwrite"))
    assert code == 1 and "is the --catalog folder" in capsys.readouterr().err
    assert _files(catalog) == before


def test_init_from_refuses_a_catalog_of_another_prepare_run(tmp_path, capsys):
    """--init_from keeps its checkpoint's IDs: a --catalog that gives its items other IDs is refused before
    training, and nothing is written."""
    catalog_a, catalog_b = _catalog(tmp_path / "a"), _catalog(tmp_path / "b", seed=1)
    assert cli_main(_args(catalog_a, tmp_path / "run_a")) == 0
    capsys.readouterr()
    tuned = tmp_path / "tuned"
    fine_tune = ["train", "--init_from", str(tmp_path / "run_a"), "--output_dir", str(tuned), "--max_steps", "2",
                 "--eval_strategy", "no", "--save_strategy", "no", "--use_cpu", "True", "--eval_users", "0",
                 "--disable_tqdm", "True"]
    code = cli_main([*fine_tune, "--catalog", str(catalog_b)])
    # transformers' weight-loading progress bar aside, one line
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if line.strip() and "Loading weights" not in line)
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "--catalog" in err and "is not the catalog" in err
    assert not tuned.exists() or not any(tuned.iterdir())
    assert cli_main([*fine_tune, "--catalog", str(catalog_a)]) == 0  # its own catalog fine-tunes


def test_train_refuses_data_with_many_items_its_catalog_lacks(tmp_path, capsys, caplog):
    """--data whose sequences hold many item ids the catalog lacks (another crawl, another dataset) is refused in one
    line naming --drop_unknown; with the flag, or when those items are the catalog's held-out ones, it trains."""
    catalog = _catalog(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    new_ids = [f"N{i:02d}" for i in range(10)]
    (other / "items.jsonl").write_text("".join(
        json.dumps({"item_id": i, "title": f"thing {i}"}) + "\n" for i in [f"I{j:02d}" for j in range(40)] + new_ids))
    rng = random.Random(5)
    (other / "sequences.txt").write_text("".join(
        f"U{u:02d} " + " ".join(rng.choice([f"I{j:02d}" for j in range(40)] + new_ids) for _ in range(6)) + "\n"
        for u in range(40)))
    code = cli_main(_args(catalog, tmp_path / "run", "--data", str(other)))
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "--data" in err and "10 item ids" in err and "--drop_unknown" in err and "N00" in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    assert cli_main(_args(catalog, tmp_path / "run", "--data", str(other), "--drop_unknown", "True")) == 0
    assert any("they are dropped from the sequences" in message for message in caplog.messages)
    (catalog / "heldout_items.jsonl").write_text("".join(json.dumps({"item_id": i}) + "\n" for i in new_ids))
    assert cli_main(_args(catalog, tmp_path / "run_heldout", "--data", str(other))) == 0


def test_resuming_another_runs_checkpoint_into_a_folder_with_files_is_refused(tmp_path, capsys):
    """--resume_from_checkpoint of another folder's run into a non-empty --output_dir would end by replacing what
    that folder holds: refused in one line (into an empty folder, or with --overwrite, it is allowed)."""
    catalog = _catalog(tmp_path)
    assert cli_main(_args(catalog, tmp_path / "run_a", "--max_steps", "2")) == 0
    capsys.readouterr()
    other = tmp_path / "other_model"
    other.mkdir()
    (other / "config.json").write_text("{}")  # someone's model
    code = cli_main(_args(catalog, other, "--resume_from_checkpoint", str(tmp_path / "run_a" / "checkpoint-2")))
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "is not one of its checkpoints" in err and "--overwrite" in err
    assert (other / "config.json").read_text() == "{}" and [p.name for p in other.iterdir()] == ["config.json"]
