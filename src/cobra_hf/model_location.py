"""Where a model argument points: a local checkpoint folder or a Hub repo id, checked before anything loads.

transformers treats any string that is not an existing folder as a Hub repo id and retries the network for minutes
before it blames a missing file; a user who mistyped `runs/beauty/modle` deserves one line at once. `locate_model`
decides from the string alone whether it means a folder, and asks the Hub about a repo id once, without retries.
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINT_FILES = ("config.json", "model.safetensors", "item_catalog.json")
# one HEAD request for config.json: a Hub that is there answers in well under a second
HUB_PROBE_TIMEOUT_S = 10.0


def locate_model(path: str | os.PathLike) -> str:
    """The folder or Hub repo id to load `path` from; raises a one-line FileNotFoundError / ValueError otherwise.

    A path that exists must be a folder with config.json, model.safetensors and item_catalog.json. A path that does
    not exist and looks local (absolute, starting with "." or "~", more than one "/", not a valid repo id, or whose
    first part is a folder here, like `runs/nope`) is "no model folder at PATH". Anything else is a repo id: one
    request to the Hub, no retries, says whether the repo is missing or the Hub could not be reached. Offline
    (HF_HUB_OFFLINE=1), or when the Hub cannot be reached, a cached copy is used; the returned string is then the
    cached snapshot folder.
    """
    from .safe_io import repair_interrupted

    text = os.fspath(path)
    folder = Path(text).expanduser()
    repair_interrupted(folder)  # a replace that a killed cobra-hf run left half-done (safe_io) is undone first
    if folder.exists():
        return _check_folder(folder)
    if _looks_local(text):
        raise FileNotFoundError(f"no model folder at {text}")
    return _probe_hub(text)


def _check_folder(folder: Path) -> str:
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}: it is a file; a checkpoint is a folder")
    missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a complete cobra-hf checkpoint folder: it lacks {', '.join(missing)}")
    return str(folder)


def _looks_local(text: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if os.path.isabs(text) or text.startswith((".", "~")) or "\\" in text or text.endswith("/"):
        return True
    try:
        validate_repo_id(text)
    except HFValidationError:
        return True  # e.g. runs/beauty/model: two slashes are never a repo id
    # `runs/nope` is also a valid repo id; a `runs` folder here says which one the user meant
    return "/" in text and Path(text.split("/")[0]).is_dir()


def _probe_hub(repo_id: str) -> str:
    """One request for the repo's config.json; returns the repo id (or the cached snapshot folder)."""
    from huggingface_hub import constants, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RemoteEntryNotFoundError, RepositoryNotFoundError
    from huggingface_hub.file_download import get_hf_file_metadata

    cached = try_to_load_from_cache(repo_id, "config.json")
    cached_folder = os.path.dirname(cached) if isinstance(cached, str) else None
    where = f"no model folder at {repo_id}, and"
    if constants.HF_HUB_OFFLINE:
        if cached_folder:
            return repo_id
        raise FileNotFoundError(f"{where} the Hub repo {repo_id} is not in the local cache (HF_HUB_OFFLINE=1 keeps the "
                                "Hub out of reach)")
    endpoint = constants.ENDPOINT
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=HUB_PROBE_TIMEOUT_S, retry_on_errors=False)
    except GatedRepoError:
        raise ValueError(f"the Hub repo {repo_id} is gated: ask for access on {endpoint}/{repo_id} and log in "
                         "(`hf auth login` or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"{where} the Hub ({endpoint}) has no repo {repo_id} (or it is private: log in with "
                                "`hf auth login` or set HF_TOKEN)") from None
    except RemoteEntryNotFoundError:
        raise FileNotFoundError(f"the Hub repo {repo_id} has no config.json: it is not a cobra-hf model") from None
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", "?")
        raise ValueError(f"{where} the Hub ({endpoint}) answered HTTP {status} for the repo {repo_id}; try again later")
    except Exception as err:  # connection refused, DNS failure, timeout (httpx's errors); anything else is a bug
        if not (isinstance(err, OSError) or type(err).__module__.startswith(("httpx", "httpcore"))):
            raise
        if cached_folder:
            import logging

            logging.getLogger(__name__).warning("could not reach the Hub (%s); using the cached copy of %s", endpoint, repo_id)
            return cached_folder
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{where} could not reach the Hub ({endpoint}) to look for a repo of that name: {reason}") from None
    return repo_id
