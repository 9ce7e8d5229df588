"""Is the checkpoint that loads the one that was saved? (load-time checks of `from_pretrained`)

Every save (`model.save_pretrained`, `tokenizer.save_pretrained`, hence `save_checkpoint` and the Trainer) records the
size and sha256 of each file it writes in `checksums.json`; `verify_files` streams each recorded file once at load and
names the first one that differs (a flipped byte inside the tensor data leaves the safetensors header valid, and such
weights would load). Settings and code people edit by hand (EDITABLE, *.py) are recorded but not enforced.
`check_tensors` refuses non-finite parameters and catalog vectors, and catalog codes or text ids outside their ranges,
naming the tensor. The save runs it on what it writes and records that it passed (`tensors_checked`): a load whose
weight files match their sha256 then skips the scan, so the bytes are read once (by the hash). Checkpoints without
that record (older or foreign ones, or weights that were already non-finite when saved) are scanned at load.

Saved with every checkpoint for trust_remote_code (modeling_cobra imports it), so it imports nothing from cobra_hf.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import torch

CHECKSUMS_FILE = "checksums.json"
CHECKSUMS_FORMAT_VERSION = 1
# README.md is the model card, which people edit; checksums.json cannot hold its own hash
UNRECORDED = frozenset({CHECKSUMS_FILE, "README.md"})
# recorded, but not enforced at load: settings and code that people edit on purpose (their own loaders check what
# they hold), and item_catalog.json, whose item ids and codes carry their own content hash (the tokenizer checks it,
# and a newer format is reported as such); a difference in any other recorded file (weights, quantizer) is refused
EDITABLE = frozenset({"config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
                      "added_tokens.json", "catalog/prepare_args.json", "item_catalog.json"})
SUBFOLDERS = ("catalog",)  # walked recursively besides the top level (Trainer's checkpoint-N/ are not ours to list)
_READ_BLOCK = 1 << 22
_CHECK_BLOCK = 1 << 24  # elements per isfinite() call: a bounded temporary even for a 1M x 384 catalog


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_states(folder: str | os.PathLike) -> dict[str, tuple[int, int, int]]:
    """relative path -> (size, mtime_ns, inode) of the folder's top-level files and of those under SUBFOLDERS."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    paths = [entry for entry in folder.iterdir() if entry.is_file()]
    for sub in SUBFOLDERS:
        if (folder / sub).is_dir():
            paths += [entry for entry in (folder / sub).rglob("*") if entry.is_file()]
    states = {}
    for path in paths:
        stat = path.stat()
        states[path.relative_to(folder).as_posix()] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    return states


def changed_files(folder: str | os.PathLike, before: dict) -> list[str]:
    """Files of `folder` that are new or rewritten since `before = file_states(folder)`."""
    return [name for name, state in file_states(folder).items() if before.get(name) != state]


def read_checksums(folder: str | os.PathLike) -> dict[str, dict] | None:
    """{relative path: {"sha256", "size"}} from folder/checksums.json; None when there is none (an older
    checkpoint); a ValueError when it cannot be read."""
    path = Path(folder) / CHECKSUMS_FILE
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        files = payload["files"]
        version = int(payload.get("format_version", 1))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is damaged ({type(err).__name__}: {err}); re-save or re-download the checkpoint.") from None
    if version > CHECKSUMS_FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {version}; this code reads up to {CHECKSUMS_FORMAT_VERSION}: upgrade cobra-hf.")
    # a recorded name never leads outside the folder
    return {name: entry for name, entry in files.items() if not Path(name).is_absolute() and ".." not in Path(name).parts}


def tensors_were_checked(folder: str | os.PathLike) -> bool:
    """Whether the save that wrote folder/checksums.json found every tensor finite and in range (`check_tensors`)."""
    path = Path(folder) / CHECKSUMS_FILE
    try:
        return path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("tensors_checked") is True
    except (OSError, ValueError, AttributeError):
        return False


def weights_verified(folder: str | os.PathLike, verified: list[str]) -> bool:
    """True when the save checked the tensors and every weight file of the folder was just verified by its sha256:
    the bytes are the ones that passed the check, so the load need not scan them again."""
    weights = [path.name for path in Path(folder).glob("*.safetensors")]
    return bool(weights) and set(weights) <= set(verified) and tensors_were_checked(folder)


def record_checksums(folder: str | os.PathLike, written, tensors_checked: bool | None = None) -> None:
    """Adds (or replaces) the entries of the `written` files (relative paths) in folder/checksums.json; entries of
    files that are gone are dropped, the others kept (the model and the tokenizer save into one folder one after the
    other). tensors_checked: whether the weights just written passed `check_tensors` (None: keep what the record
    says). Written aside and renamed: the file is whole or absent."""
    folder = Path(folder)
    try:
        files = read_checksums(folder) or {}
        previous = tensors_were_checked(folder)
    except ValueError:
        files, previous = {}, False  # a damaged record of an earlier save: this save writes a fresh one
    files = {name: entry for name, entry in files.items() if (folder / name).is_file()}
    for name in written:
        path = folder / name
        if name in UNRECORDED or not path.is_file():
            continue
        files[name] = {"sha256": file_sha256(path), "size": path.stat().st_size}
    payload = {"format_version": CHECKSUMS_FORMAT_VERSION, "algorithm": "sha256",
               "tensors_checked": previous if tensors_checked is None else bool(tensors_checked),
               "files": dict(sorted(files.items()))}
    tmp = folder / f".{CHECKSUMS_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, folder / CHECKSUMS_FILE)


