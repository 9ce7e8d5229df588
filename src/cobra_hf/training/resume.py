"""Which checkpoint `cobra-hf train --resume_from_checkpoint` may continue from, checked before any training.

A checkpoint-N folder is resumable when the files the Trainer reads are whole: `trainer_state.json` parses,
`model.safetensors` holds as many bytes as its header says, and the torch files (`optimizer.pt`, `scheduler.pt`,
`rng_state*.pth`, `training_args.bin`) are complete zip archives (a truncated one has lost its central directory,
which sits at the end). Those checks read headers and file ends only; where the save recorded checksums.json (every
cobra-hf save does), each file it lists is also hashed once (a byte flipped inside the weights keeps the size and
the header: only its sha256 tells; about a second per GB).
"""

from __future__ import annotations

import json
import logging
import struct
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

# the Trainer writes a checkpoint in place (model first, trainer_state.json last): a run killed while saving leaves a
# folder without these files, which must not be resumed from
CHECKPOINT_COMPLETE_FILES = ("model.safetensors", "trainer_state.json")
TORCH_FILES = ("optimizer.pt", "scheduler.pt", "training_args.bin", "rng_state.pth")


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the data its offsets end at."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if 8 + length > size:
                return "its header is cut off"
            header = json.loads(handle.read(length))
    except (struct.error, ValueError, UnicodeDecodeError):
        return "its header is not readable"
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    return None if 8 + length + end == size else f"it holds {size} bytes, its header says {8 + length + end}"


def checkpoint_problem(folder: str | Path) -> str | None:
    """What makes checkpoint-N `folder` impossible to resume from ("no trainer_state.json", "optimizer.pt is
    truncated", ...), or None when it looks whole."""
    folder = Path(folder)
    missing = [name for name in CHECKPOINT_COMPLETE_FILES if not (folder / name).is_file()]
    if missing:
        return f"no {', '.join(missing)} (the run stopped while saving it)"
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "trainer_state.json is empty or damaged"
    for path in sorted(folder.glob("*.safetensors")):
        problem = _safetensors_problem(path)
        if problem:
            return f"{path.name} is damaged ({problem})"
    for path in sorted(p for p in folder.iterdir() if p.name in TORCH_FILES or p.name.startswith("rng_state")):
        if not zipfile.is_zipfile(path):
            return f"{path.name} is truncated or damaged"
    from ..integrity import verify_files  # the Trainer loads checkpoint weights itself, past from_pretrained's check

    try:
        verify_files(folder)
    except ValueError as err:
        return str(err).split(". Re-save")[0].replace(f"{folder}/", "")  # "model.safetensors is corrupted ..."
    return None


def _numbered(output_dir: str) -> list[Path]:
    """checkpoint-N folders of output_dir, newest (largest N) first."""
    folders = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
    return sorted(folders, key=lambda path: int(path.name[11:]), reverse=True)


def resolve_resume_checkpoint(value: str | None, output_dir: str) -> str | None:
    """--resume_from_checkpoint: a checkpoint folder (refused with a ValueError naming what is wrong when it is
    half-written or damaged), or "last" / "True" for the newest whole checkpoint-N in output_dir (damaged or
    incomplete ones, e.g. from a run killed while saving, are skipped with a warning naming them)."""
    if value is None or str(value).lower() in ("false", "none", ""):
        return None
    if str(value).lower() in ("last", "true"):
        for folder in _numbered(output_dir):
            problem = checkpoint_problem(folder)
            if problem is None:
                return str(folder)
            logger.warning("Skipping %s: %s; resuming from an earlier checkpoint.", folder, problem)
        raise ValueError(f"No complete checkpoint-N folder in {output_dir} to resume from (--resume_from_checkpoint).")
    folder = Path(value)
    if not folder.is_dir():
        raise FileNotFoundError(f"Checkpoint folder {folder} (--resume_from_checkpoint) does not exist.")
    problem = checkpoint_problem(folder)
    if problem:
        raise ValueError(
            f"Checkpoint {folder} is incomplete or damaged: {problem}. Resume from an earlier checkpoint, or pass "
            "--resume_from_checkpoint last."
        )
    return str(folder)


def check_same_catalog(resume: str, catalog_hash: str, catalog: str) -> None:
    """Refuses a checkpoint trained on another catalog than --catalog (its ID buffers would not be the catalog's)."""
    try:
        saved = json.loads((Path(resume) / "config.json").read_text(encoding="utf-8")).get("catalog_hash", "")
    except (OSError, ValueError):
        return  # a checkpoint without a readable config: the Trainer reports it
    if saved and catalog_hash and saved != catalog_hash:
        raise ValueError(
            f"--resume_from_checkpoint {resume} was trained on another catalog (hash {saved}) than --catalog {catalog} "
            f"({catalog_hash}); resume with the catalog it was trained on, or start a new run with --init_from."
        )


def reached_budget(resume: str, training_args) -> bool:
    """Whether checkpoint `resume` is at or past the run's budget (--max_steps, or the epochs it planned when no more
    are asked for): resuming it would train nothing more."""
    state = json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8"))
    step = int(state["global_step"])
    if training_args.max_steps > 0:
        return step >= training_args.max_steps
    planned_epochs = float(state.get("num_train_epochs") or 0)
    return step >= int(state.get("max_steps") or 0) > 0 and training_args.num_train_epochs <= planned_epochs


def check_not_finished(resume: str, training_args, output_dir: str, overwrite: bool, phase: str | None = None) -> None:
    """Refuses to resume a run that is already over: a checkpoint at or past --max_steps (the Trainer would train a
    step past it and overwrite the final model), or, without --overwrite, an earlier checkpoint of a run whose
    final model is in output_dir (resuming would replace that model). phase: the training_summary.json entry whose
    global_step the checkpoint counts in (a phase after the main run, e.g. "id_trunk_phase"); None = the main run."""
    step = int(json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
    if reached_budget(resume, training_args):
        budget = (f"--max_steps {training_args.max_steps}" if training_args.max_steps > 0
                  else f"--num_train_epochs {training_args.num_train_epochs}")
        raise ValueError(
            f"--resume_from_checkpoint {resume} is at step {step}: the run already reached {budget}; raise "
            "--max_steps (or --num_train_epochs) to train further."
        )
    summary = Path(output_dir) / "training_summary.json"
    if not (Path(output_dir) / "config.json").is_file():
        return  # no final model to lose
    try:
        record = json.loads(summary.read_text(encoding="utf-8"))
        final_step = int((record[phase] if phase else record)["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if step < final_step and not overwrite:
        raise ValueError(
            f"{output_dir} already holds the final model of this run (step {final_step}); resuming from step {step} "
            "would replace it: pass --overwrite to do so."
        )
