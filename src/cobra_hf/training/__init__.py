"""Training COBRA with the transformers Trainer: collator, datasets, model builder, trainer, entry point."""

from .collator import CobraDataCollator
from .datasets import index_splits
from .model_builder import build_model, load_catalog
from .trainer import CobraTrainer

__all__ = ["CobraDataCollator", "CobraTrainer", "build_model", "index_splits", "load_catalog"]
