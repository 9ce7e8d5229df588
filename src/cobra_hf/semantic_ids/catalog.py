"""`build_catalog`: dataset folder -> item texts -> sentence embeddings -> RQ-VAE -> semantic IDs -> catalog folder.

The folder layout is documented in docs/ARCHITECTURE.md ("The catalog folder"). Row `i` of every
per-item array is the item with catalog index `i`, the order of `item_catalog.json` (= the order of
items.jsonl, minus held-out items).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data.item_text import DEFAULT_DESCRIPTION_CHARS, item_text
from .embeddings import (DEFAULT_ENCODER_NAME, embed_texts, encoder_signature, load_encoder_tokenizer, resolve_device,
                         resolve_embed_dtype, resolve_encoder)
from .rqvae import RQVAE, RQVAEConfig, id_stats

logger = logging.getLogger(__name__)

ITEM_TEXT_FILE = "item_text.safetensors"
QUANTIZER_DIR = "quantizer"
HELDOUT_FILE = "heldout_items.jsonl"
PAD_ID, CLS_ID, UNK_ID = 0, 1, 2
NUM_TEXT_SPECIAL = 3


def compact_text_tokens(texts: Sequence[str], tokenizer, max_text_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize texts with the sentence encoder's WordPiece tokenizer into a compact vocabulary.

    Only the word pieces that the catalog uses get an id, which keeps the item-text encoder's
    embedding table small (a few thousand rows instead of 30k). Compact ids: 0 = pad, 1 = [CLS],
    2 = [UNK], then the used word pieces in increasing order of their source id (deterministic and
    independent of the item order).

    Returns:
        token_ids: Long[N, T], `[CLS] w_1 .. w_{T-1}` right-padded with 0, T = min(max_text_tokens,
            longest text + 1) ([CLS] included, the encoder's own [CLS]/[SEP] are not used).
        source_token_ids: Long[V] compact id -> id in the source tokenizer (pad/cls/unk for 0/1/2).
    """
    encoded = _source_tokens(texts, tokenizer, max_text_tokens)
    unk = tokenizer.unk_token_id
    specials = {tokenizer.pad_token_id, tokenizer.cls_token_id, unk}
    used = sorted({t for row in encoded for t in row} - specials)
    source = [tokenizer.pad_token_id, tokenizer.cls_token_id, unk] + used
    source_token_ids = torch.tensor([0 if s is None else int(s) for s in source], dtype=torch.long)
    return _to_compact(encoded, tokenizer, source_token_ids), source_token_ids


def _source_tokens(texts: Sequence[str], tokenizer, max_text_tokens: int) -> list[list[int]]:
    """Word-piece ids in the source tokenizer, at most max_text_tokens - 1 per text (room for [CLS])."""
    if max_text_tokens < 2:
        raise ValueError(f"max_text_tokens must be >= 2 ([CLS] + one word piece), got {max_text_tokens}")
    return tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_text_tokens - 1)["input_ids"]


def _to_compact(encoded: list[list[int]], tokenizer, source_token_ids: torch.Tensor) -> torch.Tensor:
    """Source word-piece ids -> Long[N, 1 + longest] `[CLS] w_1 ..` in the compact vocabulary given by
    source_token_ids (compact id -> source id); pieces outside it, and the source's pad/cls/unk, become [UNK]."""
    to_compact = {int(s): i for i, s in enumerate(source_token_ids.tolist()) if i >= NUM_TEXT_SPECIAL}
    for special in (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.unk_token_id):
        to_compact.pop(special, None)
    width = 1 + max((len(row) for row in encoded), default=0)
    token_ids = torch.zeros(len(encoded), width, dtype=torch.long)
    token_ids[:, 0] = CLS_ID
    for i, row in enumerate(encoded):
        if row:
            token_ids[i, 1 : 1 + len(row)] = torch.tensor([to_compact.get(t, UNK_ID) for t in row])
    return token_ids


