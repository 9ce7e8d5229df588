"""The ID trunk's own phase at the end of `cobra-hf train` (`--recipe trunk`): the trunk alone for more epochs.

Why a second phase: a model built with `id_trunk` has two decoders, the main one (dense vectors, ID-free head) and
the trunk (the IDs). Measured on Beauty (docs/EXPERIMENTS.md, "two-phase trunk", 3 seeds), the trunk gains from
more epochs than the dense half needs: training it alone for 16 more epochs (everything else frozen, the main
backbone not run, `model.train_id_trunk_only()`) took COBRA mode from +3.8% to +5.2% over the same model's dense-only
mode, and a second phase costs what an ID-only model's epochs do. The phase is the same procedure as a second
command, `cobra-hf train --init_from MODEL --train_only id_trunk`, run in the same process: a test holds the two
bit-identical.

Its settings are the recipe's `id_trunk_phase` (TrainingArguments fields over the main run's). A `--max_steps` or
`--num_train_epochs` that changes the recipe's main run sets the phase's length too (a flag outranks the recipe);
`--id_trunk_epochs` sets the phase's epochs alone and clears `--max_steps` for it. Its Trainer writes checkpoint-N
folders into OUTPUT_DIR/id_trunk_phase/, so `--resume_from_checkpoint last` knows which phase a killed run was in: a
checkpoint there resumes the trunk's phase (the main phase is over), otherwise the main phase resumes as usual and,
if it had already finished, only its weights are loaded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from .resume import resolve_resume_checkpoint

logger = logging.getLogger(__name__)

PHASE_DIR = "id_trunk_phase"  # the phase's checkpoint-N folders, inside --output_dir


def phase_settings(recipe, id_trunk_epochs: float | None, max_steps: int = -1,
                   num_train_epochs: float | None = None) -> dict:
    """The phase's TrainingArguments overrides: the recipe's `id_trunk_phase`, then `--id_trunk_epochs` (0 = no
    phase). {} = no phase. The main run's length, where the command line changed it from the recipe's, sets the
    phase's too unless `--id_trunk_epochs` is given: `max_steps` > 0 (no recipe sets it) and `num_train_epochs` other
    than the recipe's `training` epochs. So `--max_steps 50` or `--num_train_epochs 2` make a short run of both
    phases, not one that ends with the recipe's 16 full epochs of the trunk."""
    settings = dict(getattr(recipe, "id_trunk_phase", None) or {})
    if settings and id_trunk_epochs is None:
        recipe_epochs = (getattr(recipe, "training", None) or {}).get("num_train_epochs")
        if max_steps > 0:
            settings.pop("num_train_epochs", None)
            settings["max_steps"] = int(max_steps)
        elif num_train_epochs is not None and recipe_epochs is not None and num_train_epochs != recipe_epochs:
            settings["num_train_epochs"] = float(num_train_epochs)
    if id_trunk_epochs is not None:
        if id_trunk_epochs < 0:
            raise ValueError(f"--id_trunk_epochs must be 0 (no ID-trunk phase) or more, got {id_trunk_epochs}.")
        if id_trunk_epochs == 0:
            return {}
        settings["num_train_epochs"] = float(id_trunk_epochs)
    return settings


def default_phase(settings: dict, asked: bool, train_only: str | None, init_from: str | None) -> dict:
    """The phase a recipe adds, where the default recipe (no --recipe, no --id_trunk_epochs: `asked` false) cannot
    apply it: after `--train_only id_trunk` (that run already is the phase) and on an `--init_from` checkpoint with no
    ID trunk, the phase is dropped with one warning instead of refusing a command that named no recipe. Asked for
    explicitly, it stays, and check_phase refuses it there."""
    if not settings or asked:
        return settings
    reason = None
    if train_only:
        reason = f"--train_only {train_only} already trains the ID trunk alone"
    elif init_from and not _has_id_trunk(init_from):
        reason = f"the --init_from checkpoint {init_from} has no ID trunk"
    if reason is None:
        return settings
    logger.warning("the default recipe's last phase (the ID trunk alone) is skipped: %s (--id_trunk_epochs 0 says "
                   "so without this warning).", reason)
    return {}


def _has_id_trunk(checkpoint: str) -> bool:
    """Whether a checkpoint's config has an ID trunk; True where it cannot be read (loading it names the problem)."""
    from ..configuration_cobra import CobraConfig

    try:
        return bool(CobraConfig.from_pretrained(checkpoint).id_trunk)
    except (OSError, ValueError):
        return True


