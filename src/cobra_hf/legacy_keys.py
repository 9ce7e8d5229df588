"""State-dict keys of checkpoints saved before the backbone/head split (CobraModel at `model.`): the backbone's
attributes were then at the top level. from_pretrained maps them through base_model_prefix; load_state_dict through the
pre-hook below. A small module of its own: it travels with every checkpoint (modeling_cobra.py imports it)."""

from __future__ import annotations

# the backbone's attributes: checkpoints saved before the backbone/head split hold them at the top level
BACKBONE_ATTRIBUTES = ("item_encoder", "item_embed", "code_embed", "dense_in", "type_embed", "position_embed",
                       "embed_norm", "decoder", "item_codes", "item_text_ids", "item_text_embeddings")


def legacy_key(key: str) -> str:
    """A state-dict key of a checkpoint saved before the backbone/head split -> today's key (others unchanged)."""
    return f"model.{key}" if key.split(".", 1)[0] in BACKBONE_ATTRIBUTES else key


def rename_legacy_keys(state_dict, prefix, *args) -> None:
    """load_state_dict pre-hook: old top-level backbone keys (e.g. `item_codes`) load into `model.` (from_pretrained
    does the same through base_model_prefix)."""
    for key in [key for key in state_dict if key.startswith(prefix)]:
        new = prefix + legacy_key(key[len(prefix):])
        if new != key and new not in state_dict:
            state_dict[new] = state_dict.pop(key)