def verify_files(folder: str | os.PathLike) -> list[str]:
    """Streams every file recorded in folder/checksums.json once (EDITABLE settings and *.py code aside) and compares
    its size and sha256; a ValueError names the first that differs. Recorded files that are absent are skipped (a Hub
    download holds only the files a load needs; a missing required file fails in the load itself). Returns the number
    the names of the files verified."""
    folder = Path(folder)
    recorded = read_checksums(folder)
    checked = []
    for name, entry in (recorded or {}).items():
        path = folder / name
        if name in EDITABLE or name.endswith(".py") or not path.is_file():
            continue
        size = path.stat().st_size
        if size != int(entry["size"]):
            state = "truncated" if size < int(entry["size"]) else "corrupted"
            raise ValueError(
                f"{path} is {state} or was changed after it was saved: {size} bytes, {entry['size']} in "
                f"{CHECKSUMS_FILE}. Re-save or re-download the checkpoint."
            )
        if file_sha256(path) != entry["sha256"]:
            raise ValueError(
                f"{path} is corrupted or was changed after it was saved: its sha256 differs from the one "
                f"{CHECKSUMS_FILE} recorded. Re-save or re-download the checkpoint; if you changed the file on purpose, "
                f"delete its entry from {CHECKSUMS_FILE}."
            )
        checked.append(name)
    return checked


def count_non_finite(tensor: torch.Tensor) -> int:
    """NaN and inf entries of a floating tensor, counted block by block (no temporary as large as the tensor)."""
    flat = tensor.detach().reshape(-1)
    bad = 0
    for block in flat.split(_CHECK_BLOCK):
        finite = torch.isfinite(block)
        if not bool(finite.all()):
            bad += int(block.numel() - finite.sum())
    return bad


def _check_range(name: str, tensor: torch.Tensor, upper: torch.Tensor, what: str, source: str) -> None:
    """tensor Long[I, C] must lie in [0, upper) (upper Long[C] or a scalar), else a ValueError naming it."""
    bad = (tensor < 0) | (tensor >= upper)
    if bool(bad.any()):
        row, column = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"{source}: tensor '{name}' holds {int(bad.sum())} {what} (e.g. {int(tensor[row, column])} at row {row}, "
            f"column {column}): the catalog tensors are damaged; re-save or re-download the checkpoint."
        )


def check_tensors(tensors: dict, config, source) -> None:
    """Refuses a COBRA state dict (name -> tensor) whose floating tensors (the catalog's sentence embeddings among
    them) hold NaN or inf, or whose catalog codes / text ids fall outside the config's ranges; the ValueError names
    the tensor. One pass over each tensor."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.device.type != "meta":
            bad = count_non_finite(tensor)
            if bad:
                raise ValueError(
                    f"{source}: tensor '{name}' holds {bad} non-finite value{'s' if bad > 1 else ''} (NaN or inf) of "
                    f"{tensor.numel()}: the weights are damaged; re-save or re-download the checkpoint."
                )
    # the catalog buffers: `model.item_codes` in the backbone, `item_codes` in checkpoints saved before it existed
    codes_name, codes = _catalog_tensor(tensors, "item_codes")
    if codes is not None and codes.numel():
        sizes = torch.tensor(config.level_sizes, dtype=codes.dtype, device=codes.device)
        _check_range(codes_name, codes, sizes, f"codes outside level_sizes {list(config.level_sizes)}", str(source))
    text_name, text = _catalog_tensor(tensors, "item_text_ids")
    if text is not None and text.numel():
        _check_range(text_name, text, torch.tensor(int(config.text_vocab_size), device=text.device),
                     f"text ids outside text_vocab_size {config.text_vocab_size}", str(source))


def _catalog_tensor(tensors: dict, name: str):
    """(key, tensor) of a catalog buffer under its key of today (`model.` + name) or of older checkpoints (name)."""
    for key in (f"model.{name}", name):
        if tensors.get(key) is not None:
            return key, tensors[key]
    return name, None


def tensors_pass(tensors: dict, config) -> bool:
    """check_tensors as a yes/no (a save records it rather than refusing to write)."""
    try:
        check_tensors(tensors, config, "")
    except ValueError:
        return False
    return True


def check_loaded_model(model, source) -> None:
    """check_tensors over a loaded model's saved tensors (its state dict)."""
    check_tensors(model.state_dict(), model.config, source)


DOWNLOAD_KEYS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")


def checkpoint_folder(path, kwargs: dict, after_download: bool = False) -> Path | None:
    """The folder that holds a checkpoint's files: a local folder as given, or (after_download=True) the Hub cache's
    snapshot folder of a repo id, with its checksums.json fetched when the repo has one. None when there is none."""
    local = Path(str(path)) / (kwargs.get("subfolder") or "")
    if local.is_dir():
        return local
    if not after_download:
        return None
    from transformers.utils import cached_file

    download = {key: kwargs[key] for key in DOWNLOAD_KEYS if key in kwargs}
    try:
        config = cached_file(str(path), "config.json", **download)
        cached_file(str(path), CHECKSUMS_FILE, _raise_exceptions_for_missing_entries=False,
                    _raise_exceptions_for_connection_errors=False, **download)
    except (OSError, ValueError):
        return None
    return Path(config).parent if config else None
