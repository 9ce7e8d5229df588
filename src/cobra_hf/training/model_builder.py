"""Builds a fresh COBRA model (and its tokenizer) from a catalog folder made by `cobra-hf prepare`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open

from ..configuration_cobra import CobraConfig
from ..modeling_cobra import CobraForSequentialRecommendation
from ..semantic_ids.catalog import HELDOUT_FILE, load_catalog_arrays
from ..tokenization_cobra import CobraTokenizer

logger = logging.getLogger(__name__)
CATALOG_REQUIRED = ("item_catalog.json", "item_text.safetensors")


def read_prepare_args(catalog_dir: str | Path) -> dict:
    """How a catalog was made (`prepare_args.json`: data folder, encoder, seeds); {} when it is not recorded."""
    folder = Path(catalog_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Catalog folder {folder} does not exist (make one with `cobra-hf prepare`).")
    path = folder / "prepare_args.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def heldout_item_ids(catalog_dir: str | Path) -> set[str]:
    """The items `prepare --holdout-fraction` left out of a catalog (for cold-start studies): absent by design."""
    path = Path(catalog_dir) / HELDOUT_FILE
    if not path.is_file():
        return set()
    return {str(json.loads(line)["item_id"]) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def load_catalog(catalog_dir: str | Path) -> tuple[CobraTokenizer, dict[str, torch.Tensor], dict]:
    """Reads a catalog folder -> (tokenizer, item text tensors, prepare arguments)."""
    from ..safe_io import repair_interrupted

    folder = Path(catalog_dir)
    repair_interrupted(folder)  # a `prepare --overwrite` killed mid-swap is undone before reading
    if not folder.is_dir():
        raise FileNotFoundError(f"Catalog folder {folder} does not exist (make one with `cobra-hf prepare`).")
    missing = [name for name in CATALOG_REQUIRED if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"Catalog folder {folder} lacks {missing}: is it a `cobra-hf prepare` output?")
    tokenizer = CobraTokenizer.from_pretrained(str(folder))
    try:
        text = load_catalog_arrays(folder)
    except Exception as err:  # safetensors raises several types for damaged files
        raise ValueError(f"{folder / 'item_text.safetensors'} cannot be read ({err}).") from None
    if text["token_ids"].shape[0] != tokenizer.num_items:
        raise ValueError(
            f"{folder}: item_text.safetensors has {text['token_ids'].shape[0]} items, item_catalog.json "
            f"{tokenizer.num_items}: the catalog folder is inconsistent."
        )
    prepare_args = read_prepare_args(folder)
    return tokenizer, text, prepare_args


def encoder_token_rows(encoder_path: str | None, source_token_ids: torch.Tensor) -> torch.Tensor | None:
    """The rows Float[V, E] of a pretrained encoder's word-embedding matrix for the catalog's compact vocabulary
    (source_token_ids Long[V]), or None (logged) when the encoder is unavailable."""
    try:
        if encoder_path is None:
            from ..semantic_ids.embeddings import default_encoder_path

            encoder_path = default_encoder_path()
        weights = Path(encoder_path) / "model.safetensors"
        with safe_open(str(weights), "pt") as handle:
            key = next(k for k in handle.keys() if k.endswith("word_embeddings.weight"))
            table = handle.get_tensor(key).float()
    except Exception as err:  # optional nicety: a missing encoder falls back to random init
        logger.warning("No pretrained token embeddings (%s); the item-text encoder starts from random.", err)
        return None
    return table[source_token_ids.clamp(0, table.shape[0] - 1)]


def pretrained_token_embeddings(encoder_path: str | None, source_token_ids: torch.Tensor, width: int):
    """Rows of a pretrained encoder's word-embedding matrix for the catalog's compact vocabulary
    (`encoder_token_rows`), reduced to `width` by PCA when the widths differ. Returns Float[V, width] or None when
    the encoder is unavailable."""
    rows = encoder_token_rows(encoder_path, source_token_ids)
    if rows is None:
        return None
    if rows.shape[1] != width:
        centred = rows - rows.mean(0, keepdim=True)
        _, _, basis = torch.pca_lowrank(centred, q=min(width, *centred.shape), center=False, niter=4)
        rows = centred @ basis
        rows = torch.nn.functional.pad(rows, (0, width - rows.shape[1]))
    # match the scale of the model's own initialisation so early training is stable
    return rows / rows.std().clamp_min(1e-6) * 0.02


def _text_embedding_dim(asked, embeddings, catalog_dir) -> int:
    """text_embedding_dim for a catalog whose sentence embeddings are `embeddings` Float[I, E] or None: 0 stays 0,
    -1 becomes E, any other value must be E."""
    asked = int(asked)
    if asked == 0:
        return 0
    if embeddings is None:
        raise ValueError(f"text_embedding_dim={asked}: the catalog {catalog_dir} holds no sentence embeddings "
                         "(prepare it again with embeddings kept, or use 0).")
    if asked not in (-1, int(embeddings.shape[1])):
        raise ValueError(f"text_embedding_dim={asked}: the catalog's sentence embeddings are {embeddings.shape[1]} wide "
                         "(use -1 for the catalog's width, or 0).")
    return int(embeddings.shape[1])


def build_model(
    catalog_dir: str | Path, init_text_embeddings: bool = True, seed: int = 0, **config_overrides
) -> tuple[CobraForSequentialRecommendation, CobraTokenizer]:
    """A new, untrained model sized for the catalog; config_overrides are CobraConfig fields. text_embedding_dim -1
    means the catalog's sentence-embedding width (use_text_embeddings=True/False is shorthand for -1/0)."""
    tokenizer, text, prepare_args = load_catalog(catalog_dir)
    embeddings = text.get("text_embeddings")
    if "use_text_embeddings" in config_overrides:
        config_overrides["text_embedding_dim"] = -1 if config_overrides.pop("use_text_embeddings") else 0
    width = _text_embedding_dim(config_overrides.pop("text_embedding_dim", 0), embeddings, catalog_dir)
    settings = dict(
        level_sizes=tokenizer.level_sizes,
        num_items=tokenizer.num_items,
        text_vocab_size=int(text["source_token_ids"].shape[0]),
        max_text_tokens=int(text["token_ids"].shape[1]) + 1,
        text_embedding_dim=width,
        max_history=tokenizer.max_history,
    )
    settings.update(config_overrides)
    config = CobraConfig(**settings)
    tokenizer.max_history = config.max_history
    torch.manual_seed(seed)
    model = CobraForSequentialRecommendation(config)
    model.set_catalog(
        torch.from_numpy(tokenizer.item_codes),
        text["token_ids"],
        embeddings if config.text_embedding_dim else None,
        tokenizer.catalog_hash,
    )
    model.keep_catalog_assets(catalog_dir)  # every save of the model writes catalog/ (what add-items needs)
    if init_text_embeddings:
        rows = pretrained_token_embeddings(prepare_args.get("encoder"), text["source_token_ids"], config.hidden_size)
        if rows is not None:
            with torch.no_grad():
                for backbone in model.backbones():  # an ID trunk's text encoder starts where the main one does
                    backbone.item_encoder.token_embed.weight.copy_(rows)
                    backbone.item_encoder.token_embed.weight[0].zero_()
    return model, tokenizer
