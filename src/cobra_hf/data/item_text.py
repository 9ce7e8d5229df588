"""Flatten an item's metadata into the one text string that the sentence encoder and item-text encoder read."""

from __future__ import annotations

from typing import Any, Mapping

DEFAULT_DESCRIPTION_CHARS = 300


def _truncate(text: str, budget: int) -> str:
    """Cut `text` to at most `budget` characters, at a word boundary when one is near."""
    if len(text) <= budget:
        return text
    cut = text[:budget]
    space = cut.rfind(" ")
    if space > budget * 0.6:  # avoid ending mid-word unless that throws away too much
        cut = cut[:space]
    return cut.rstrip(" ,;.") + " ..."


def _clean(value: Any) -> str:
    return " ".join(str(value).split())  # collapse newlines/tabs so the text is one line


def item_text(row: Mapping[str, Any], max_description_chars: int = DEFAULT_DESCRIPTION_CHARS) -> str:
    """One string from an item row: `"title: ...; brand: ...; categories: a > b; attributes: a1 a2; description: ..."`.

    Missing, null or empty fields are left out. The description comes last and is cut to
    `max_description_chars` characters (0 drops it) because it is long and the encoders truncate
    anyway: the short, specific fields should come first. An item with no text at all yields
    `"item: <item_id>"` so that it still gets an embedding.
    """
    parts = []
    for field in ("title", "brand"):
        value = row.get(field)
        if value is not None and _clean(value):
            parts.append(f"{field}: {_clean(value)}")
    categories = [_clean(c) for c in (row.get("categories") or []) if c is not None and _clean(c)]
    if categories:
        parts.append("categories: " + " > ".join(categories))
    attributes = [_clean(a) for a in (row.get("attributes") or []) if a is not None and _clean(a)]
    if attributes:
        parts.append("attributes: " + " ".join(attributes))
    description = row.get("description")
    if description is not None and max_description_chars > 0 and _clean(description):
        parts.append("description: " + _truncate(_clean(description), max_description_chars))
    if not parts:
        return f"item: {row.get('item_id', '')}"
    return "; ".join(parts)