def check_phase_not_over(output_dir: str, resume: str, overwrite: bool) -> None:
    """Refuses to resume the main phase's last checkpoint of a run whose final model (after both phases) is already in
    output_dir: the trunk's phase would train again from its start and replace that model. --overwrite allows it."""
    out = Path(output_dir)
    try:
        over = (out / "config.json").is_file() and PHASE_DIR in json.loads(
            (out / "training_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return
    if over and not overwrite:
        raise ValueError(f"{output_dir} already holds the final model of this run, after its ID-trunk phase; resuming "
                         f"from {resume} would train that phase again and replace it: pass --overwrite to do so.")


def check_phase(settings: dict, model, source: str, train_only: str | None) -> None:
    """A phase needs a trunk to train, and `--train_only id_trunk` already is that phase: one-line refusals naming
    `source`, the flag that asked for the phase."""
    if not settings:
        return
    if not model.config.id_trunk:
        raise ValueError(f"{source} adds an ID-trunk phase, but the model has no ID trunk (config.id_trunk is false): "
                         "train with --id_trunk True, or pass --id_trunk_epochs 0.")
    if train_only:
        raise ValueError(f"--train_only {train_only} already trains the ID trunk alone; {source} would add a second "
                         "such phase: pass --id_trunk_epochs 0.")


def phase_arguments(training_args, settings: dict):
    """The main run's TrainingArguments with the phase's settings over them, writing into OUTPUT_DIR/id_trunk_phase."""
    changes = dict(settings)
    if "num_train_epochs" in changes and "max_steps" not in changes:
        changes["max_steps"] = -1  # an epoch budget for the phase, whatever bounded the main run
    changes["output_dir"] = str(Path(training_args.output_dir) / PHASE_DIR)
    # the keys are TrainingArguments fields (check_recipe); replace() runs __post_init__ again, which derives the rest
    return dataclasses.replace(training_args, **changes)


def resume_points(value: str | None, output_dir: str, with_phase: bool) -> tuple[str | None, str | None]:
    """--resume_from_checkpoint -> (main-phase checkpoint to resume, ID-trunk-phase checkpoint to resume).
    Without a phase this is resolve_resume_checkpoint's answer; with one, "last" prefers the phase's newest whole
    checkpoint (the main phase is then over), and a folder inside OUTPUT_DIR/id_trunk_phase resumes the phase."""
    if not with_phase or value is None or str(value).lower() in ("false", "none", ""):
        return resolve_resume_checkpoint(value, output_dir), None
    phase_dir = Path(output_dir) / PHASE_DIR
    if str(value).lower() in ("last", "true"):
        if phase_dir.is_dir() and any(phase_dir.glob("checkpoint-*")):
            try:
                return None, resolve_resume_checkpoint(value, str(phase_dir))
            except ValueError:  # none of them whole: the main phase's last checkpoint is the way back
                pass
        return resolve_resume_checkpoint(value, output_dir), None
    folder = resolve_resume_checkpoint(value, output_dir)
    if phase_dir.resolve() in Path(folder).resolve().parents:
        return None, folder
    return folder, None


def finished_main_phase(trainer, resume: str | None, output_dir: str) -> dict:
    """A two-phase run resumed after its main phase: that phase's weights from its last checkpoint (`resume`; when
    the phase's own checkpoint is resumed, it brings every weight itself) and its record from trainer_state.json."""
    if resume:
        trainer._load_from_checkpoint(resume)
    try:
        checkpoint = resume or resolve_resume_checkpoint("last", output_dir)
    except ValueError:  # the main phase's checkpoints were removed: its record is lost, its weights are not
        return {"global_step": None, "train_loss": None, "log_history": []}
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    losses = [entry["loss"] for entry in state.get("log_history", []) if "loss" in entry]
    return {"global_step": int(state["global_step"]), "train_loss": losses[-1] if losses else None,
            "log_history": state.get("log_history", [])}


def train_id_trunk_phase(model, trainer, args, resume: str | None):
    """The ID trunk alone (id_trunk_phase.py) -> (its trainer, which makes the final save; its summary)."""
    model.train_id_trunk_only()
    start = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    finally:
        model.train_id_trunk_only(False)
    return trainer, {"global_step": result.global_step, "train_seconds": round(time.perf_counter() - start, 1),
                     "train_loss": round(result.training_loss, 4), "num_train_epochs": args.num_train_epochs,
                     "max_steps": args.max_steps, "learning_rate": args.learning_rate,
                     "log_history": trainer.state.log_history}
