"""The `catalog/` assets a model keeps so that every save of it is a complete checkpoint.

`catalog/` (quantizer, compact text vocabulary, prepare arguments; see cobra_hf.semantic_ids.assets) is what
`cobra-hf add-items` needs to give new items IDs. The model holds the bytes of those files (a few MB, whatever the
catalog size) from the folder it was built from or loaded from, and `save_pretrained` writes them back, so
`model.save_pretrained`, `trainer.save_model` and `save_checkpoint` all give the same complete folder.

Saved with every checkpoint for trust_remote_code (modeling_cobra imports it), so it imports nothing from cobra_hf at
all: building the assets from a `cobra-hf prepare` folder (which only exists where cobra-hf is installed) imports it
by name inside `assets_from_source`.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from .integrity import DOWNLOAD_KEYS, read_checksums

ASSETS_DIR = "catalog"
MARKER = "item_text_vocab.json"  # the file that makes a checkpoint's catalog/ folder usable (see semantic_ids.assets)
# what a Hub repo without checksums.json is asked for (semantic_ids.assets writes these)
DEFAULT_NAMES = tuple(f"{ASSETS_DIR}/{name}" for name in
                      ("quantizer/config.json", "quantizer/model.safetensors", MARKER, "prepare_args.json"))


def check_replaceable(target: str | os.PathLike) -> None:
    """Refuses (FileExistsError) to let a save replace `target` (a folder's catalog/) unless it is absent or a
    checkpoint's assets folder: the marker file and nothing but the asset files. A `cobra-hf prepare` output, or any
    folder of the user's, named catalog/ inside the save folder is never replaced."""
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return
    known = {name[len(ASSETS_DIR) + 1 :] for name in DEFAULT_NAMES}
    found = ({p.relative_to(target).as_posix() for p in target.rglob("*") if not p.is_dir()}
             if target.is_dir() and not target.is_symlink() else {target.name})
    if (target / MARKER).is_file() and not target.is_symlink() and found <= known:
        return
    other = sorted(found - known) or [target.name]
    raise FileExistsError(
        f"{target} is not the {ASSETS_DIR}/ folder of a checkpoint (it holds {', '.join(other[:3])}"
        f"{', ...' if len(other) > 3 else ''}): a checkpoint saved into {target.parent} writes {ASSETS_DIR}/ there and "
        "would replace it; save into another folder, or move it away first."
    )


def read_assets(folder: str | os.PathLike) -> dict[str, bytes] | None:
    """{path relative to catalog/: bytes} of folder/catalog/, or None when it has no usable catalog/ folder."""
    base = Path(folder) / ASSETS_DIR
    if not (base / MARKER).is_file():
        return None
    return {path.relative_to(base).as_posix(): path.read_bytes() for path in sorted(base.rglob("*")) if path.is_file()}


def assets_from_source(source: str | os.PathLike) -> dict[str, bytes] | None:
    """The assets of a checkpoint folder (its catalog/) or of a catalog folder made by `cobra-hf prepare` (the
    quantizer folder and item_text.safetensors, turned into catalog/ as training's final save does). A source without
    them gives None and a logged warning (its checkpoints cannot take new items)."""
    kept = read_assets(source)
    if kept is not None:
        return kept
    # a prepare folder implies cobra-hf is installed; imported by name, because transformers refuses remote code
    # whose import statements name a package that the loading machine lacks
    copy_catalog_assets = importlib.import_module("cobra_hf.semantic_ids.assets").copy_catalog_assets
    with tempfile.TemporaryDirectory(prefix="cobra-catalog-") as tmp:
        copy_catalog_assets(source, tmp, missing_ok=True)
        return read_assets(tmp)


def loaded_assets(path, folder: Path | None, kwargs: dict) -> dict[str, bytes] | None:
    """The assets of a checkpoint that from_pretrained just loaded: from its folder, or for a Hub repo id the
    catalog/ files that its checksums.json lists (a load downloads only the model's own files). None without any."""
    if folder is None or Path(str(path)).is_dir():
        return None if folder is None else read_assets(folder)
    try:
        names = list(read_checksums(folder) or {}) or DEFAULT_NAMES
    except ValueError:
        names = DEFAULT_NAMES
    download = {key: kwargs[key] for key in DOWNLOAD_KEYS if key in kwargs}
    return hub_assets(str(path), names, download)


def hub_assets(repo_id: str, names, download: dict) -> dict[str, bytes] | None:
    """The catalog/ files among `names` (paths in the repo) of a Hub repo, fetched through the download cache; None
    when the repo has no usable catalog/ or it cannot be reached."""
    from transformers.utils import cached_file

    files = {}
    for name in (name for name in names if name.startswith(ASSETS_DIR + "/")):
        try:
            path = cached_file(repo_id, name, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False, **download)
        except (OSError, ValueError):
            return None
        if path is not None:
            files[name[len(ASSETS_DIR) + 1 :]] = Path(path).read_bytes()
    return files if MARKER in files else None


def write_assets(files: dict[str, bytes] | None, folder: str | os.PathLike) -> list[str]:
    """Writes folder/catalog/ from `files` unless it already holds exactly them; returns the paths of its files
    (relative to folder, e.g. "catalog/quantizer/config.json"), [] when there is nothing to write. The folder is built
    under a hidden name and renamed in, so catalog/ is complete or absent."""
    if not files:
        return []
    folder = Path(folder)
    target = folder / ASSETS_DIR
    names = [f"{ASSETS_DIR}/{name}" for name in files]
    if read_assets(folder) == files:
        return names
    check_replaceable(target)
    tmp = folder / f".{ASSETS_DIR}.partial-{uuid.uuid4().hex[:8]}"
    old = folder / f".{ASSETS_DIR}.old-{uuid.uuid4().hex[:8]}"
    try:
        for name, data in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if target.exists():
            os.replace(target, old)  # catalog/ of a checkpoint (check_replaceable): cobra-hf's own folder
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return names
