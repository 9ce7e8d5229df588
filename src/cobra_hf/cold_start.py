"""New items without retraining: give them semantic IDs with the saved quantizer, text tokens in the saved compact
vocabulary, and append them to a trained model's catalog and its tokenizer.

    from cobra_hf.cold_start import add_items
    new = add_items(model, tokenizer, [{"item_id": "B0NEW", "title": "rose lip balm"}], "runs/beauty/model")

A new item's dense vector comes from the (trained) item-text encoder reading its text, so it can be recommended at
once: in "cobra" mode through its ID and its vector, in "sparse" mode only through its ID (items sharing an ID are
ranked in catalog order there). With `use_item_embeddings`, its per-item row (never trained) starts as the mean
row of the old items that share its longest ID prefix (`item_embeddings="id_neighbours"`, the default): the ID is a
cluster of similar texts, so the neighbours' collaborative part is the best guess; `"zeros"` leaves it at zero.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .cobra_generation import prefix_keys
from .data.item_text import item_text
from .semantic_ids.assets import ASSETS_DIR, VOCAB_FILE, CatalogAssets, load_catalog_assets
from .semantic_ids.catalog import tokenize_with_vocab
from .semantic_ids.embeddings import (ENCODER_CHECK_MIN_COSINE, ENCODER_CHECK_TEXT, embed_texts, load_encoder_tokenizer,
                                     signature_cosine)

logger = logging.getLogger(__name__)


def _check_items(items: Sequence[Mapping], tokenizer) -> list[dict]:
    """The items as `load_items` reads an items.jsonl row (`data.item_record`: the same text whichever way an item
    comes in), each with a title, none in the catalog, no id twice."""
    from .data.loading import item_record

    if isinstance(items, Mapping) or not len(items):
        raise ValueError("items must be a non-empty list of dicts with at least 'item_id' and 'title'.")
    rows = []
    for position, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"Item {position} is a {type(item).__name__}, not a dict with 'item_id' and 'title'.")
        if item.get("item_id") is None or not str(item.get("item_id")).strip():
            raise ValueError(f"Item {position} has no 'item_id'.")
        row = item_record(dict(item), f"Item {position}")
        if row["title"] is None:
            raise ValueError(f"Item {row['item_id']!r} (position {position}) has no 'title'.")
        rows.append(row)
    item_ids = [row["item_id"] for row in rows]
    known = [item for item in item_ids if item in tokenizer.item_to_index]
    if known:
        raise ValueError(
            f"Items already in the catalog: {known[:10]}" + (f" and {len(known) - 10} more" if len(known) > 10 else "")
            + f" ({len(known)} in all); nothing was added."
        )
    repeated = sorted({item for item in item_ids if item_ids.count(item) > 1})
    if repeated:
        raise ValueError(f"The new items list these ids more than once: {repeated[:10]}; nothing was added.")
    return rows


def dedup_new_codes(existing: np.ndarray, prefixes: torch.Tensor, level_size: int, on_overflow: str = "share") -> torch.Tensor:
    """TIGER's collision code for new items: the next free code after the existing items with the same first L
    codes (existing Long[I, L + 1], prefixes Long[n, L]) -> Long[n, L + 1]. A code beyond the level's `level_size`
    codes has no token in the trained model: on_overflow="share" gives the item the last code (it then shares an ID,
    which COBRA's dense vector tells apart), "error" raises a ValueError."""
    taken: dict[tuple, int] = {}
    for row in existing.tolist():
        key = tuple(row[:-1])
        taken[key] = max(taken.get(key, -1), row[-1])
    out, overflow = [], 0
    for row in prefixes.tolist():
        key = tuple(row)
        code = taken.get(key, -1) + 1
        taken[key] = code
        if code >= level_size:
            if on_overflow == "error":
                raise ValueError(
                    f"A new item with codes {list(key)} needs collision code {code}, but the trained model has only "
                    f"{level_size}; pass on_dedup_overflow='share' to let it share an ID."
                )
            overflow += 1
            code = level_size - 1
        out.append(row + [code])
    if overflow:
        logger.warning("%d new item(s) share their semantic ID with another item (the collision level is full).", overflow)
    return torch.tensor(out, dtype=torch.long).reshape(len(out), prefixes.shape[1] + 1)


def add_items(
    model,
    tokenizer,
    items: Sequence[Mapping],
    assets: CatalogAssets | str | os.PathLike,
    encoder: str | os.PathLike | None = None,
    on_dedup_overflow: str = "share",
    embed_batch_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    item_embeddings: str = "id_neighbours",
    embed_device: str = "auto",
    embed_dtype: str = "auto",
) -> list[int]:
    """Appends new items to a trained model's catalog and to its tokenizer; returns their catalog indices.

    items: dicts like items.jsonl rows (`item_id` and `title` required; brand, categories, attributes, description
    used when present). assets: a `CatalogAssets`, or the checkpoint folder (its `catalog/`) or catalog folder to
    read them from. encoder: the sentence encoder's folder when the recorded one is not on this machine.
    item_embeddings: "id_neighbours" or "zeros", the new rows of a model with `use_item_embeddings` (see above).
    embed_device, embed_dtype, embed_batch_size: how the sentence encoder runs (`embeddings.embed_texts`: "auto" =
    a CUDA GPU in fp16 when there is one, else the CPU in fp32).

    Steps: text (`data.item_text`) -> sentence embedding (`embed_texts`, the catalog's encoder and max length) ->
    semantic ID (`quantizer.encode`; with a dedup level, the next free collision code) -> text tokens in the
    checkpoint's compact vocabulary (unknown word pieces -> [UNK]) -> `model.set_catalog` with the rows appended and
    `tokenizer.add_items`; both end with the same catalog hash. Nothing changes when any step fails.
    """
    if on_dedup_overflow not in ("share", "error"):
        raise ValueError(f"on_dedup_overflow must be 'share' or 'error', got {on_dedup_overflow!r}.")
    if item_embeddings not in ("id_neighbours", "zeros"):
        raise ValueError(f"item_embeddings must be 'id_neighbours' or 'zeros', got {item_embeddings!r}.")
    items = _check_items(items, tokenizer)
    item_ids = [item["item_id"] for item in items]
    if not isinstance(assets, CatalogAssets):
        assets = load_catalog_assets(assets)
    check_own_assets(model, assets)
    encoder_path = str(encoder) if encoder is not None else assets.encoder_path()
    texts = [item_text(dict(item), max_description_chars=assets.max_description_chars) for item in items]
    # with a recorded encoder signature, the check sentence is embedded in the same pass (one encoder load)
    check = [ENCODER_CHECK_TEXT] if assets.encoder_signature else []
    embeddings = embed_texts(texts + check, encoder_path, batch_size=embed_batch_size, cache_dir=cache_dir,
                             show_progress=False, max_length=assets.embed_max_length, device=embed_device,
                             dtype=embed_dtype)  # [n (+ 1), E]
    signature, embeddings = (embeddings[-1], embeddings[:-1]) if check else (None, embeddings)
    if embeddings.shape[1] != assets.quantizer.config.input_dim:
        raise ValueError(
            f"The encoder {encoder_path} gives {embeddings.shape[1]}-d embeddings; the quantizer reads "
            f"{assets.quantizer.config.input_dim}-d: use the encoder the catalog was made with."
        )
    if signature is not None:  # the same width is not the same encoder: compare their embeddings of one sentence
        cosine = signature_cosine(signature.float().tolist(), assets.encoder_signature)
        if cosine < ENCODER_CHECK_MIN_COSINE:
            raise ValueError(
                f"The encoder {encoder_path} embeds text unlike the one the catalog was made with "
                f"({assets.encoder_name}): cosine {cosine:.2f} on a check sentence; pass that encoder with --encoder."
            )
    quantizer = assets.quantizer
    if quantizer.config.dedup_level:
        prefixes = quantizer.encode(embeddings)[:, :-1]  # the per-batch rank is recomputed against the catalog
        codes = dedup_new_codes(tokenizer.item_codes, prefixes, tokenizer.level_sizes[-1], on_dedup_overflow)
    else:
        codes = quantizer.encode(embeddings)  # [n, L]
    if codes.shape[1] != tokenizer.num_levels or codes.shape[1] != model.config.num_levels:
        raise ValueError(
            f"The quantizer makes {codes.shape[1]}-level IDs; the model and tokenizer use {model.config.num_levels}: "
            "these assets belong to another catalog."
        )
    text_ids = tokenize_with_vocab(texts, load_encoder_tokenizer(encoder_path), assets.source_token_ids,
                                   assets.max_text_tokens)  # [n, T]
    if int(assets.source_token_ids.shape[0]) != model.config.text_vocab_size:
        raise ValueError(
            f"The text vocabulary has {assets.source_token_ids.shape[0]} entries; the model's has "
            f"{model.config.text_vocab_size}: these assets belong to another catalog."
        )

    # append to the model's buffers (on their device); widths follow the model's config
    device = model.item_codes.device
    width = model.config.max_text_tokens
    text_ids = torch.nn.functional.pad(text_ids[:, :width], (0, max(0, width - text_ids.shape[1])))
    all_codes = torch.cat([model.item_codes.cpu(), codes])
    all_text = torch.cat([model.item_text_ids.cpu(), text_ids])
    all_embeddings = None
    if model.item_text_embeddings is not None:
        all_embeddings = torch.cat([model.item_text_embeddings.cpu(), embeddings.to(model.item_text_embeddings.dtype)])

    previous = {"item_ids": list(tokenizer.item_ids), "codes": tokenizer.item_codes.copy(),
                "titles": list(tokenizer.titles), "level_sizes": list(tokenizer.level_sizes)}
    titles = [str(item.get("title") or "") for item in items]
    # per backbone (an ID trunk has its own item embeddings), the rows of the items it knew
    old_rows = [None if backbone.item_embed is None else backbone.item_embed.weight.detach()[: len(previous["item_ids"])]
                for backbone in model.backbones()]
    new_indices = tokenizer.add_items(item_ids, codes.numpy(), titles)
    try:
        model.set_catalog(all_codes.to(device), all_text.to(device),
                          None if all_embeddings is None else all_embeddings.to(device), tokenizer.catalog_hash)
    except BaseException:
        tokenizer._load_catalog({**previous, "codes": previous["codes"].tolist()}, "<restored>")
        raise
    if old_rows[0] is not None and item_embeddings == "id_neighbours":
        with torch.no_grad():
            for backbone, rows in zip(model.backbones(), old_rows):
                backbone.item_embed.weight[rows.shape[0]:] = id_neighbour_rows(
                    rows, all_codes[: rows.shape[0]].to(device), codes.to(device), model.config.level_sizes
                )
        model.invalidate_caches()
    return new_indices


def check_own_assets(model, assets: CatalogAssets) -> None:
    """Refuses `assets` from another `cobra-hf prepare` run than the one whose catalog/ the model carries (a loaded
    checkpoint's `catalog_assets`): its quantizer would give new items IDs the model reads as other items. A model
    without them (built in Python, or from an `--ids-from` catalog) is not checked here."""
    own = getattr(model, "catalog_assets", None)
    if not own:
        return
    import tempfile

    from .catalog_files import write_assets

    with tempfile.TemporaryDirectory(prefix="cobra-assets-") as tmp:
        write_assets(own, tmp)
        expected = load_catalog_assets(tmp).fingerprint
    if expected != assets.fingerprint:
        raise ValueError(f"assets hold the quantizer of another `cobra-hf prepare` run (fingerprint "
                         f"{assets.fingerprint[:12]}) than the model's catalog/ ({expected[:12]}): pass the "
                         "checkpoint folder, or the catalog folder the model was trained on.")


def id_neighbour_rows(rows: torch.Tensor, codes: torch.Tensor, new_codes: torch.Tensor, level_sizes) -> torch.Tensor:
    """Per new item, the mean of `rows` Float[I, D] over the old items (codes Long[I, L]) that share its longest ID
    prefix (the whole ID first, then shorter ones); zero where not even the first code is shared.
    new_codes Long[n, L] -> Float[n, D]. One pass per level, no loop over items."""
    out = rows.new_zeros(new_codes.shape[0], rows.shape[1])
    filled = torch.zeros(new_codes.shape[0], dtype=torch.bool, device=rows.device)
    if rows.shape[0] == 0:
        return out
    for depth in range(codes.shape[1], 0, -1):
        keys, inverse = torch.unique(prefix_keys(codes[:, :depth], level_sizes), return_inverse=True)
        sums = rows.new_zeros(keys.shape[0], rows.shape[1]).index_add_(0, inverse, rows)
        counts = torch.bincount(inverse, minlength=keys.shape[0]).to(rows.dtype)
        new_keys = prefix_keys(new_codes[:, :depth], level_sizes)
        slot = torch.searchsorted(keys, new_keys).clamp(max=keys.shape[0] - 1)
        hit = (keys[slot] == new_keys) & ~filled
        out[hit] = sums[slot[hit]] / counts[slot[hit], None]
        filled |= hit
    return out


def check_assets_match(model_dir, tokenizer, assets: CatalogAssets | None, source, flag: str = "assets",
                       remedy: str | None = None) -> None:
    """Refuses quantizer assets (from `source`, a catalog folder or checkpoint) that another `cobra-hf prepare` run
    made than the one the checkpoint in `model_dir` was trained with: its new items would get IDs from another
    quantizer, which the model reads as other items. With the checkpoint's own `catalog/` assets, their
    fingerprints must be equal; without them (or with assets=None: a source without any), `source`'s items must
    have the semantic IDs the model gives them. remedy: what the refusal of other assets tells the user to do."""
    from pathlib import Path

    own = Path(model_dir) / ASSETS_DIR / VOCAB_FILE
    if own.is_file() and assets is not None:
        expected = load_catalog_assets(model_dir).fingerprint
        if expected != assets.fingerprint:
            raise ValueError(
                f"{flag} {source} holds the quantizer of another `cobra-hf prepare` run (fingerprint "
                f"{assets.fingerprint[:12]}) than {model_dir} was trained with ({expected[:12]}); "
                + (remedy or f"drop {flag} to use the checkpoint's own.")
            )
        return
    from .tokenization_cobra import CobraTokenizer

    try:
        other = CobraTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as err:
        raise ValueError(f"{flag} {source}: cannot read its item catalog to check it fits {model_dir} ({err}).") from None
    theirs = [index for index, item in enumerate(other.item_ids) if item in tokenizer.item_to_index]
    mine = [tokenizer.item_to_index[other.item_ids[index]] for index in theirs]
    same_width = other.item_codes.shape[1] == tokenizer.item_codes.shape[1]
    differ = len(theirs) if not same_width else int(
        (other.item_codes[theirs] != tokenizer.item_codes[mine]).any(axis=1).sum())  # rows [S, L] compared
    if not theirs or differ:
        why = "shares no item with it" if not theirs else f"gives {differ} of its {len(theirs)} items other IDs"
        raise ValueError(
            f"{flag} {source} is not the catalog {model_dir} was trained on (it {why}): pass the catalog folder that "
            "`cobra-hf prepare` made for this model."
        )


def load_items_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSON-lines file of items, read and checked like a dataset's items.jsonl
    (`cobra_hf.data.load_items`: bad lines, missing ids and duplicates name the file and line)."""
    from .data import load_items

    rows = load_items(path).to_list()
    if not rows:
        raise ValueError(f"{path} holds no items.")
    return rows
