"""Writing folders without losing anything: staged writes, one journaled swap, and the marker of cobra-hf's folders.

Every command that replaces files the user already has (`prepare --overwrite`, `add-items --in-place`, the final
save of `cobra-hf train`) builds the new files in a hidden staging folder beside the target
(`.NAME.partial-XXXXXXXX`, see `staging_dir`) and then calls `swap_into_place`, which moves only the named entries:

    1. the backup folder `.NAME.old-XXXXXXXX` is made, with the journal `.cobra-hf-swap.json` inside it (what is
       moved, from where, which entries existed): the intent is on disk before anything moves;
    2. per entry: the old one (if any) into the backup, the new one into the target (each an atomic rename);
    3. the journal says "done"; the backup and the staging folder are deleted.

A process killed anywhere in there leaves a state that `repair_interrupted(target)` understands: before step 3 it
puts every old entry back (the interrupted command did not happen: run it again), after it finishes the clean-up.
Every command that reads or writes such a folder calls it first. Entries that are not named (a `.git/`, a
hand-written README.md, `checkpoint-N/`, files of the user) are never moved, so they cannot be lost.

`MARKER_FILE` (`.cobra-hf.json`) in a folder says that cobra-hf wrote it and lists the entries it wrote: `--overwrite`
replaces a folder only when it carries one, and then only those entries.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

MARKER_FILE = ".cobra-hf.json"
JOURNAL_FILE = ".cobra-hf-swap.json"
PARTIAL_TAG, BACKUP_TAG = "partial", "old"


# ---------------------------------------------------------------------------------------------------------- markers
def _write_json_atomic(path: Path, payload: dict) -> None:
    """Writes aside, then renames: a reader sees the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def write_marker(folder: str | os.PathLike, written_by: str, files: Iterable[str] | None = None) -> Path:
    """Marks `folder` as written by cobra-hf (`written_by`, e.g. "cobra-hf prepare"); `files` are the entries it
    wrote (default: everything in the folder now). Returns the marker's path."""
    from . import __version__

    folder = Path(folder)
    names = sorted(set(files if files is not None else (p.name for p in folder.iterdir())) | {MARKER_FILE})
    path = folder / MARKER_FILE
    _write_json_atomic(path, {"written_by": written_by, "cobra_hf_version": __version__, "pid": os.getpid(),
                              "files": names})
    return path


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker of a folder cobra-hf wrote ({"written_by", "files", ...}), or None."""
    payload = _read_json(Path(folder) / MARKER_FILE)
    return payload if payload is not None and isinstance(payload.get("files"), list) else None


# ---------------------------------------------------------------------------------------------------------- inputs
def check_not_inputs(output: str | os.PathLike, inputs: dict[str, str | os.PathLike | None], flag: str) -> None:
    """Refuses an output folder that is one of the inputs or holds one (writing there could replace them).
    inputs: {what it is (e.g. "the data folder"): path}; None paths are skipped."""
    out = Path(output).resolve()
    for what, path in inputs.items():
        if path is None:
            continue
        source = Path(path).resolve()
        if source == out or out in source.parents:
            where = "is" if source == out else "holds"
            raise ValueError(f"{flag} {output} {where} {what} ({path}); choose a folder outside the inputs.")


def is_nonempty_dir(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


# ---------------------------------------------------------------------------------------------------------- the swap
def _hidden(target: Path, tag: str) -> Path:
    return target.parent / f".{target.name}.{tag}-{uuid.uuid4().hex[:8]}"


def staging_dir(target: str | os.PathLike, suffix: str | None = None) -> Path:
    """A new, empty hidden folder beside `target` to build its new version in (same file system, so moving entries
    from it is a rename). It carries a staging marker with this process id: `repair_interrupted` deletes it once
    the process is gone, and never a folder without that marker. suffix: a fixed name (`.NAME.partial-SUFFIX`,
    the same in every process of a distributed run) instead of a random one; a leftover of a process that is
    gone is replaced, one of a process that runs is a FileExistsError."""
    target = Path(target).resolve()  # "." or a symlink: the staging folder goes beside the real folder
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = _hidden(target, PARTIAL_TAG) if suffix is None else target.parent / f".{target.name}.{PARTIAL_TAG}-{suffix}"
    if folder.exists():
        marker = _read_json(folder / MARKER_FILE)
        ours = marker is not None and marker.get("pid") == os.getpid() and not _other_host(marker)
        if marker is None or (_alive(marker) and not ours):
            host = "" if marker is None or not _other_host(marker) else f" on {_other_host(marker)}"
            raise FileExistsError(f"{folder} is in use by another process{host} (or not cobra-hf's); {target} was not "
                                  "written.")
        _remove(folder)
    folder.mkdir()
    _write_json_atomic(folder / MARKER_FILE, {"staging_for": target.name, **_owner(), "files": []})
    return folder


def _move(source: Path, destination: Path) -> None:
    """One atomic rename (a function of its own, so that the tests can kill the process right after one)."""
    os.replace(source, destination)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def swap_into_place(staged: str | os.PathLike, target: str | os.PathLike, names: Iterable[str] | None = None) -> None:
    """Moves the finished `staged` folder (from `staging_dir(target)`) into `target`.

    names None: `target` must be absent or empty; the whole folder is renamed into place (one atomic rename).
    names given: only these entries of `target` are replaced, each by the staged one, or removed when the staged
    folder has none; everything else in `target` stays. The journal in the backup folder lets `repair_interrupted`
    undo a swap that a killed process left half-done. On an error the old entries are put back and it is raised.
    """
    staged, target = Path(staged).resolve(), Path(target).resolve()
    if names is None:
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        _move(staged, target)
        return
    names = list(dict.fromkeys(names))
    if staged.resolve().parent != target.resolve().parent:
        raise ValueError(f"{staged} must be beside {target} (made by staging_dir) so that entries move by renames.")
    target.mkdir(parents=True, exist_ok=True)
    backup = _hidden(target, BACKUP_TAG)
    backup.mkdir()
    journal = {
        # names, not paths: the journal stays right if the parent folder is moved before the repair
        "target": target.name, "staged": staged.name, **_owner(), "state": "moving",
        "names": names,
        "existing": [n for n in names if (target / n).exists() or (target / n).is_symlink()],
        "incoming": [n for n in names if (staged / n).exists()],
    }
    _write_json_atomic(backup / JOURNAL_FILE, journal)
    try:
        for name in names:
            if name in journal["existing"]:
                _move(target / name, backup / name)
            if name in journal["incoming"]:
                _move(staged / name, target / name)
    except BaseException:
        _roll_back(journal, backup)
        raise
    journal["state"] = "done"
    _write_json_atomic(backup / JOURNAL_FILE, journal)
    _remove(backup)
    _remove(staged)


def _roll_back(journal: dict, backup: Path) -> None:
    """Puts the old entries back in place and the new ones back in the staging folder (then deletes that)."""
    target, staged = backup.parent / journal["target"], backup.parent / journal["staged"]
    for name in reversed(journal["names"]):
        here, old, new = target / name, backup / name, staged / name
        moved_in = name in journal["incoming"] and not (new.exists() or new.is_symlink())
        if moved_in and (here.exists() or here.is_symlink()):
            _remove(here)  # the new entry: it is still in no user's hands, the command did not finish
        if name in journal["existing"] and (old.exists() or old.is_symlink()):
            _move(old, here)
    _remove(staged)
    _remove(backup)


# ---------------------------------------------------------------------------------------------------------- repair
def _owner() -> dict:
    """Who writes a staging folder or a swap: this process and this machine (its record in the marker or journal)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _other_host(record: dict) -> str | None:
    """The machine that wrote `record`, when it is not this one (records without a host predate the field)."""
    host = record.get("host")
    return host if isinstance(host, str) and host != socket.gethostname() else None


