"""What from_pretrained and save_pretrained add to transformers' for a COBRA checkpoint folder: damaged files named in
one sentence, the load-time checks of integrity.py, and the catalog/ assets every save writes (catalog_files.py).

Saved with every checkpoint for trust_remote_code (modeling_cobra imports it), so it imports nothing from cobra_hf.
"""

from __future__ import annotations

from pathlib import Path

from .catalog_files import ASSETS_DIR, assets_from_source, check_replaceable, loaded_assets, write_assets
from .integrity import (changed_files, check_loaded_model, checkpoint_folder, file_states, record_checksums,
                        tensors_pass, verify_files, weights_verified)


# save_pretrained(push_to_hub=True, ...) keyword arguments that belong to the upload, not to the save
HUB_ARGUMENTS = ("repo_id", "commit_message", "private", "token", "create_pr", "revision", "commit_description")


class CheckpointFilesMixin:
    """Mixed into CobraPreTrainedModel, before transformers' PreTrainedModel."""

    catalog_assets: dict[str, bytes] | None = None  # the catalog/ files every save writes (catalog_files.py)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, check_integrity: bool = True, **kwargs):
        """transformers' from_pretrained, with damaged weight files reported as one sentence naming the file, and the
        load-time checks of integrity.py (checksums.json, non-finite or out-of-range tensors; check_integrity=False
        skips them). The model keeps the checkpoint's catalog/ assets for its next save (catalog_files.py)."""
        local = checkpoint_folder(pretrained_model_name_or_path, kwargs)
        verified = []
        if check_integrity and local is not None:
            verified = verify_files(local)  # before parsing: a damaged file is named as such, not by what parsing hits
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except Exception as err:
            text = str(err)
            if "deserializing" in text or "safetensors" in type(err).__module__ or "SafetensorError" in type(err).__name__:
                raise ValueError(
                    f"The weights file of {pretrained_model_name_or_path} (model.safetensors) is corrupted or truncated "
                    f"({text.splitlines()[0] if text else type(err).__name__}); re-save or re-download the checkpoint."
                ) from err
            raise
        # output_loading_info=True gives (model, info)
        model, *info = model if isinstance(model, tuple) else (model,)
        folder = local or checkpoint_folder(pretrained_model_name_or_path, kwargs, after_download=True)
        if check_integrity:
            if local is None and folder is not None:
                verified = verify_files(folder)
            if folder is None or not weights_verified(folder, verified):  # else the save checked these very bytes
                check_loaded_model(model, pretrained_model_name_or_path)
        model.catalog_assets = loaded_assets(pretrained_model_name_or_path, folder, kwargs)
        return (model, *info) if info else model

    def save_pretrained(self, save_directory, *args, push_to_hub: bool = False, **kwargs):
        """transformers' save_pretrained, plus the catalog/ assets the model keeps (what add-items needs, see
        catalog_files.py) and checksums.json (size and sha256 of each file written, checked by from_pretrained).

        push_to_hub=True uploads only after those files are written (transformers' own push inside save_pretrained
        would upload before them, leaving a Hub repo without catalog/ and checksums.json): the folder is saved, then
        `push_to_hub` (repo_id: kwargs' or the folder's name, as transformers does) uploads a complete save."""
        hub_kwargs = {name: kwargs.pop(name) for name in HUB_ARGUMENTS if name in kwargs}
        if getattr(self, "catalog_assets", None):  # refused before anything is written, not after the weights
            check_replaceable(Path(save_directory) / ASSETS_DIR)
        before = file_states(save_directory)
        super().save_pretrained(save_directory, *args, **kwargs)
        main_process = args[0] if args else kwargs.get("is_main_process", True)
        if main_process:
            written = write_assets(getattr(self, "catalog_assets", None), save_directory)
            # what was written passed the tensor checks: a load that matches the sha256 need not scan it again
            clean = tensors_pass(kwargs.get("state_dict") or self.state_dict(), self.config)
            record_checksums(save_directory, sorted(set(changed_files(save_directory, before) + written)), clean)
        if push_to_hub and main_process:
            repo_id = hub_kwargs.pop("repo_id", None) or Path(save_directory).name
            self.push_to_hub(repo_id, **hub_kwargs)

    def keep_catalog_assets(self, source) -> None:
        """Keeps the catalog/ assets of `source` (a `cobra-hf prepare` catalog folder, or a checkpoint that has
        them) so that every later save of this model writes them (build_model calls it)."""
        self.catalog_assets = assets_from_source(source)
