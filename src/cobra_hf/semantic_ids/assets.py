"""What a checkpoint keeps of its catalog so that new items can get IDs and text tokens later (cold start).

A checkpoint's `catalog/` subfolder (documented in docs/ARCHITECTURE.md):
    catalog/quantizer/config.json + model.safetensors   the quantizer that made the semantic IDs (RQ-VAE or
                                                         RQ-KMeans codebooks; `rq_kmeans.load_quantizer`)
    catalog/item_text_vocab.json                         compact text vocabulary (compact id -> source
                                                         word-piece id), the sentence encoder and the
                                                         text settings (max tokens, description length)
    catalog/prepare_args.json                            how the catalog was made (copied as is)
It is written by `copy_catalog_assets(catalog_dir, checkpoint_dir)` (training's final save, `save_checkpoint`)
and read by `load_catalog_assets(folder)`, which accepts a checkpoint folder or a `cobra-hf prepare` catalog folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from .catalog import ITEM_TEXT_FILE, QUANTIZER_DIR
from .embeddings import DEFAULT_ENCODER_NAME, default_encoder_path
from .rq_kmeans import RQKMeans, load_quantizer
from .rqvae import RQVAE

logger = logging.getLogger(__name__)
ASSETS_DIR = "catalog"
VOCAB_FILE = "item_text_vocab.json"
PREPARE_ARGS_FILE = "prepare_args.json"
ASSETS_FORMAT_VERSION = 1


@dataclass
class CatalogAssets:
    """quantizer: the fitted RQ-VAE or RQ-KMeans; source_token_ids Long[V]: compact text id -> source word-piece id;
    encoder: sentence encoder folder (None = the default all-MiniLM-L6-v2 package); the text settings the
    catalog was made with; fingerprint: `assets_fingerprint` of the quantizer and vocabulary (which prepare run)."""

    quantizer: RQVAE | RQKMeans
    source_token_ids: torch.Tensor
    encoder: str | None
    encoder_name: str
    max_text_tokens: int
    max_description_chars: int
    embed_max_length: int
    fingerprint: str = ""
    # the encoder's embedding of embeddings.ENCODER_CHECK_TEXT when prepare ran (None for older catalogs)
    encoder_signature: list[float] | None = None

    def encoder_path(self) -> str:
        """The encoder's folder: the recorded one if it exists here, else the default package when the catalog used
        it; a FileNotFoundError naming the missing folder otherwise."""
        if self.encoder is None or self.encoder_name == DEFAULT_ENCODER_NAME and not Path(self.encoder).exists():
            return default_encoder_path()
        if not Path(self.encoder).exists():
            raise FileNotFoundError(
                f"The sentence encoder the catalog was made with ({self.encoder}) is not on this machine; pass "
                "encoder=PATH (--encoder) with the same encoder."
            )
        return str(self.encoder)


def _vocab_payload(catalog: Path) -> dict:
    from safetensors import safe_open

    prepare_args = json.loads((catalog / PREPARE_ARGS_FILE).read_text(encoding="utf-8")) if (catalog / PREPARE_ARGS_FILE).is_file() else {}
    with safe_open(str(catalog / ITEM_TEXT_FILE), "pt") as handle:
        source = handle.get_tensor("source_token_ids")
    from ..data.item_text import DEFAULT_DESCRIPTION_CHARS

    return {
        "format_version": ASSETS_FORMAT_VERSION,
        "encoder": prepare_args.get("encoder"),
        "encoder_name": prepare_args.get("encoder_name", DEFAULT_ENCODER_NAME),
        "max_text_tokens": int(prepare_args.get("max_text_tokens", 48)),
        "max_description_chars": int(prepare_args.get("max_description_chars", DEFAULT_DESCRIPTION_CHARS)),
        "embed_max_length": int(prepare_args.get("embed_max_length", 64)),
        "encoder_signature": prepare_args.get("encoder_signature"),
        "source_token_ids": [int(s) for s in source.tolist()],
    }


def copy_catalog_assets(
    source_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike, missing_ok: bool = False
) -> Path | None:
    """Writes `checkpoint_dir/catalog/` from a catalog folder (`cobra-hf prepare` output) or from another
    checkpoint that has one. The subfolder is built under a temporary name and renamed, so it is complete or
    absent. Returns its path. A source without the assets raises FileNotFoundError, or with missing_ok=True logs a
    warning and returns None (the checkpoint then cannot take new items)."""
    source, target = Path(source_dir), Path(checkpoint_dir) / ASSETS_DIR
    if (source / ASSETS_DIR / VOCAB_FILE).is_file():  # a checkpoint: copy its assets folder
        if (source / ASSETS_DIR).resolve() == target.resolve():
            return target
        build = lambda tmp: shutil.copytree(source / ASSETS_DIR, tmp)  # noqa: E731
    else:
        missing = [name for name in (QUANTIZER_DIR, ITEM_TEXT_FILE) if not (source / name).exists()]
        if missing and missing_ok:
            logger.warning("%s lacks %s: the checkpoint will not be able to add new items.", source, missing)
            return None
        if missing:
            raise FileNotFoundError(
                f"{source} lacks {missing}: it is neither a catalog folder made by `cobra-hf prepare` nor a checkpoint "
                f"with a {ASSETS_DIR}/ folder."
            )

        def build(tmp: Path) -> None:
            tmp.mkdir()
            shutil.copytree(source / QUANTIZER_DIR, tmp / QUANTIZER_DIR)
            (tmp / VOCAB_FILE).write_text(json.dumps(_vocab_payload(source)) + "\n", encoding="utf-8")
            if (source / PREPARE_ARGS_FILE).is_file():
                shutil.copy2(source / PREPARE_ARGS_FILE, tmp / PREPARE_ARGS_FILE)

    from ..catalog_files import check_replaceable

    check_replaceable(target)  # before any work: a folder of the user's named catalog/ is never replaced
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{ASSETS_DIR}.partial-{uuid.uuid4().hex[:8]}"
    try:
        build(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def assets_fingerprint(quantizer: RQVAE | RQKMeans, source_token_ids: torch.Tensor) -> str:
    """sha256 of the quantizer's weights and config and of the compact text vocabulary: equal for the copies of one
    `cobra-hf prepare` run (its catalog folder and every checkpoint trained on it), different for any other run."""
    digest = hashlib.sha256(json.dumps(quantizer.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(quantizer.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(source_token_ids.to(torch.long).numpy().tobytes())
    return digest.hexdigest()


def load_catalog_assets(folder: str | os.PathLike) -> CatalogAssets:
    """Reads the assets of a checkpoint folder (its `catalog/`) or of a catalog folder made by `cobra-hf prepare`."""
    folder = Path(folder)
    if (folder / ASSETS_DIR / VOCAB_FILE).is_file():
        base = folder / ASSETS_DIR
        payload = json.loads((base / VOCAB_FILE).read_text(encoding="utf-8"))
    elif (folder / ITEM_TEXT_FILE).is_file() and (folder / QUANTIZER_DIR).is_dir():
        base = folder
        payload = _vocab_payload(folder)
    else:
        raise FileNotFoundError(
            f"{folder} has no {ASSETS_DIR}/{VOCAB_FILE} (the quantizer and text vocabulary new items need): "
            "a model trained on a `cobra-hf prepare --ids-from` catalog never has one (its IDs quantize learned item "
            "vectors, which new items do not have: prepare the new items into a fresh catalog and train again); "
            "checkpoints and rq-kmeans catalogs written by earlier cobra-hf versions lack it too (run `cobra-hf "
            "prepare` again for the catalog; pass an RQ-VAE catalog the model was trained on with --catalog)."
        )
    if payload.get("format_version", 1) > ASSETS_FORMAT_VERSION:
        raise ValueError(f"{base / VOCAB_FILE} has format_version {payload['format_version']}; upgrade cobra-hf.")
    quantizer = load_quantizer(base / QUANTIZER_DIR)
    source_token_ids = torch.tensor(payload["source_token_ids"], dtype=torch.long)
    return CatalogAssets(
        quantizer=quantizer,
        source_token_ids=source_token_ids,
        encoder=payload.get("encoder"),
        encoder_name=payload.get("encoder_name", DEFAULT_ENCODER_NAME),
        max_text_tokens=int(payload["max_text_tokens"]),
        max_description_chars=int(payload["max_description_chars"]),
        embed_max_length=int(payload["embed_max_length"]),
        fingerprint=assets_fingerprint(quantizer, source_token_ids),
        encoder_signature=payload.get("encoder_signature"),
    )