def _alive(record: dict) -> bool:
    """Whether the process that wrote `record` (a staging marker or a swap journal) may still run (then its staging
    and swap folders are in use, not leftovers). A process of another machine sharing this file system cannot be
    checked from here: it counts as running, so that one host never undoes another's live swap."""
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if _other_host(record):
        return True
    if pid == os.getpid():  # this very process (another thread of it) is writing there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is another user's
        return True
    return True


def repair_interrupted(target: str | os.PathLike) -> list[str]:
    """Finds what an interrupted write of `target` left beside it and repairs it; returns what was done (each also
    logged as a warning). A swap that had not finished is undone (the old entries go back: the command that was
    interrupted did not happen); a finished one is cleaned up; staging folders of processes that are gone are
    deleted. Folders of a process that still runs are left alone, and so is anything without cobra-hf's marks."""
    target = Path(target).resolve()
    parent = target.parent
    if not parent.is_dir():
        return []
    done: list[str] = []
    for backup in sorted(parent.glob(f".{glob.escape(target.name)}.{BACKUP_TAG}-*")):
        message = _repair_backup(backup, target)
        if message:
            done.append(message)
    for staged in sorted(parent.glob(f".{glob.escape(target.name)}.{PARTIAL_TAG}-*")):
        marker = _read_json(staged / MARKER_FILE)
        if staged.is_dir() and marker is not None and "pid" in marker and not _alive(marker):
            _remove(staged)
            done.append(f"deleted {staged.name}, the unfinished output of an interrupted cobra-hf run")
    marker = _read_json(target / MARKER_FILE) if target.is_dir() else None
    if marker is not None and marker.get("staging_for") == target.name and not _alive(marker):
        # a staged folder renamed into place whole; the process was killed before it removed its staging marker
        (target / MARKER_FILE).unlink()
        done.append("removed the staging mark that an interrupted cobra-hf run left in the finished folder")
    for message in done:
        logger.warning("%s: %s.", target, message)
    return done


