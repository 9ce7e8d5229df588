"""Issue 19, cases 8, 16, 17 and 18: `cobra-hf evaluate` on data the catalog does not (fully) know counts what it
leaves out or refuses it; a model path that is not there fails at once with one line (and a Hub repo id says
whether the network or the repo was the problem); bad flags and data fail before the work, in one line that names
the flag the user typed. Every case runs the CLI in this process on a tiny saved checkpoint (40 items "i0".."i39")."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tiny import tiny_model

from cobra_hf.cli.main import main as cli_main
from cobra_hf.hub import save_checkpoint

CATALOG = [f"i{n}" for n in range(40)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    model, tokenizer = tiny_model()
    return save_checkpoint(model.eval(), tokenizer, tmp_path_factory.mktemp("cli_errors") / "model")


def write_data(root: Path, sequences: list[list[str]], extra_items: tuple[str, ...] = ()) -> Path:
    """A dataset folder: users U0.. with these sequences; items.jsonl names every item used (and extra_items)."""
    root.mkdir(parents=True, exist_ok=True)
    items = dict.fromkeys([*CATALOG, *extra_items, *(item for seq in sequences for item in seq)])
    (root / "items.jsonl").write_text("".join(json.dumps({"item_id": item, "title": item}) + "\n" for item in items))
    (root / "sequences.txt").write_text("".join(f"U{n} " + " ".join(seq) + "\n" for n, seq in enumerate(sequences)))
    return root


def known_sequences(users: int, length: int = 5) -> list[list[str]]:
    return [[CATALOG[(user * 7 + step * 3) % 40] for step in range(length)] for user in range(users)]


def run(capsys, *argv: str) -> tuple[int, str, list[str]]:
    """(exit code, stdout, stderr lines without progress bars)."""
    code = cli_main(list(argv))
    captured = capsys.readouterr()
    noise = ("Loading weights", "Map", "Filter", "evaluate:", "Writing model")
    lines = [line for line in captured.err.replace("\r", "\n").splitlines() if line.strip() and not line.startswith(noise)]
    return code, captured.out, lines


def assert_one_line_error(code: int, out: str, err: list[str], command: str, *words: str) -> str:
    assert code == 1 and out == "", (code, out, err)
    assert len(err) == 1 and err[0].startswith(f"cobra-hf {command}: error: "), err
    for word in words:
        assert word in err[0], (word, err[0])
    return err[0]


# ------------------------------------------------------------------------------------------------ case 8
def test_evaluate_counts_unknown_items_and_skipped_users(checkpoint, tmp_path, capsys, one_torch_thread):
    sequences = known_sequences(120)
    sequences[3][1] = "NEW-1"      # an unknown history item: dropped from that history, the user is evaluated
    sequences[5][-1] = "NEW-2"     # an unknown test target: 1 of 120 users (0.8%, under the 1% limit) is skipped
    data = write_data(tmp_path / "data", sequences)
    output = tmp_path / "metrics.json"
    code, out, err = run(capsys, "evaluate", str(checkpoint), "--data", str(data), "--output", str(output))
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["users"] == 119 and result["users_skipped"] == 1
    assert result["unknown_items"] == 2 and result["unknown_targets"] == 1
    assert json.loads(output.read_text()) == result
    warnings = [line for line in err if "warning" in line]
    assert len(warnings) == 1 and "1 of 120" in warnings[0] and "2 item ids" in warnings[0], err

    clean = write_data(tmp_path / "clean", known_sequences(30))
    code, out, err = run(capsys, "evaluate", str(checkpoint), "--data", str(clean))
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and result["users"] == 30 and result["users_skipped"] == 0 and result["unknown_items"] == 0
    assert not [line for line in err if "warning" in line]


def test_evaluate_refuses_a_test_set_with_many_unknown_targets_unless_drop_unknown(checkpoint, tmp_path, capsys,
                                                                                one_torch_thread):
    sequences = known_sequences(50)
    for user in range(10):
        sequences[user][-1] = f"NEW-{user}"  # 10 of 50 test targets (20%) are not in the catalog
    data = write_data(tmp_path / "data", sequences)
    code, out, err = run(capsys, "evaluate", str(checkpoint), "--data", str(data))
    assert_one_line_error(code, out, err, "evaluate", "10 of 50", "20.0%", "1%", "--drop-unknown")

    code, out, err = run(capsys, "evaluate", str(checkpoint), "--data", str(data), "--drop-unknown")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["users"] == 40 and result["users_skipped"] == 10 and result["unknown_targets"] == 10
    # the validation split of the same data knows every target: no refusal there
    code, out, _ = run(capsys, "evaluate", str(checkpoint), "--data", str(data), "--split", "validation")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["users_skipped"] == 0


def test_evaluate_on_fully_foreign_data_says_so_in_one_line(checkpoint, tmp_path, capsys):
    data = write_data(tmp_path / "foreign", [[f"X{(user + step) % 30}" for step in range(5)] for user in range(20)])
    for extra in ([], ["--drop-unknown"]):
        code, out, err = run(capsys, "evaluate", str(checkpoint), "--data", str(data), *extra)
        assert_one_line_error(code, out, err, "evaluate", "none of the", "sequences.txt", "catalog")


# ------------------------------------------------------------------------------------------------ case 16
@pytest.mark.parametrize("command", ["recommend", "evaluate"])
def test_a_missing_local_model_path_fails_at_once(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"not a folder")
    data = write_data(tmp_path / "data", known_sequences(5))
    extra = ["--history", "i1"] if command == "recommend" else ["--data", str(data)]
    for path in ("runs/nope", str(tmp_path / "nowhere" / "model"), "./nope", "model.safetensors"):
        start = time.perf_counter()
        code, out, err = run(capsys, command, path, *extra)
        assert time.perf_counter() - start < 5, path  # no network retries
        line = assert_one_line_error(code, out, err, command, f"no model folder at {path}")
        assert ("a file" in line) == (path == "model.safetensors")


def test_a_folder_that_is_not_a_checkpoint_is_named(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "recommend", str(tmp_path / "empty"), "--history", "i1")
    assert_one_line_error(code, out, err, "recommend", str(tmp_path / "empty"), "config.json")


def test_a_repo_id_missing_on_the_hub_or_offline_fails_fast_and_says_which(checkpoint, hub_patched, monkeypatch,
                                                                          capsys, one_torch_thread):
    from huggingface_hub import constants

    from cobra_hf.hub.push import push_checkpoint

    repo_id = hub_patched.repo_id("cobra-errors")
    push_checkpoint(str(checkpoint), repo_id)
    code, out, err = run(capsys, "recommend", repo_id, "--history", "i1", "i2", "--top-k", "3", "--json")
    assert code == 0 and len(json.loads(out)) == 3, err  # a repo that is there still loads

    missing = hub_patched.repo_id("never-pushed")
    start = time.perf_counter()
    code, out, err = run(capsys, "recommend", missing, "--history", "i1")
    assert time.perf_counter() - start < 10
    assert_one_line_error(code, out, err, "recommend", f"no model folder at {missing}", "no repo", hub_patched.endpoint)

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    start = time.perf_counter()
    code, out, err = run(capsys, "recommend", missing, "--history", "i1")
    assert time.perf_counter() - start < 10
    assert_one_line_error(code, out, err, "recommend", f"no model folder at {missing}", "could not reach the Hub")
    code, out, err = run(capsys, "recommend", repo_id, "--history", "i1", "i2", "--top-k", "3", "--json")
    assert code == 0 and len(json.loads(out)) == 3, err  # the Hub is away: the cached copy of the repo serves

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, out, err = run(capsys, "evaluate", missing, "--data", "unused")
    assert_one_line_error(code, out, err, "evaluate", f"no model folder at {missing}", "HF_HUB_OFFLINE")


# ------------------------------------------------------------------------------------------------ case 17
@pytest.mark.parametrize("flag, value", [("--max-users", "0"), ("--max-users", "-5"), ("--batch-size", "0")])
def test_evaluate_refuses_counts_below_one(checkpoint, tmp_path, capsys, flag, value):
    data = write_data(tmp_path / "data", known_sequences(5))
    code, out, err = run(capsys, "evaluate", str(checkpoint), "--data", str(data), flag, value)
    assert_one_line_error(code, out, err, "evaluate", flag, value)


def test_evaluate_refuses_mode_and_all_modes_together(checkpoint, tmp_path, capsys):
    """--all-modes evaluates every mode: a --mode beside it would be ignored, so the pair is refused."""
    data = write_data(tmp_path / "data", known_sequences(5))
    code, out, err = run(capsys, "evaluate", str(checkpoint), "--data", str(data), "--mode", "sparse", "--all-modes")
    assert_one_line_error(code, out, err, "evaluate", "--mode sparse and --all-modes")


def test_generation_flags_the_mode_does_not_read_are_refused(checkpoint, tmp_path, capsys):
    """A flag that the chosen mode (or the fusion) never reads used to change nothing with exit 0."""
    data = write_data(tmp_path / "data", known_sequences(5))
    base = ("evaluate", str(checkpoint), "--data", str(data), "--max-users", "3")
    code, out, err = run(capsys, *base, "--mode", "no_fusion", "--num-candidates", "3", "--num-beams", "4")
    assert_one_line_error(code, out, err, "evaluate", "--num-beams, --num-candidates changes nothing in no_fusion")
    code, out, err = run(capsys, *base, "--all-modes", "--beam-fusion", "paper", "--beam-fusion-dense-psi", "4")
    assert_one_line_error(code, out, err, "evaluate", "--beam-fusion-dense-psi changes nothing", "paper fusion")
    code, out, err = run(capsys, "recommend", str(checkpoint), "--history", "i1", "--mode", "sparse",
                         "--beam-fusion-psi", "3")
    assert_one_line_error(code, out, err, "recommend", "--beam-fusion-psi changes nothing in sparse mode")
    assert run(capsys, *base, "--mode", "sparse", "--num-beams", "4")[0] == 0  # what sparse mode reads


def test_prepare_refuses_a_negative_description_length(tmp_path, capsys):
    """A negative --max-description-chars used to act as 0 (the description silently left out)."""
    data = write_data(tmp_path / "data", known_sequences(5))
    code, out, err = run(capsys, "prepare", str(data), "--output", str(tmp_path / "cat"),
                         "--max-description-chars", "-1")
    assert_one_line_error(code, out, err, "prepare", "--max-description-chars must be >= 0", "-1")
    assert not (tmp_path / "cat").exists()


@pytest.mark.parametrize("flags, named", [(("--max-history", "0"), "--max-history must be at least 1, got 0"),
                                          (("--levels", "0"), "--levels must be at least 1, got 0"),
                                          (("--codebook-size", "0"), "--codebook-size must be at least 1"),
                                          (("--embed-max-length", "0"), "--embed-max-length must be at least 1"),
                                          (("--max-text-tokens", "-2"), "--max-text-tokens must be at least 1"),
                                          (("--quantizer", "rq-kmeans", "--epochs", "5"), "leave --epochs out")])
def test_prepare_refuses_sizes_below_one_and_epochs_it_would_ignore(tmp_path, capsys, flags, named):
    """--max-history 0 wrote a catalog that train refused later; --levels 0 with rq-kmeans ended in a traceback after
    the embedding pass; --epochs was silently ignored by RQ-KMeans. Each is now one line before any work."""
    data = write_data(tmp_path / "data", known_sequences(5))
    code, out, err = run(capsys, "prepare", str(data), "--output", str(tmp_path / "cat"), *flags)
    assert_one_line_error(code, out, err, "prepare", named)
    assert not (tmp_path / "cat").exists()


def test_train_refuses_max_train_sequences_below_one(tmp_path, capsys):
    """--max_train_sequences 0 trained on every sequence (a truthiness test)."""
    code, out, err = run(capsys, "train", "--catalog", str(tmp_path / "cat"), "--output_dir", str(tmp_path / "out"),
                         "--max_train_sequences", "0")
    assert_one_line_error(code, out, err, "train", "--max_train_sequences must be at least 1, got 0")
    assert not (tmp_path / "out").exists()


def test_evaluate_output_into_a_missing_folder_fails_before_the_evaluation(checkpoint, tmp_path, capsys, monkeypatch):
    import cobra_hf.evaluation as evaluation

    monkeypatch.setattr(evaluation, "evaluate_split", lambda *a, **k: pytest.fail("the evaluation ran"))
    data = write_data(tmp_path / "data", known_sequences(5))
    output = tmp_path / "no-such-folder" / "metrics.json"
    code, out, err = run(capsys, "evaluate", str(checkpoint), "--data", str(data), "--output", str(output))
    assert_one_line_error(code, out, err, "evaluate", "--output", str(output.parent))
    assert not output.parent.exists()


def test_training_data_without_a_training_sequence_names_the_file(checkpoint, tmp_path):
    from cobra_hf import CobraTokenizer
    from cobra_hf.training.datasets import index_splits

    data = write_data(tmp_path / "short", known_sequences(6, length=3))  # 3 items: validation and test only
    tokenizer = CobraTokenizer.from_pretrained(str(checkpoint))
    with pytest.raises(ValueError, match=r"sequences.txt.*no training sequence.*4 items"):
        index_splits(str(data), tokenizer)
    splits = index_splits(str(data), tokenizer, require_train=False)  # evaluation needs no training rows
    assert len(splits["test"]) == 6 and len(splits["train"]) == 0


# ------------------------------------------------------------------------------------------------ case 18
def test_recommend_errors_name_the_flags_the_user_typed(checkpoint, capsys):
    model = str(checkpoint)
    for top_k, words in (("0", ["--top-k", "at least 1"]), ("41", ["--top-k 41", "40"])):
        code, out, err = run(capsys, "recommend", model, "--history", "i1", "--top-k", top_k)
        line = assert_one_line_error(code, out, err, "recommend", *words)
        assert "recommend_top_k" not in line and "top_k=" not in line
    code, out, err = run(capsys, "recommend", model, "--history", "i1", "NOPE-7")
    line = assert_one_line_error(code, out, err, "recommend", "NOPE-7", "--skip-unknown")
    assert "unknown_items" not in line
    code, out, err = run(capsys, "recommend", model, "--history", "NOPE-7", "--skip-unknown")
    line = assert_one_line_error(code, out, err, "recommend", "NOPE-7")
    assert "unknown_items" not in line
    code, out, err = run(capsys, "recommend", model, "--history", "i1", "--num-beams", "0")
    assert "num_beams" not in assert_one_line_error(code, out, err, "recommend", "--num-beams")
    code, out, err = run(capsys, "recommend", model, "--history", "i1", "--beam-fusion-tau", "nan")
    assert "beam_fusion_tau" not in assert_one_line_error(code, out, err, "recommend", "--beam-fusion-tau")
    code, out, err = run(capsys, "recommend", model, "--history", "i1", "--beam-fusion-psi=-16")
    assert_one_line_error(code, out, err, "recommend", "--beam-fusion-psi must be >= 0, got -16.0")


def test_invalid_json_message_has_no_doubled_word(tmp_path):
    from cobra_hf.data.loading import load_items

    path = tmp_path / "items.jsonl"
    path.write_text('{"item_id": "A0"}\n{"item_id": "A1}\n')  # "Unterminated string starting at" ...
    with pytest.raises(ValueError) as info:
        load_items(path)
    assert "items.jsonl:2" in str(info.value) and "at at" not in str(info.value) and "column" in str(info.value)


def test_push_of_a_missing_folder_or_a_file_says_so_before_any_hub_request(tmp_path, capsys):
    (tmp_path / "weights.bin").write_bytes(b"x")
    for path, why in ((tmp_path / "nope", "does not exist"), (tmp_path / "weights.bin", "a file")):
        code, out, err = run(capsys, "push", str(path), "--repo-id", "someone/model")
        assert_one_line_error(code, out, err, "push", f"no model folder at {path}", why)


def test_train_on_data_without_a_training_sequence_fails_in_one_line(catalog_scientific, tmp_path, capsys):
    """Every user has 3 items: validation and test rows, no training sequence (the Trainer used to fail with
    "num_samples should be a positive integer")."""
    source = Path(json.loads((Path(catalog_scientific) / "prepare_args.json").read_text())["data_dir"])
    lines = [line.split() for line in (source / "sequences.txt").read_text().splitlines() if len(line.split()) >= 4]
    data = tmp_path / "short"
    data.mkdir()
    (data / "items.jsonl").write_text((source / "items.jsonl").read_text())
    (data / "sequences.txt").write_text("".join(" ".join(fields[:4]) + "\n" for fields in lines))
    code, out, err = run(capsys, "train", "--catalog", str(catalog_scientific), "--data", str(data), "--output_dir",
                         str(tmp_path / "model"), "--max_steps", "1", "--use_cpu", "True", "--report_to", "none",
                         "--disable_tqdm", "True")
    assert_one_line_error(code, out, err, "train", str(data / "sequences.txt"), "no training sequence", "4 items")


def test_generate_messages_get_the_flags_the_user_typed_and_only_those():
    from cobra_hf.cli.generation_flags import name_flags
    from cobra_hf.cli.recommend import build_parser

    args = build_parser().parse_args(["m", "--history", "i1", "--top-k", "50", "--mode", "dense"])
    assert name_flags("top_k=50 asks for more items than the catalog holds (40).", args).startswith("--top-k 50 asks")
    assert name_flags("recommend_top_k must be at least 1", args) == "--top-k must be at least 1"
    message = "mode='dense' needs the ID-free dense head; the dense mode needs dense_guided_ids"
    # --mode was typed, --dense-guided-ids was not (its value came from the checkpoint): only the first is renamed
    assert name_flags(message, args) == "--mode 'dense' needs the ID-free dense head; the dense mode needs dense_guided_ids"


def test_hf_hub_offline_in_the_environment_names_the_missing_cache(tmp_path):
    """The real console script with HF_HUB_OFFLINE=1 set in its environment (read once, at import)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    code = "import sys; from cobra_hf.cli.main import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "recommend", "someone/not-cached", "--history", "i1"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "cobra-hf recommend: error: no model folder at someone/not-cached, and the Hub repo someone/not-cached is not "
        "in the local cache (HF_HUB_OFFLINE=1 keeps the Hub out of reach)"
    ]


