"""Upload a COBRA checkpoint folder to the Hugging Face Hub."""

from __future__ import annotations

import json
import re
from pathlib import Path

# What a checkpoint needs besides the code files named by auto_map.
REQUIRED_FILES = ("config.json", "item_catalog.json", "tokenizer_config.json", "README.md")
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
# Trainer leftovers and caches that do not belong in a model repo.
IGNORE_PATTERNS = [
    "checkpoint-*",
    "runs/*",
    "__pycache__/*",
    "*/__pycache__/*",
    ".cache/*",
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "*.tmp",
]
_RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.(\w+)\s+import\s", re.MULTILINE)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}).") from err


def _auto_map_modules(auto_map: dict | None) -> set[str]:
    """Module names (without .py) referenced by an auto_map ("module.Class", "repo--module.Class", lists)."""
    modules = set()
    for value in (auto_map or {}).values():
        for ref in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(ref, str) and "." in ref:
                modules.add(ref.split("--")[-1].rsplit(".", 1)[0])
    return modules


def checkpoint_problems(model_dir: str | Path) -> list[str]:
    """Everything missing from a checkpoint folder, one short phrase each (empty when complete)."""
    folder = Path(model_dir)
    if not folder.is_dir():
        return [f"the folder {folder} itself"]
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]

    if (folder / WEIGHTS_INDEX).is_file():
        shards = set(_read_json(folder / WEIGHTS_INDEX).get("weight_map", {}).values())
        missing += sorted(shard for shard in shards if not (folder / shard).is_file())
    elif not (folder / WEIGHTS).is_file():
        missing.append(WEIGHTS)

    modules = set()
    for name in ("config.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            auto_map = _read_json(folder / name).get("auto_map")
            modules |= _auto_map_modules(auto_map)
            if name == "config.json" and not auto_map:
                missing.append("an auto_map in config.json (needed for trust_remote_code loading)")
    # The code files import each other with `from .name import X`: those must travel too.
    todo, seen = sorted(modules), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = folder / f"{module}.py"
        if not path.is_file():
            missing.append(f"{module}.py")
            continue
        todo += [m for m in _RELATIVE_IMPORT.findall(path.read_text(encoding="utf-8")) if m not in seen]
    return missing


def validate_checkpoint(model_dir: str | Path) -> None:
    """Raise a ValueError naming every missing piece if `model_dir` is not a complete checkpoint."""
    if not Path(model_dir).is_dir():
        raise FileNotFoundError(f"The checkpoint folder {model_dir} does not exist.")
    missing = checkpoint_problems(model_dir)
    if missing:
        hint = ""
        if "README.md" in missing:
            hint = " (write a model card with `cobra_hf.hub.write_model_card`, or your own README.md)"
        raise ValueError(
            f"{model_dir} is not a complete COBRA checkpoint: missing {', '.join(missing)}{hint}."
        )


def _name_repo_in_card(folder: Path, repo_id: str) -> None:
    """A cobra-hf card that `cobra-hf train` wrote before the repo existed names a placeholder repo in its usage code:
    it is rewritten (atomically, as every card is) with the repo id the Hub resolved (`me/name` for a bare `name`).
    A card of the user's is never touched."""
    from .model_card import fill_repo_id, write_card_text

    card = folder / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        filled = fill_repo_id(text, repo_id)
        if filled != text:
            write_card_text(card, filled)


def push_checkpoint(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    write_card: bool = True,
) -> str:
    """Create `repo_id` on the Hub (if needed) and upload the checkpoint folder `model_dir`.

    An interrupted write of the folder is repaired first (`safe_io.repair_interrupted`), and every file that
    checksums.json records is verified. The folder is checked first (config.json with auto_map, model.safetensors, item_catalog.json,
    tokenizer_config.json, the code files auto_map names and the ones they import, README.md);
    Trainer leftovers (`checkpoint-*`, `runs/`, optimizer/scheduler/RNG states) are not uploaded.
    A folder without README.md gets the cobra-hf model card first, written into the folder from its config.json
    (and training_summary.json, if `cobra-hf train` left one), unless `write_card=False`: then it is an error.
    Files that did not change are skipped, so pushing the same folder twice makes no new commit.
    Returns the URL of the commit (ends with the commit sha).
    """
    from huggingface_hub import HfApi

    from ..integrity import read_checksums, verify_files
    from ..safe_io import repair_interrupted

    folder = Path(model_dir)
    # a swap that a kill left half-done is undone first, and the recorded checksums are checked: a mix of old and
    # new files, or a damaged one, would upload fine and then fail every download
    repair_interrupted(folder)
    if write_card and folder.is_dir() and (folder / "config.json").is_file() and not (folder / "README.md").is_file():
        from .checkpoint import write_card_from_config

        # the repo id is not known yet (a bare `name` becomes `me/name`): the placeholder is filled in below
        write_card_from_config(folder, repo_id=None)
    validate_checkpoint(model_dir)
    verify_files(folder)
    # a load skips recorded files that a download left out; an upload of a folder that lacks one is incomplete
    missing = sorted(name for name in (read_checksums(folder) or {}) if not (folder / name).is_file())
    if missing:
        raise ValueError(f"{folder} lacks {', '.join(missing[:3])}{' and more' if len(missing) > 3 else ''}, which "
                         f"its checksums.json records: re-save the checkpoint (nothing was uploaded).")
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
    _name_repo_in_card(folder, repo_url.repo_id)
    info = api.upload_folder(
        folder_path=str(model_dir),
        repo_id=repo_url.repo_id,
        commit_message=commit_message or "Upload COBRA checkpoint with cobra-hf",
        ignore_patterns=IGNORE_PATTERNS,
    )
    return str(info.commit_url)
