"""Dataset folders and interaction tables -> `datasets.Dataset`, leave-one-out splits, item text."""

from .item_text import item_text
from .loading import (
    ITEM_FIELDS,
    load_dataset_folder,
    load_interactions,
    load_items,
    load_sequences,
    sequences_from_lists,
)
from .splits import leave_one_out

__all__ = [
    "ITEM_FIELDS",
    "item_text",
    "leave_one_out",
    "load_dataset_folder",
    "load_interactions",
    "load_items",
    "load_sequences",
    "sequences_from_lists",
]