@pytest.mark.parametrize("command", ["prepare", "train", "evaluate", "recommend", "add-items", "join", "push"])
def test_every_command_prints_its_help(command, capsys):
    """`--help` of every command prints and exits 0: argparse formats each help text with %, so a stray % in a
    docstring that becomes a help text (CobraConfig's fields are train's flags) would break it."""
    from cobra_hf.cli.main import COMMANDS

    assert command in COMMANDS
    with pytest.raises(SystemExit) as exited:
        cli_main([command, "--help"])
    assert exited.value.code == 0 and f"cobra-hf {command}" in capsys.readouterr().out


def test_model_flag_help_is_each_fields_whole_docstring_entry():
    """A field's help runs to the next field's entry: a "word (`file.py`)" inside a text does not cut it short (the
    help of item_output_embeddings once stopped at "completes"), and every entry belongs to a CobraConfig field."""
    import inspect

    from cobra_hf.configuration_cobra import CobraConfig
    from cobra_hf.training.train import model_field_help

    help_text = model_field_help()
    assert set(help_text) <= set(inspect.signature(CobraConfig.__init__).parameters)
    assert help_text["item_output_embeddings"].endswith("With id_trunk the rows are the trunk's (its heads drive the "
                                                        "beams).")
    assert "%" in help_text["item_output_weight_decay"]  # kept here; the flag's help doubles it for argparse
