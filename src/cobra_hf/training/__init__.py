"""Training COBRA with the transformers Trainer: collator, datasets, model builder, trainer, entry point.

Names are imported lazily, so that e.g. the collator and model builder work where `datasets` is not installed.
"""

import importlib

_EXPORTS = {
    "CobraDataCollator": ".collator",
    "index_splits": ".datasets",
    "build_model": ".model_builder",
    "load_catalog": ".model_builder",
    "CobraTrainer": ".trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
