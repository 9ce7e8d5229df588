"""Nothing lost (issue 19, cases 1-3): the journaled swap of `cobra_hf.safe_io`, `add-items --in-place` and
`prepare --overwrite` keep what cobra-hf did not write, and a process killed in the middle of a swap is repaired by
the next command. The kills are real: a subprocess SIGKILLs itself right after the n-th rename."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cobra_hf.safe_io import (
    JOURNAL_FILE,
    MARKER_FILE,
    check_not_inputs,
    read_marker,
    repair_interrupted,
    staging_dir,
    swap_into_place,
    write_marker,
)

SAFE_IO = Path(__file__).resolve().parents[1] / "src" / "cobra_hf" / "safe_io.py"
from conftest import COLD_FAST as FAST, COLD_MODEL as MODEL, move_killer  # noqa: E402
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _snapshot(folder: Path) -> dict:
    """Relative path -> bytes of every file under folder (hidden ones included)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and (".partial-" in p.name or ".old-" in p.name))


# --------------------------------------------------------------------------------------------------- the swap itself
def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """target: the user's folder (cobra's files a.txt, sub/ + the user's .git/ and notes.md); staged: the new a, sub."""
    target = tmp_path / "model"
    (target / ".git").mkdir(parents=True)
    (target / ".git" / "HEAD").write_text("ref")
    (target / "notes.md").write_text("# mine")
    (target / "a.txt").write_text("old a")
    (target / "sub").mkdir()
    (target / "sub" / "x").write_text("old x")
    (target / "stale.txt").write_text("old stale")
    return target, _stage(staging_dir(target))


def _stage(staged):
    (staged / "a.txt").write_text("new a")
    (staged / "sub").mkdir()
    (staged / "sub" / "x").write_text("new x")
    (staged / "b.txt").write_text("new b")
    return staged


NAMES = ["a.txt", "sub", "b.txt", "stale.txt"]


def test_swap_replaces_only_the_named_entries(tmp_path):
    target, staged = _folders(tmp_path)
    swap_into_place(staged, target, NAMES)
    assert _snapshot(target) == {".git/HEAD": b"ref", "notes.md": b"# mine", "a.txt": b"new a", "sub/x": b"new x",
                                 "b.txt": b"new b"}
    assert _hidden_leftovers(tmp_path) == []


def test_swap_that_fails_puts_the_old_entries_back(tmp_path, monkeypatch):
    import cobra_hf.safe_io as safe_io

    target, staged = _folders(tmp_path)
    before = _snapshot(target)
    real, calls = safe_io._move, []

    def failing(source, destination):
        calls.append(source)
        if len(calls) == 3:
            raise OSError("disk gone")
        real(source, destination)

    monkeypatch.setattr(safe_io, "_move", failing)
    with pytest.raises(OSError, match="disk gone"):
        swap_into_place(staged, target, NAMES)
    assert _snapshot(target) == before and _hidden_leftovers(tmp_path) == []


KILLER = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("safe_io", sys.argv[1])
safe_io = importlib.util.module_from_spec(spec); spec.loader.exec_module(safe_io)
what, after = sys.argv[3], int(sys.argv[4])
real, count = getattr(safe_io, what), [0]
def killing(*args):
    real(*args); count[0] += 1
    if count[0] == after:
        os.kill(os.getpid(), signal.SIGKILL)
