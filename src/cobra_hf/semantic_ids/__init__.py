"""Semantic IDs: sentence embeddings of item texts (cached), the RQ-VAE quantizer, the catalog builder."""

from .catalog import build_catalog, compact_text_tokens, load_catalog_arrays, tokenize_with_vocab
from .embeddings import default_encoder_path, embed_texts, load_encoder
from .rqvae import RQVAE, RQVAEConfig, dedup_codes, id_stats, kmeans

__all__ = [
    "RQVAE",
    "RQVAEConfig",
    "build_catalog",
    "compact_text_tokens",
    "dedup_codes",
    "default_encoder_path",
    "embed_texts",
    "id_stats",
    "kmeans",
    "load_catalog_arrays",
    "load_encoder",
    "tokenize_with_vocab",
]
