"""Writing a checkpoint folder from a command (`add-items`, `join`): to a new or empty --output, or in place over
the checkpoint it came from, never over anything else, and atomically (built beside the target, then moved in)."""

from __future__ import annotations

import shutil
from pathlib import Path


def check_new_output(output: str | Path, inputs: dict[str, str | Path | None]) -> Path:
    """A new or empty folder to write, that is none of the `inputs` ({what it is: path}) and holds none of them. A
    swap that an earlier run left half-done there is repaired first."""
    from ..safe_io import check_not_inputs, is_nonempty_dir, repair_interrupted

    output = Path(output)
    repair_interrupted(output)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output {output} exists and is not a folder.")
    if is_nonempty_dir(output):
        raise FileExistsError(f"--output folder {output} is not empty; choose a new folder (nothing was written).")
    check_not_inputs(output, inputs, "--output")
    return output


def _copy_extras(source: Path, target: Path) -> None:
    """Files of the checkpoint that save_pretrained does not write again (training summary, card, ...)."""
    for path in source.iterdir():
        if path.name.startswith(".") or (target / path.name).exists():
            continue
        if path.is_dir():
            if path.name.startswith("checkpoint-"):
                continue  # Trainer checkpoints belong to the old weights or catalog
            shutil.copytree(path, target / path.name)
        else:
            shutil.copy2(path, target / path.name)


def write_checkpoint(model, tokenizer, output: Path, source_dir: Path, in_place: bool = False,
                     assets_source: Path | None = None, copy_extras: bool = True) -> None:
    """Saves model + tokenizer (save_checkpoint: card, catalog assets, checksums) beside `output`, then moves it in.
    in_place (output is source_dir): only the entries a saved checkpoint has are replaced (`checkpoint_entries`:
    .git/, checkpoint-N/, a hand-written README.md stay). Otherwise the whole folder is renamed into place, with
    source_dir's other files (copy_extras). A kill in between is repaired by the next command (`repair_interrupted`)."""
    from ..hub.checkpoint import save_checkpoint, training_info_from_summary
    from ..safe_io import MARKER_FILE, checkpoint_entries, is_nonempty_dir, staging_dir, swap_into_place

    tmp = staging_dir(output)
    try:
        training_info, dataset = training_info_from_summary(source_dir)
        save_checkpoint(model, tokenizer, tmp, training_info=training_info or None, dataset_name=dataset,
                        catalog_dir=assets_source)
        if in_place:
            swap_into_place(tmp, output, checkpoint_entries(tmp, output))
            return
        if copy_extras:
            _copy_extras(source_dir, tmp)
        if is_nonempty_dir(output):  # someone wrote there while we worked
            raise FileExistsError(f"--output folder {output} is not empty; choose a new folder (nothing was written).")
        swap_into_place(tmp, output)
        # the staging marker moves in with the folder and goes only now: a kill before this line leaves a finished
        # checkpoint whose stale staging marker `repair_interrupted` removes (it deletes no unmarked folder)
        (output / MARKER_FILE).unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
