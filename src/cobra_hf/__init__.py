"""cobra-hf: COBRA generative recommendation as a Hugging Face transformers model."""

__version__ = "0.1.0"

from .tokenization_cobra import CobraTokenizer  # noqa: E402