setattr(safe_io, what, killing)
target = safe_io.Path(sys.argv[2])
staged = safe_io.staging_dir(target)  # made by the process that swaps, as the commands do
%s
safe_io.swap_into_place(_stage(staged), target, %r)
""" % (inspect.getsource(_stage), NAMES)


@pytest.mark.parametrize("what,after", [("_move", 1), ("_move", 2), ("_move", 4), ("_move", 6), ("_remove", 1)])
def test_swap_killed_anywhere_is_repaired_by_the_next_run(tmp_path, what, after):
    target, staged = _folders(tmp_path)
    shutil.rmtree(staged)
    before = _snapshot(target)
    killed = subprocess.run([sys.executable, "-c", KILLER, str(SAFE_IO), str(target), what, str(after)],
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _hidden_leftovers(tmp_path)  # the kill left its folders
    done = repair_interrupted(target)
    assert done and _hidden_leftovers(tmp_path) == []
    if what == "_move":  # the swap had not finished: it is undone
        assert _snapshot(target) == before
    else:  # it had: the new entries stay, the user's files too
        assert _snapshot(target)["a.txt"] == b"new a" and _snapshot(target)[".git/HEAD"] == b"ref"
    assert repair_interrupted(target) == []  # nothing more to do


def test_repair_leaves_running_processes_and_foreign_folders_alone(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    foreign = tmp_path / ".model.partial-12345678"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("not cobra's")
    ours = staging_dir(target)  # this process is alive: in use
    assert repair_interrupted(target) == []
    assert foreign.is_dir() and ours.is_dir()


def test_repair_leaves_the_swap_and_staging_of_another_host_alone(tmp_path):
    """On a file system that two machines share, a pid means nothing across them: a swap journal or staging marker
    written on another host is left as it is (its process may still run there), and a staging folder of another
    host is never taken over. The same leftovers written on this host by a process that is gone are repaired."""
    target, staged = _folders(tmp_path)
    shutil.rmtree(staged)
    before = _snapshot(target)
    killed = subprocess.run([sys.executable, "-c", KILLER, str(SAFE_IO), str(target), "_move", "2"],
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    leftovers = {name: tmp_path / name for name in _hidden_leftovers(tmp_path)}
    journal_path = next(p for p in leftovers.values() if (p / JOURNAL_FILE).exists()) / JOURNAL_FILE
    marker_path = next(p for p in leftovers.values() if (p / MARKER_FILE).exists()) / MARKER_FILE
    journal, marker = json.loads(journal_path.read_text()), json.loads(marker_path.read_text())
    assert journal["host"] == marker["host"]  # both record where they were written
    for path, record in ((journal_path, journal), (marker_path, marker)):
        path.write_text(json.dumps({**record, "host": "another-host"}))
    done = repair_interrupted(target)
    assert len(done) == 1 and "another-host" in done[0] and "left as it is" in done[0]
    assert sorted(_hidden_leftovers(tmp_path)) == sorted(leftovers) and _snapshot(target) != before
    with pytest.raises(FileExistsError, match="in use by another process on another-host"):
        staging_dir(target, suffix=marker_path.parent.name.rsplit("-", 1)[1])
    for path, record in ((journal_path, journal), (marker_path, marker)):  # written here: the process is gone
        path.write_text(json.dumps(record))
    assert repair_interrupted(target) and _hidden_leftovers(tmp_path) == [] and _snapshot(target) == before


def test_legacy_state_with_the_folder_renamed_away_is_restored(tmp_path):
    """cobra-hf before this fix renamed MODEL away, then the new one in: a kill in between left no MODEL."""
    old = tmp_path / ".model.old-abcdef12"
    old.mkdir()
    (old / "config.json").write_text("{}")
    done = repair_interrupted(tmp_path / "model")
    assert "restored" in done[0] and (tmp_path / "model" / "config.json").read_text() == "{}"
    assert _hidden_leftovers(tmp_path) == []


def test_marker_and_input_checks(tmp_path):
    folder = tmp_path / "cat"
    folder.mkdir()
    (folder / "a").write_text("1")
    write_marker(folder, "cobra-hf prepare")
    assert read_marker(folder)["files"] == sorted(["a", MARKER_FILE])
    data = tmp_path / "data"
    with pytest.raises(ValueError, match="--output .* is the data folder"):
        check_not_inputs(data, {"the data folder": data}, "--output")
    with pytest.raises(ValueError, match="--output .* holds the data folder"):
        check_not_inputs(tmp_path, {"the data folder": data}, "--output")
    check_not_inputs(data / "catalog", {"the data folder": data}, "--output")  # inside the data folder is fine


# --------------------------------------------------------------------------------------------------- add-items
@pytest.fixture(scope="module")
def cold(tmp_path_factory, data_tiny_encoder):
    """A tiny catalog with 10% of the items held out and an untrained model's checkpoint on it."""
    from conftest import make_cold_start

    return make_cold_start(tmp_path_factory.mktemp("safe_io_cold"), data_tiny_encoder)