def _repair_backup(backup: Path, target: Path) -> str | None:
    journal = _read_json(backup / JOURNAL_FILE)
    if journal is None:
        return _repair_legacy_backup(backup, target)
    if not _valid_journal(journal, target):
        return f"{backup.name} holds a swap journal that cobra-hf cannot read; it was left as it is"
    if _alive(journal):
        host = _other_host(journal)
        return (None if host is None else f"{backup.name} holds a replace by a cobra-hf run on {host}, which this "
                "machine cannot check: left as it is (run the command again there to repair it)")
    if journal.get("state") == "done":
        _remove(backup)
        _remove(backup.parent / journal["staged"])
        return f"finished cleaning up after a replace that completed (deleted {backup.name})"
    _roll_back(journal, backup)
    return f"an interrupted replace of {len(journal['names'])} entries was undone: the previous files are back"


def _valid_journal(journal: dict, target: Path) -> bool:
    """Only plain entry names of this target: a damaged journal must not make the repair touch anything else."""
    names = [journal.get("target"), journal.get("staged"), *journal.get("names", []), *journal.get("existing", []),
             *journal.get("incoming", [])]
    plain = all(isinstance(n, str) and n and "/" not in n and "\\" not in n and n not in (".", "..") for n in names)
    return plain and journal.get("target") == target.name and isinstance(journal.get("names"), list)


def _repair_legacy_backup(backup: Path, target: Path) -> str | None:
    """A backup without a journal: made empty just before a kill, or by cobra-hf <= 0.x, which renamed the whole
    folder away before renaming the new one in."""
    if backup.is_dir() and not any(backup.iterdir()):
        backup.rmdir()
        return None
    if not target.exists():
        _move(backup, target)
        return f"restored {target.name} from {backup.name} (a run was killed between its two renames)"
    # the swap had finished; the previous version may hold files the user wants (it is not ours to delete)
    return f"{backup.name} beside it holds the previous version from an interrupted run; delete it once not needed"


# ---------------------------------------------------------------------------------------------------------- checkpoints
# weight files of another layout (sharded, .bin) that a newly saved model.safetensors makes stale
_WEIGHT_PATTERNS = ("model-*-of-*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin",
                    "pytorch_model.bin.index.json")


def checkpoint_entries(staged: str | os.PathLike, target: str | os.PathLike) -> list[str]:
    """The entries of `target` that a checkpoint saved into `staged` replaces: what was saved (minus the staging
    marker, and minus README.md when the one in `target` was written by a person) plus weight files of another
    layout that the new weights make stale, when a cobra-hf save recorded them (checksums.json), and a recorded
    catalog/ the new checkpoint lacks. A catalog/ in `target` that is not a checkpoint's assets is refused
    (catalog_files.check_replaceable). Everything else in `target` (.git/, checkpoint-N/, ...) stays."""
    from .hub.model_card import is_generated_model_card

    staged, target = Path(staged), Path(target)
    names = [p.name for p in sorted(staged.iterdir()) if p.name != MARKER_FILE]
    readme = target / "README.md"
    if readme.is_file() and not is_generated_model_card(readme.read_text(encoding="utf-8", errors="replace")):
        names = [name for name in names if name != "README.md"]
    # only weight files that a cobra-hf save recorded: a .bin or shard the user put there is not ours to remove
    from .integrity import read_checksums

    try:
        ours = set(read_checksums(target) or {})
    except ValueError:  # an unreadable record: treat nothing as ours
        ours = set()
    stale = {p.name for pattern in _WEIGHT_PATTERNS for p in target.glob(pattern) if p.name in ours} - set(names)
    from .catalog_files import ASSETS_DIR, check_replaceable

    if ASSETS_DIR in names or (target / ASSETS_DIR).exists():
        # a catalog/ of the user's there is never swapped out (FileExistsError); one a cobra-hf save recorded, that
        # the new checkpoint lacks (a catalog without assets), goes with the old model: left, it would give new items
        # the old quantizer's IDs
        recorded = any(name.startswith(ASSETS_DIR + "/") for name in ours)
        if ASSETS_DIR in names or recorded:
            check_replaceable(target / ASSETS_DIR)
        if ASSETS_DIR not in names and recorded:
            stale.add(ASSETS_DIR)
    return names + sorted(stale)
