"""Dataset folders and interaction tables -> `datasets.Dataset`, leave-one-out splits, item text.

Names are imported lazily: item text helpers (and the catalog readers built on them) work where `datasets` is not
installed, e.g. on a bare accelerator machine that only reads a catalog.
"""

from ..lazy_exports import lazy_exports

# eager: the submodule shares the function's name, and importing it would otherwise bind the module here
from .item_text import item_text

_EXPORTS = {
    "ITEM_FIELDS": ".loading",
    "load_dataset_folder": ".loading",
    "load_interactions": ".loading",
    "load_items": ".loading",
    "load_sequences": ".loading",
    "sequences_from_lists": ".loading",
    "leave_one_out": ".splits",
}

__all__ = sorted([*_EXPORTS, "item_text"])

__getattr__ = lazy_exports(__name__, _EXPORTS)
