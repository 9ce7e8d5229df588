"""Training COBRA with the transformers Trainer: collator, datasets, model builder, trainer, entry point.

Names are imported lazily, so that e.g. the collator and model builder work where `datasets` is not installed.
"""

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "CobraDataCollator": ".collator",
    "index_splits": ".datasets",
    "item_slot_counts": ".datasets",
    "build_model": ".model_builder",
    "load_catalog": ".model_builder",
    "CobraTrainer": ".trainer",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
