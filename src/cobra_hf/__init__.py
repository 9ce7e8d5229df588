"""cobra-hf: COBRA generative recommendation as a Hugging Face transformers model."""

__version__ = "0.1.0"

from .tokenization_cobra import CobraTokenizer  # noqa: E402
from .configuration_cobra import CobraConfig  # noqa: E402
from .modeling_cobra import (  # noqa: E402
    CobraForSequentialRecommendation,
    CobraGenerationOutput,
    CobraOutput,
    CobraPreTrainedModel,
)


def _register_auto_classes() -> None:
    """With cobra_hf importable, Auto* classes load COBRA checkpoints without trust_remote_code; saved
    checkpoints also carry auto_map + code files for machines where cobra_hf is not installed."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    AutoConfig.register("cobra", CobraConfig, exist_ok=True)
    AutoModel.register(CobraConfig, CobraForSequentialRecommendation, exist_ok=True)
    AutoTokenizer.register(CobraConfig, slow_tokenizer_class=CobraTokenizer, exist_ok=True)
    CobraConfig.register_for_auto_class()
    CobraForSequentialRecommendation.register_for_auto_class("AutoModel")
    CobraTokenizer.register_for_auto_class("AutoTokenizer")


_register_auto_classes()

__all__ = [
    "CobraConfig",
    "CobraForSequentialRecommendation",
    "CobraGenerationOutput",
    "CobraOutput",
    "CobraPreTrainedModel",
    "CobraTokenizer",
]
