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
from .ensemble import CobraEnsemble  # noqa: E402


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


def _register_pipeline() -> None:
    """`transformers.pipeline("cobra-recommendation", model=model, tokenizer=tokenizer)` with in-memory objects;
    checkpoints on disk or the Hub name the pipeline in config.json (`custom_pipelines`, trust_remote_code)."""
    from transformers import AutoModel
    from transformers.pipelines import PIPELINE_REGISTRY

    from .pipeline_cobra import TASK, CobraRecommendationPipeline

    if PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl") is not CobraRecommendationPipeline:
        PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=CobraRecommendationPipeline, pt_model=AutoModel, type="text")


_register_pipeline()

__all__ = [
    "CobraConfig",
    "CobraEnsemble",
    "CobraForSequentialRecommendation",
    "CobraGenerationOutput",
    "CobraOutput",
    "CobraPreTrainedModel",
    "CobraTokenizer",
]