def tokenize_with_vocab(texts: Sequence[str], tokenizer, source_token_ids: torch.Tensor, max_text_tokens: int) -> torch.Tensor:
    """Tokenize texts into an existing compact vocabulary (`source_token_ids` of a catalog), as
    `compact_text_tokens` did for the catalog's own items: word pieces the catalog never used -> [UNK] (2).

    Returns token_ids Long[N, T], `[CLS] w_1 .. w_{T-1}` right-padded with 0, T = min(max_text_tokens,
    longest text + 1).
    """
    return _to_compact(_source_tokens(texts, tokenizer, max_text_tokens), tokenizer, torch.as_tensor(source_token_ids))


def load_catalog_arrays(catalog_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read `item_text.safetensors` of a catalog: `token_ids` Long[N, T], `source_token_ids` Long[V],
    `text_embeddings` Float[N, E]."""
    from safetensors.torch import load_file

    path = Path(catalog_dir) / ITEM_TEXT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (make the catalog with `cobra-hf prepare`)")
    return load_file(str(path))


WRITTEN_BY = "cobra-hf prepare"
# what `prepare` wrote before catalogs carried a marker (recognised by prepare_args.json's cobra_hf_version)
LEGACY_FILES = ("item_catalog.json", "tokenizer_config.json", "special_tokens_map.json", ITEM_TEXT_FILE, "items.jsonl",
                HELDOUT_FILE, QUANTIZER_DIR, "stats.json", "prepare_args.json")


def _own_entries(folder: Path) -> list[str] | None:
    """The entries of `folder` that an earlier `cobra-hf prepare` wrote (its marker's list), or None when the
    folder is not a catalog cobra-hf made (then nothing in it may be replaced)."""
    from ..safe_io import read_marker

    marker = read_marker(folder)
    if marker is not None and marker.get("written_by") == WRITTEN_BY:
        return [name for name in marker["files"] if isinstance(name, str) and "/" not in name]
    try:
        legacy = json.loads((folder / "prepare_args.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(legacy, dict) and "cobra_hf_version" in legacy and (folder / "item_catalog.json").is_file():
        return list(LEGACY_FILES)
    return None


def _check_output(output: Path, overwrite: bool, inputs: dict | None = None) -> None:
    """Refuses an output that is a file, is or holds one of the inputs, is a non-empty folder cobra-hf did not
    write (whatever `overwrite` says), or an earlier catalog without overwrite=True."""
    from ..safe_io import check_not_inputs, is_nonempty_dir

    if output.exists() and not output.is_dir():
        raise FileExistsError(f"output {output} exists and is not a folder")
    check_not_inputs(output, inputs or {}, "--output")
    if not is_nonempty_dir(output):
        return
    if _own_entries(output) is None:
        raise FileExistsError(
            f"output folder {output} is not empty and was not written by cobra-hf prepare; choose a new or empty "
            "folder (nothing was written)"
        )
    if not overwrite:
        raise FileExistsError(
            f"output folder {output} holds a catalog from an earlier cobra-hf prepare; pass overwrite=True "
            "(--overwrite) to replace its files (other files in it stay)"
        )


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _swap_into_place(tmp: Path, output: Path) -> None:
    """Moves the finished catalog in: the whole folder when `output` is new or empty, else only the entries that
    the earlier prepare wrote and the new one writes (`safe_io.swap_into_place`, journaled; files of the user
    stay). Either the old or the new catalog is complete at every moment, up to a repair by the next command."""
    from ..safe_io import is_nonempty_dir, swap_into_place, write_marker

    write_marker(tmp, WRITTEN_BY)
    if not is_nonempty_dir(output):
        swap_into_place(tmp, output)
        return
    names = sorted({p.name for p in tmp.iterdir()} | set(_own_entries(output) or ()))
    swap_into_place(tmp, output, names)


QUANTIZERS = ("rqvae", "rq-kmeans")


def learned_item_vectors(model_dir: str | os.PathLike, item_ids: Sequence[str]) -> torch.Tensor:
    """The dense item vectors Float[N, D] (L2-normalised) that a trained checkpoint gives the items `item_ids`, in
    that order. Every item must be in the checkpoint's catalog (a ValueError names the missing ones)."""
    from ..inference import load_checkpoint

    lookup = check_ids_from(model_dir, item_ids)
    with quiet_progress_bars():
        model, _ = load_checkpoint(str(model_dir))
    model.eval()
    return model.all_item_vectors()[torch.tensor([lookup[item] for item in item_ids])].float().cpu()


def check_ids_from(model_dir: str | os.PathLike, item_ids: Sequence[str]) -> dict[str, int]:
    """The --ids-from checkpoint's item id -> index, after checking (from its tokenizer alone, before any weights are
    read) that it holds every item of `item_ids`: a wrong model fails at once, in one line."""
    from ..model_location import locate_model
    from ..tokenization_cobra import CobraTokenizer

    lookup = CobraTokenizer.from_pretrained(str(locate_model(str(model_dir)))).item_to_index
    missing = [item for item in item_ids if item not in lookup]
    if missing:
        raise ValueError(
            f"--ids-from {model_dir}: {len(missing)} items of this data are not in that model's catalog (e.g. "
            f"{', '.join(missing[:5])}); give a model trained on these items."
        )
    return lookup


@contextlib.contextmanager
def quiet_progress_bars():
    """transformers' weight-loading bars off for the block (`prepare --quiet` prints no bar)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def rq_kmeans_codes(vectors: torch.Tensor, num_levels: int, codebook_size: int, dedup_level: bool,
                    seed: int) -> tuple[torch.Tensor, list[int], "RQKMeans"]:
    """Residual k-means codes of L2-normalised vectors Float[N, E] -> (codes Long[N, L (+1)], level sizes, the fitted
    quantizer, whose `encode` gives new vectors their codes)."""
    from .rq_kmeans import RQKMeans

    sizes = [codebook_size] * num_levels
    quantizer, codes = RQKMeans.fit(vectors, sizes, dedup_level=dedup_level, seed=seed)
    if dedup_level:
        sizes.append(int(codes[:, -1].max()) + 1)
    return codes, sizes, quantizer


def build_catalog(
    data_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    encoder: str | os.PathLike | None = None,
    num_levels: int = 3,
    codebook_size: int = 32,
    seed: int = 0,
    overwrite: bool = False,
    drop_unknown: bool = False,
    max_text_tokens: int = 48,
    cache_dir: str | os.PathLike | None = None,
    rqvae_epochs: int | None = None,
    holdout_fraction: float = 0.0,
    dedup_level: bool = False,
    max_history: int = 20,
    max_description_chars: int = DEFAULT_DESCRIPTION_CHARS,
    embed_max_length: int = 64,
    embed_batch_size: int | None = None,
    embed_device: str = "auto",
    embed_dtype: str = "auto",
    rqvae_overrides: dict[str, Any] | None = None,
    quantizer: str = "rqvae",
    ids_from: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> Path:
    """Make a catalog folder (semantic IDs, tokenizer, item text tensors) from a dataset folder.

    Steps: load and check `sequences.txt` + `items.jsonl` -> flatten each item's text -> sentence
    embeddings [N, E] (`encoder`, default all-MiniLM-L6-v2; cached in `cache_dir`) -> train an RQ-VAE
    with `num_levels` x `codebook_size` codes (`dedup_level` appends TIGER's collision code) ->
    codes [N, L] -> `CobraTokenizer` files + `item_text.safetensors` + `items.jsonl` + `quantizer/`
    + `stats.json` + `prepare_args.json`.

    `quantizer="rq-kmeans"` gives residual k-means codes instead of the RQ-VAE's (no training loop). `ids_from`, a
    checkpoint trained on these items, quantizes the item vectors that model learned instead of the sentence
    embeddings (collaborative IDs; implies rq-kmeans): IDs that follow what users bought together, which the ID path
    predicts far better (docs/EXPERIMENTS.md, research runs). Such a catalog has no RQ-VAE, so `add-items` cannot give
    new items IDs from it.

    `embed_device` ("auto": a CUDA GPU when there is one), `embed_dtype` ("auto": fp16 on CUDA, else fp32) and
    `embed_batch_size` (default 64 on the CPU, 512 on a GPU) say how the sentence encoder runs (see
    `embeddings.embed_texts`); the embeddings are fp32 whatever the encoder's dtype.

    `holdout_fraction` > 0 leaves a seeded random fraction of the items out of the catalog (written
    to `heldout_items.jsonl`, for cold-start experiments); the sequences are not changed.

    The folder is built beside `output_dir` under a temporary name and renamed at the end: a failure
    leaves neither a half-written catalog nor a damaged previous one (a kill is repaired by the next command,
    see `cobra_hf.safe_io`). A non-empty `output_dir` is refused with FileExistsError unless it is a catalog that
    cobra-hf wrote (its `.cobra-hf.json` marker) and `overwrite=True`; then only the files that prepare wrote are
    replaced. An `output_dir` that is or holds an input (data, encoder, cache folder) is refused with ValueError.

    Returns:
        Path of the catalog folder.
    """
    from ..tokenization_cobra import CobraTokenizer

    from ..safe_io import repair_interrupted, staging_dir

    started = time.perf_counter()
    output = Path(output_dir)
    repair_interrupted(output)  # a replace that a killed run left half-done is undone first
    inputs = {"the data folder": data_dir, "the --encoder folder": encoder, "the --cache-dir folder": cache_dir}
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    for flag, value in (("--levels", num_levels), ("--codebook-size", codebook_size), ("--max-history", max_history),
                        ("--max-text-tokens", max_text_tokens), ("--embed-max-length", embed_max_length)):
        if int(value) < 1:  # a catalog that train would refuse later, or a traceback after the embedding pass
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if max_description_chars < 0:
        raise ValueError(f"--max-description-chars must be >= 0 (0 leaves the description out), got "
                         f"{max_description_chars}")
    if quantizer not in QUANTIZERS:
        raise ValueError(f"--quantizer must be one of {', '.join(QUANTIZERS)}, got {quantizer!r}")
    if ids_from is not None:
        quantizer = "rq-kmeans"
        inputs["the --ids-from model"] = ids_from
    encoder_path = resolve_encoder(encoder)
    embed_device = resolve_device(embed_device)  # a device this machine lacks fails before any work
    embed_dtype = resolve_embed_dtype(embed_dtype, embed_device)

    from ..data.loading import load_dataset_folder  # needs `datasets`; reading a catalog does not

    sequences, items = load_dataset_folder(data_dir, drop_unknown=drop_unknown)  # a bad data file is named first
    _check_output(output, overwrite, inputs)  # fail before minutes of work, not after
    rows = items.to_list()
    for row in rows:
        row["text"] = item_text(row, max_description_chars=max_description_chars)
    heldout: list[dict] = []
    if holdout_fraction > 0:
        generator = torch.Generator().manual_seed(seed)
        n_hold = int(round(holdout_fraction * len(rows)))
        if n_hold >= len(rows):
            raise ValueError(f"holdout_fraction={holdout_fraction} leaves no item in the catalog")
        hold = set(torch.randperm(len(rows), generator=generator)[:n_hold].tolist())
        heldout = [row for i, row in enumerate(rows) if i in hold]
        rows = [row for i, row in enumerate(rows) if i not in hold]
    load_seconds = time.perf_counter() - started

    if ids_from is not None:
        check_ids_from(ids_from, [row["item_id"] for row in rows])  # before minutes of embedding
    texts = [row["text"] for row in rows]
    t0 = time.perf_counter()
    with contextlib.nullcontext() if show_progress else quiet_progress_bars():
        embeddings = embed_texts(
            texts, encoder_path, batch_size=embed_batch_size, cache_dir=cache_dir,
            show_progress=show_progress, max_length=embed_max_length, device=embed_device, dtype=embed_dtype,
        )  # [N, E]
    # the encoder as it ran here, kept with the catalog's assets for add-items to recognise it (not for --ids-from:
    # such a catalog takes no new items)
    signature = None if ids_from is not None else encoder_signature(encoder_path, max_length=embed_max_length,
                                                                    device=embed_device, dtype=embed_dtype)
    embed_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    rqvae, history, saved_quantizer = None, {}, None
    if quantizer == "rqvae":
        settings = dict(
            input_dim=int(embeddings.shape[1]), num_levels=num_levels, codebook_size=codebook_size,
            seed=seed, dedup_level=dedup_level,
        )
        if rqvae_epochs is not None:
            settings["epochs"] = rqvae_epochs
        settings.update(rqvae_overrides or {})
        rqvae = RQVAE(RQVAEConfig(**settings))
        history = rqvae.fit(embeddings, show_progress=show_progress)
        codes = rqvae.encode(embeddings)  # [N, L] (or [N, L + 1] in dedup mode)
        level_sizes = rqvae.level_sizes(codes)
        saved_quantizer = rqvae
    else:
        vectors = embeddings if ids_from is None else learned_item_vectors(ids_from, [row["item_id"] for row in rows])
        codes, level_sizes, fitted = rq_kmeans_codes(vectors, num_levels, codebook_size, dedup_level, seed)
        # collaborative IDs quantize vectors that new items do not have: no quantizer, so add-items refuses them
        saved_quantizer = fitted if ids_from is None else None
    quantizer_seconds = time.perf_counter() - t0

    token_ids, source_token_ids = compact_text_tokens(texts, load_encoder_tokenizer(encoder_path), max_text_tokens)

    tmp = staging_dir(output)
    try:
        from safetensors.torch import save_file

        item_ids = [row["item_id"] for row in rows]
        tokenizer = CobraTokenizer.from_items(
            item_ids, codes, [row.get("title") or "" for row in rows], level_sizes, max_history=max_history
        )
        tokenizer.save_pretrained(str(tmp))
        save_file(
            {
                "token_ids": token_ids.contiguous(),
                "source_token_ids": source_token_ids.contiguous(),
                "text_embeddings": embeddings.float().contiguous(),
            },
            str(tmp / ITEM_TEXT_FILE),
            metadata={"format": "pt"},
        )
        _write_jsonl(tmp / "items.jsonl", rows)
        if heldout:
            _write_jsonl(tmp / HELDOUT_FILE, heldout)
        if saved_quantizer is not None:
            saved_quantizer.save_pretrained(tmp / QUANTIZER_DIR)
        stats = {
            **id_stats(codes, level_sizes),
            "num_users": len(sequences),
            "num_heldout_items": len(heldout),
            "text_vocab_size": int(source_token_ids.shape[0]),
            "text_tokens_per_item": int(token_ids.shape[1]),
            "quantizer_final_loss": {k: history[k][-1] for k in ("loss", "recon", "codebook", "commit") if history.get(k)},
            "timings_s": {
                "load": round(load_seconds, 3),
                "embed": round(embed_seconds, 3),
                "quantizer": round(quantizer_seconds, 3),
                "total": round(time.perf_counter() - started, 3),
            },
        }
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        from .. import __version__

        prepare_args = {
            "data_dir": str(Path(data_dir).resolve()),
            # resolved like data_dir: a relative --encoder would name another folder (or none) when train, evaluate
            # or add-items run from another working directory; a name from the local HF cache stays as given
            "encoder": None if encoder is None else str(Path(encoder).resolve() if Path(encoder).exists() else encoder),
            "encoder_name": DEFAULT_ENCODER_NAME if encoder is None else Path(str(encoder)).name,
            "seed": seed,
            "num_levels": num_levels,
            "codebook_size": codebook_size,
            "dedup_level": dedup_level,
            "level_sizes": level_sizes,
            "drop_unknown": drop_unknown,
            "holdout_fraction": holdout_fraction,
            "max_text_tokens": max_text_tokens,
            "max_description_chars": max_description_chars,
            "embed_max_length": embed_max_length,
            "encoder_signature": signature,
            "embed_dtype": embed_dtype,
            "embed_device": embed_device,
            "max_history": max_history,
            "quantizer": quantizer,
            "ids_from": None if ids_from is None else str(ids_from),
            "rqvae": None if rqvae is None else rqvae.config.to_dict(),
            "cobra_hf_version": __version__,
        }
        (tmp / "prepare_args.json").write_text(json.dumps(prepare_args, indent=2) + "\n", encoding="utf-8")
        _check_output(output, overwrite, inputs)  # someone may have written there while we worked
        _swap_into_place(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("catalog of %d items written to %s", len(rows), output)
    return output
