"""Hub helpers: model cards for checkpoints and pushing checkpoint folders to the Hub."""

from .checkpoint import save_checkpoint, write_card_from_config
from .model_card import is_cobra_model_card, is_generated_model_card, render_model_card, write_model_card
from .push import checkpoint_problems, push_checkpoint, validate_checkpoint

__all__ = [
    "checkpoint_problems",
    "is_cobra_model_card",
    "is_generated_model_card",
    "push_checkpoint",
    "render_model_card",
    "save_checkpoint",
    "validate_checkpoint",
    "write_card_from_config",
    "write_model_card",
]