def _user_model(cold, tmp_path: Path) -> Path:
    """A checkpoint as a user has it: a git clone of a Hub repo with their notes and a Trainer checkpoint."""
    model_dir = tmp_path / "model"
    shutil.copytree(cold["checkpoint"], model_dir)
    (model_dir / ".git").mkdir()
    (model_dir / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (model_dir / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (model_dir / "README.md").write_text("# notes\n")
    (model_dir / "checkpoint-20").mkdir()
    (model_dir / "checkpoint-20" / "optimizer.pt").write_bytes(b"state")
    return model_dir


def _items(cold, tmp_path: Path, rows) -> Path:
    path = tmp_path / "new.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_add_items_in_place_keeps_everything_it_does_not_own(cold, tmp_path):
    """Case 1: .git/, .gitattributes, checkpoint-N/ and a hand-written README.md stay as they were."""
    from cobra_hf.cli.main import main
    from cobra_hf.inference import load_checkpoint

    model_dir = _user_model(cold, tmp_path)
    before = _snapshot(model_dir)
    items = _items(cold, tmp_path, cold["heldout"][:2])
    assert main(["add-items", str(model_dir), str(items), "--in-place"]) == 0
    after = _snapshot(model_dir)
    for name in (".git/HEAD", ".gitattributes", "checkpoint-20/optimizer.pt", "README.md"):
        assert after[name] == before[name], name
    assert after["model.safetensors"] != before["model.safetensors"]
    assert MARKER_FILE not in after  # nothing new of ours in the user's folder
    _, tokenizer = load_checkpoint(str(model_dir))
    assert cold["heldout"][1]["item_id"] in tokenizer.item_to_index
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "new.jsonl"]


ADD_ITEMS_KILLER = move_killer("count[0] == 1")


def test_add_items_killed_between_two_renames_is_repaired_by_the_next_command(cold, tmp_path):
    """Case 3: SIGKILL right after the first rename of the swap; the next add-items restores the model, then works."""
    from cobra_hf.cli.main import main
    from cobra_hf.inference import load_checkpoint

    model_dir = _user_model(cold, tmp_path)
    before = _snapshot(model_dir)
    items = _items(cold, tmp_path, cold["heldout"][:2])
    killed = subprocess.run([sys.executable, "-c", ADD_ITEMS_KILLER, "add-items", str(model_dir), str(items),
                             "--in-place"], capture_output=True, text=True, timeout=300, env=ENV)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _snapshot(model_dir) != before  # one file was moved away: not loadable as it is

    _, tokenizer = load_checkpoint(str(model_dir))  # the next command (any that loads it) repairs first
    assert _snapshot(model_dir) == before and _hidden_leftovers(tmp_path) == []
    assert cold["heldout"][0]["item_id"] not in tokenizer.item_to_index
    assert main(["add-items", str(model_dir), str(items), "--in-place"]) == 0
    _, tokenizer = load_checkpoint(str(model_dir))
    assert cold["heldout"][0]["item_id"] in tokenizer.item_to_index


OUTPUT_KILLER = move_killer("args[1].name == 'new_model'")  # the staged checkpoint was just renamed into place


def test_add_items_output_killed_after_its_rename_is_finished_by_the_next_command(cold, tmp_path):
    """The last window of a write to a new --output: the folder is in place, its staging marker not yet removed.
    The next command removes the stale marker (and only it); the checkpoint is the finished one."""
    from cobra_hf.cli.main import main
    from cobra_hf.inference import load_checkpoint

    output = tmp_path / "new_model"
    items = _items(cold, tmp_path, cold["heldout"][:2])
    killed = subprocess.run([sys.executable, "-c", OUTPUT_KILLER, "add-items", str(cold["checkpoint"]), str(items),
                             "--output", str(output)], capture_output=True, text=True, timeout=300, env=ENV)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert read_marker(output) is not None and _hidden_leftovers(tmp_path) == []
    files = _snapshot(output)

    assert any("staging mark" in message for message in repair_interrupted(output))
    assert _snapshot(output) == {name: data for name, data in files.items() if name != MARKER_FILE}
    _, tokenizer = load_checkpoint(str(output))
    assert cold["heldout"][0]["item_id"] in tokenizer.item_to_index
    assert repair_interrupted(output) == []
    (output / MARKER_FILE).write_text(json.dumps({"staging_for": "new_model", "pid": os.getpid(), "files": []}))
    assert repair_interrupted(output) == [] and (output / MARKER_FILE).exists()  # a live writer's: left alone


# --------------------------------------------------------------------------------------------------- prepare
def _prepare(cold, data: Path, output: Path, *extra: str) -> int:
    from cobra_hf.cli.main import main

    return main(["prepare", str(data), "--output", str(output), "--encoder", str(cold["encoder"]), "--levels", "2",
                 "--codebook-size", "8", "--epochs", "2", "--max-text-tokens", "8", "--quiet", *extra])


def test_prepare_overwrite_refuses_the_data_folder_its_parent_and_foreign_folders(cold, tmp_path, capsys):
    """Case 2: --overwrite never deletes the inputs or a folder cobra-hf did not write."""
    root = tmp_path / "work"
    data = root / "data"
    shutil.copytree(cold["data"], data)
    (root / "other").mkdir()
    (root / "other" / "important.txt").write_text("keep")
    before = _snapshot(tmp_path)
    assert _prepare(cold, data, data, "--overwrite") == 1
    assert "is the data folder" in capsys.readouterr().err
    assert _prepare(cold, data, root, "--overwrite") == 1
    assert "holds the data folder" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    before = _snapshot(tmp_path)
    for extra in ((), ("--overwrite",)):
        assert _prepare(cold, data, foreign, *extra) == 1
        err = capsys.readouterr().err
        assert "not written by cobra-hf" in err and "--overwrite" not in err  # no invitation to destroy it
    assert _snapshot(tmp_path) == before


def test_prepare_overwrite_replaces_only_its_own_files(cold, tmp_path, capsys):
    data, catalog = cold["data"], tmp_path / "catalog"
    assert _prepare(cold, data, catalog, "--holdout-fraction", "0.1") == 0
    assert read_marker(catalog)["written_by"] == "cobra-hf prepare"
    (catalog / "my_notes.txt").write_text("mine")
    assert _prepare(cold, data, catalog) == 1
    assert "--overwrite" in capsys.readouterr().err  # ours: replacing it is offered
    assert _prepare(cold, data, catalog, "--overwrite") == 0
    assert (catalog / "my_notes.txt").read_text() == "mine"
    assert not (catalog / "heldout_items.jsonl").exists()  # an old file of ours that the new run does not make
    assert _hidden_leftovers(tmp_path) == []


PREPARE_KILLER = move_killer("args[0].name == 'item_catalog.json'")  # moved away


def test_prepare_overwrite_killed_mid_swap_is_repaired_by_the_next_prepare(cold, tmp_path):
    """Case 3 for prepare: SIGKILL inside the swap; the next prepare puts the old catalog back, then replaces it."""
    catalog = tmp_path / "catalog"
    assert _prepare(cold, cold["data"], catalog, "--seed", "1") == 0
    before = _snapshot(catalog)
    args = ["prepare", str(cold["data"]), "--output", str(catalog), "--encoder", str(cold["encoder"]), "--levels", "2",
            "--codebook-size", "8", "--epochs", "2", "--max-text-tokens", "8", "--quiet", "--overwrite"]
    killed = subprocess.run([sys.executable, "-c", PREPARE_KILLER, *args], capture_output=True, text=True, timeout=300,
                            env=ENV)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _hidden_leftovers(tmp_path) and not (catalog / "item_catalog.json").is_file()
    assert _prepare(cold, cold["data"], catalog, "--overwrite") == 0  # repairs, then replaces
    assert _hidden_leftovers(tmp_path) == [] and _snapshot(catalog).keys() == before.keys()


# --------------------------------------------------------------------------------------------------- add-items --catalog
def test_add_items_refuses_the_quantizer_of_another_prepare_run(cold, tmp_path, capsys):
    """Case 10: --catalog OTHER (another prepare run: another quantizer) is refused by fingerprint; a checkpoint
    without catalog/ assets is checked by the IDs the catalog gives its own items."""
    from cobra_hf.cli.main import main
    from cobra_hf.semantic_ids import build_catalog

    other = build_catalog(cold["data"], tmp_path / "other", encoder=cold["encoder"], max_text_tokens=8,
                          holdout_fraction=0.1, seed=7, **FAST)
    items = _items(cold, tmp_path, cold["heldout"][:2])
    model_dir = cold["checkpoint"]
    assert main(["add-items", str(model_dir), str(items), "--catalog", str(other), "--output", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "another `cobra-hf prepare` run" in err and "--catalog" in err and not (tmp_path / "x").exists()
    assert main(["add-items", str(model_dir), str(items), "--catalog", str(cold["catalog"]),
                 "--output", str(tmp_path / "same")]) == 0  # the catalog it was trained on is fine

    from cobra_hf.cold_start import add_items  # the Python entry point refuses it too, and changes nothing
    from cobra_hf.inference import load_checkpoint

    model, tok = load_checkpoint(str(model_dir))
    rows = [json.loads(line) for line in items.read_text().splitlines()]
    with pytest.raises(ValueError, match="another `cobra-hf prepare` run"):
        add_items(model, tok, rows, other)
    assert tok.num_items == model.config.num_items and rows[0]["item_id"] not in tok.item_to_index

    bare = tmp_path / "bare"  # saved before cold-start support: no catalog/ folder
    shutil.copytree(model_dir, bare)
    shutil.rmtree(bare / "catalog")
    assert main(["add-items", str(bare), str(items), "--catalog", str(other), "--output", str(tmp_path / "y")]) == 1
    assert "is not the catalog" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert main(["add-items", str(bare), str(items), "--catalog", str(cold["catalog"]),
                 "--output", str(tmp_path / "z")]) == 0


def test_add_items_in_place_keeps_weight_files_cobra_hf_did_not_write(cold, tmp_path):
    """A pytorch_model.bin the user put in the model folder is another layout's weights, but not ours to delete;
    one that a cobra-hf save recorded in checksums.json is replaced as stale."""
    from cobra_hf.cli.main import main
    from cobra_hf.integrity import read_checksums

    model_dir = _user_model(cold, tmp_path)
    (model_dir / "pytorch_model.bin").write_bytes(b"the user's own copy")
    (model_dir / "model.safetensors.index.json").write_text("{}")  # pretend a cobra-hf save wrote this one
    record = json.loads((model_dir / "checksums.json").read_text())
    from cobra_hf.integrity import file_sha256

    index = model_dir / "model.safetensors.index.json"
    record["files"][index.name] = {"size": 2, "sha256": file_sha256(index)}
    (model_dir / "checksums.json").write_text(json.dumps(record))
    items = _items(cold, tmp_path, cold["heldout"][:2])
    assert main(["add-items", str(model_dir), str(items), "--in-place"]) == 0
    assert (model_dir / "pytorch_model.bin").read_bytes() == b"the user's own copy"
    assert not (model_dir / "model.safetensors.index.json").exists()
    assert "model.safetensors.index.json" not in read_checksums(model_dir)


def test_a_save_never_replaces_a_catalog_folder_it_did_not_write(cold, tmp_path, capsys):
    """A `cobra-hf prepare` output (or any folder of the user's) named catalog/ inside the save folder: the model's
    save_pretrained, save_checkpoint and train refuse before writing anything (they used to rename it aside and
    delete it); a checkpoint's own catalog/ is still replaced."""
    from cobra_hf.cli.main import main
    from cobra_hf.hub.checkpoint import save_checkpoint
    from cobra_hf.inference import load_checkpoint

    model, tokenizer = load_checkpoint(str(cold["checkpoint"]))
    target = tmp_path / "export"
    shutil.copytree(cold["catalog"], target / "catalog")
    before = _snapshot(target)
    refusal = r"export/catalog is not the catalog/ folder of a checkpoint \(it holds "
    with pytest.raises(FileExistsError, match=refusal):
        model.save_pretrained(target)
    with pytest.raises(FileExistsError, match=refusal):
        save_checkpoint(model, tokenizer, target, catalog_dir=cold["catalog"])
    capsys.readouterr()
    code = main(["train", "--catalog", str(cold["catalog"]), "--output_dir", str(target), "--overwrite",
                 "--max_steps", "1", "--use_cpu", "True", "--eval_users", "0", "--disable_tqdm", "True"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1 and "is not the catalog/ folder of a checkpoint" in err[0], err
    assert _snapshot(target) == before
    own = tmp_path / "own"
    model.save_pretrained(own)
    (own / "catalog" / "prepare_args.json").write_text("{}")  # an older save's assets: replaced
    model.save_pretrained(own)
    save_checkpoint(model, tokenizer, own, catalog_dir=cold["catalog"])
    assert (own / "catalog" / "prepare_args.json").read_bytes() == (cold["catalog"] / "prepare_args.json").read_bytes()


def test_a_swapped_in_checkpoint_keeps_a_users_catalog_and_drops_its_own_stale_one(cold, tmp_path):
    """checkpoint_entries (the final save of CobraTrainer.save_model, add-items --in-place): a catalog/ of the user's
    in the target is refused before anything moves; a catalog/ an earlier cobra-hf save recorded, which the new
    checkpoint lacks (trained on a catalog without assets), goes with the old model instead of staying beside the new
    one with another quantizer."""
    from cobra_hf.inference import load_checkpoint
    from cobra_hf.safe_io import checkpoint_entries

    model, _ = load_checkpoint(str(cold["checkpoint"]))
    users = tmp_path / "users"
    shutil.copytree(cold["catalog"], users / "catalog")  # a prepare output kept under that name
    staged = staging_dir(users)
    model.save_pretrained(staged)
    with pytest.raises(FileExistsError, match="users/catalog is not the catalog/ folder of a checkpoint"):
        checkpoint_entries(staged, users)
    shutil.rmtree(staged)
    ours = tmp_path / "ours"
    model.save_pretrained(ours)  # records catalog/ in checksums.json
    model.catalog_assets = None  # the next model has no assets (a catalog made with --ids-from)
    staged = staging_dir(ours)
    model.save_pretrained(staged)
    assert not (staged / "catalog").exists()
    entries = checkpoint_entries(staged, ours)
    assert "catalog" in entries
    swap_into_place(staged, ours, entries)
    assert not (ours / "catalog").exists() and (ours / "config.json").is_file()
