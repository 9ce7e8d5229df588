"""Saving a complete COBRA checkpoint folder: weights, config, generation config, tokenizer + catalog, code files
for trust_remote_code (with the "cobra-recommendation" pipeline) and the model card README.md."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .model_card import write_model_card

# training_summary.json (written by `cobra-hf train`) keys -> model card training_info keys
_SUMMARY_KEYS = {
    "train_sequences": "num_train_sequences",
    "global_step": "steps",
    "train_seconds": "train_runtime",
    "train_loss": "final_loss",
}


def save_checkpoint(
    model,
    tokenizer,
    save_directory: str | os.PathLike,
    training_info: dict | None = None,
    eval_results: dict | None = None,
    dataset_name: str | None = None,
    repo_id: str | None = None,
    catalog_dir: str | os.PathLike | None = None,
    **card_kwargs,
) -> Path:
    """`model.save_pretrained` + `tokenizer.save_pretrained` + a model card, into `save_directory`.

    The card (README.md, see `render_model_card`) is written unless the folder already holds a README.md that a
    person wrote (cards made by cobra-hf or by transformers are replaced). The `catalog/` assets that adding items
    later needs (quantizer, text vocabulary, encoder name; see `cobra_hf.semantic_ids.assets`) come with the model:
    it keeps those of the catalog it was built from or the checkpoint it was loaded from (`catalog_files.py`), so
    any save of it is complete. `catalog_dir` (a catalog folder or a checkpoint that has them) writes another
    source's assets instead. Every file written is recorded in checksums.json (see `integrity.py`). Returns the
    folder.
    """
    folder = Path(save_directory)
    if catalog_dir is not None:  # model.save_pretrained checks the model's own assets the same way
        from ..catalog_files import ASSETS_DIR, check_replaceable

        check_replaceable(folder / ASSETS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if catalog_dir is not None:
        from ..integrity import changed_files, file_states, record_checksums
        from ..semantic_ids.assets import copy_catalog_assets

        before = file_states(folder)
        copy_catalog_assets(catalog_dir, folder)
        record_checksums(folder, changed_files(folder, before))  # the copy replaced what the model wrote
    write_model_card(
        folder,
        config_dict=model.config.to_dict(),
        training_info=training_info,
        eval_results=eval_results,
        dataset_name=dataset_name,
        repo_id=repo_id,
        **card_kwargs,
    )
    return folder


def training_info_from_summary(folder: str | os.PathLike) -> tuple[dict, str | None]:
    """(training_info, dataset name) from the training_summary.json `cobra-hf train` leaves in its output
    folder; ({}, None) when there is none."""
    path = Path(folder) / "training_summary.json"
    if not path.is_file():
        return {}, None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}, None
    info = {card_key: summary[key] for key, card_key in _SUMMARY_KEYS.items() if key in summary}
    if isinstance(summary.get("recipe"), dict) and summary["recipe"].get("name"):
        info["recipe"] = summary["recipe"]["name"]  # `cobra-hf train --recipe`
    dataset = Path(summary["data_dir"]).name if summary.get("data_dir") else None
    if dataset:
        info["dataset"] = dataset
    return info, dataset


def write_card_from_config(folder: str | os.PathLike, repo_id: str | None = None) -> bool:
    """Writes README.md into a checkpoint folder from its config.json (and training_summary.json if any)."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    training_info, dataset = training_info_from_summary(folder)
    return write_model_card(folder, config_dict=config, training_info=training_info or None, eval_results=None,
                            dataset_name=dataset, repo_id=repo_id)
