"""Loading a checkpoint for inference and recommending for item-id histories (used by the CLI and pipeline)."""

from __future__ import annotations

import torch

from .model_location import locate_model
from .modeling_cobra import CobraForSequentialRecommendation
from .tokenization_cobra import CobraTokenizer


def load_checkpoint(
    path: str, device: str = "cpu", tokenizer: CobraTokenizer | None = None
) -> tuple[CobraForSequentialRecommendation, CobraTokenizer]:
    """Model (in eval mode) + tokenizer from a checkpoint folder or Hub repo id; refuses a mismatched pair.
    Pass `tokenizer` when it is already loaded from the same place. A path that is neither a checkpoint folder nor a
    Hub repo fails at once (see `cobra_hf.model_location.locate_model`)."""
    source = locate_model(path)  # one line at once for a missing folder or Hub repo, before transformers retries
    try:
        model = CobraForSequentialRecommendation.from_pretrained(source)
    except (OSError, RuntimeError) as err:
        raise ValueError(f"Cannot load the model weights of {path}: {str(err).splitlines()[0]}") from None
    if tokenizer is None:
        tokenizer = CobraTokenizer.from_pretrained(source)
    check_compatible(model, tokenizer)
    return model.to(device).eval(), tokenizer


def load_ensemble(paths: list[str], device: str = "cpu", tokenizer: CobraTokenizer | None = None,
                  roles: list[str] | None = None):
    """One checkpoint -> (model, tokenizer) as `load_checkpoint`; several -> (`CobraEnsemble` of them, the first's
    tokenizer). Every checkpoint must belong to the first one's catalog (a ValueError names the one that does not).
    Pass `tokenizer` when the first checkpoint's is already loaded; roles: see `CobraEnsemble`."""
    if not paths:
        raise ValueError("No checkpoint to load.")
    model, tokenizer = load_checkpoint(paths[0], device=device, tokenizer=tokenizer)
    if len(paths) == 1 and roles in (None, ["both"]):
        return model, tokenizer
    from .ensemble import CobraEnsemble

    members = [model]
    for path in paths[1:]:
        try:
            members.append(load_checkpoint(path, device=device, tokenizer=tokenizer)[0])
        except ValueError as err:
            raise ValueError(f"Ensemble member {path} does not fit {paths[0]}: {err}") from None
    return CobraEnsemble(members, roles).eval(), tokenizer


def check_compatible(model: CobraForSequentialRecommendation, tokenizer: CobraTokenizer) -> None:
    """Raises a ValueError when the tokenizer and the model were made from different catalogs."""
    model_hash = getattr(model.config, "catalog_hash", "")
    if model_hash and model_hash != tokenizer.catalog_hash:
        raise ValueError(
            f"The tokenizer (catalog {tokenizer.catalog_hash}) and the model (catalog {model_hash}) come from "
            "different catalogs; load both from the same checkpoint."
        )
    if not torch.equal(model.item_codes.cpu(), torch.from_numpy(tokenizer.item_codes)):
        raise ValueError("The tokenizer's semantic IDs differ from the model's catalog: they do not belong together.")


def recommend(
    model: CobraForSequentialRecommendation,
    tokenizer: CobraTokenizer,
    histories: list[list[str]],
    top_k: int | None = None,
    unknown_items: str = "error",
    **generate_kwargs,
) -> list[list[dict]]:
    """Histories of item ids -> per history, a list of {"item_id", "title", "score", "rank"} best first; top_k and
    the other generate() settings default to the model's (its generation_config: 10 items unless tuned)."""
    if top_k is not None:
        generate_kwargs["top_k"] = top_k
    batch = dict(tokenizer(histories, unknown_items=unknown_items))
    # the whole histories: exclude_history must also leave out the items that the newest max_history dropped
    batch["history_items"] = tokenizer.history_items(histories, unknown_items=unknown_items)
    device = next(model.parameters()).device
    output = model.generate(**{key: value.to(device) for key, value in batch.items()}, **generate_kwargs)
    results = []
    for row in tokenizer.batch_decode_items(output, with_scores=True):
        results.append([
            {"rank": rank + 1, "item_id": item, "title": tokenizer.title(item), "score": round(float(score), 6)}
            for rank, (item, score) in enumerate(row)
        ])
    return results
