"""Tiny synthetic catalogs and models for fast unit tests (no real data, no downloads)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from cobra_hf import CobraConfig, CobraForSequentialRecommendation, CobraTokenizer


def tiny_catalog(num_items: int = 40, level_sizes=(4, 4, 3), text_tokens: int = 6, text_vocab: int = 30, seed: int = 0):
    """Random catalog: ids 'i0'.., codes Long[I, L] (some IDs shared), text ids Long[I, T]."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, size, (num_items,), generator=gen) for size in level_sizes], 1)
    text = torch.randint(3, text_vocab, (num_items, text_tokens), generator=gen)
    text[:, text_tokens // 2 + 1 :] *= torch.randint(0, 2, (num_items, 1), generator=gen)  # ragged texts
    item_ids = [f"i{n}" for n in range(num_items)]
    titles = [f"item number {n}" for n in range(num_items)]
    return item_ids, codes, text, titles


def tiny_model(num_items: int = 40, level_sizes=(4, 4, 3), seed: int = 0, **overrides):
    item_ids, codes, text, titles = tiny_catalog(num_items, level_sizes, seed=seed)
    tokenizer = CobraTokenizer.from_items(item_ids, codes, titles, list(level_sizes), max_history=8)
    settings = dict(
        level_sizes=list(level_sizes), num_items=num_items, text_vocab_size=30, max_text_tokens=8,
        hidden_size=32, num_attention_heads=2, intermediate_size=64, max_history=8, dropout=0.0,
        attention_dropout=0.0, history_dense_loss_weight=0.5,
    )
    settings.update(overrides)
    config = CobraConfig(**settings)
    torch.manual_seed(seed)
    model = CobraForSequentialRecommendation(config)
    model.set_catalog(codes, text, None, tokenizer.catalog_hash)
    return model, tokenizer


def random_histories(num_items: int, batch: int, max_len: int = 6, seed: int = 1) -> list[list[str]]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=gen).tolist()
    return [[f"i{int(i)}" for i in torch.randint(0, num_items, (n,), generator=gen)] for n in lengths]


def benchmark_script(name: str):
    """benchmarks/NAME.py loaded as a module (the scripts are not a package), for tests that call their main(). Its
    folder goes on sys.path, as when the script runs, so that it imports its sibling scripts."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    path = folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
