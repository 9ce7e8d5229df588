"""What the final checkpoint of `cobra-hf train` holds besides the Trainer's save: the catalog assets (for adding
items later), training_summary.json and the model card, written into its staging folder before it moves in."""

from __future__ import annotations

import json
from pathlib import Path


def final_files(stage: Path, catalog: str, model, summary: dict) -> None:
    """What the final checkpoint holds besides the Trainer's save, written into its staging folder."""
    from ..integrity import record_checksums
    from ..semantic_ids.assets import copy_catalog_assets

    # the catalog/ assets (quantizer + text vocabulary, for cold start) that the model keeps were written and recorded
    # by its save: --catalog's (build_model), or the --init_from checkpoint's, whose IDs _check_init_catalog matched.
    # Writing --catalog's over those would leave checksums.json describing other bytes whenever the two differ (a
    # checkpoint saved by an older cobra-hf), and the final checkpoint would not load.
    if not getattr(model, "catalog_assets", None):
        assets = copy_catalog_assets(catalog, stage, missing_ok=True)
        if assets is not None:
            record_checksums(stage, [path.relative_to(stage).as_posix() for path in assets.rglob("*") if path.is_file()])
    Path(stage, "training_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    write_card(str(stage), model, summary)


def write_card(output_dir: str, model, summary: dict) -> None:
    try:
        from ..hub.model_card import write_model_card
    except ImportError:  # the hub helpers are optional for training
        return
    training_info = {key: summary[key] for key in ("train_sequences", "global_step", "train_seconds", "train_loss", "data_dir")}
    if summary.get("recipe"):
        training_info["recipe"] = summary["recipe"]["name"]
    write_model_card(output_dir, config_dict=model.config.to_dict(), training_info=training_info,
                     eval_results=None, dataset_name=Path(summary["data_dir"]).name, repo_id=None)
