"""What the validation-only probes of issue 21 share (complementarity.py, rank_fusion_probe.py,
learned_fusion_probe.py, prefix_prior_probe.py, mixture_probe.py): their common flags and the seeded sample of
validation users they all score, so that their numbers are comparable user for user."""

from __future__ import annotations

import argparse

import torch

from cobra_hf.evaluation import sample_split
from cobra_hf.inference import load_checkpoint
from cobra_hf.training.datasets import index_splits


def probe_parser(doc: str, sparse_model: bool = False) -> argparse.ArgumentParser:
    """--model, --data, --users (seeded validation sample, -1 = all), --output; --sparse-model when the probe can
    read the sparse list from a second model of the same catalog."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--model", required=True)
    if sparse_model:
        parser.add_argument("--sparse-model", help="checkpoint whose sparse list is read (default: --model)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--users", type=int, default=5000, help="validation users, seeded sample (-1 = all)")
    parser.add_argument("--output", required=True)
    return parser


def validation_users(model, tokenizer, data: str, users: int) -> tuple[list[list[int]], torch.Tensor]:
    """(histories: catalog-index lists, targets Long[U]) of the seeded sample of validation users (-1 = all)."""
    splits = index_splits(data, tokenizer, max_history=model.config.max_history)
    rows = sample_split(splits["validation"], None if users < 0 else users)
    return list(rows["history_index"]), torch.tensor(list(rows["target_index"]))


def load_models(args) -> tuple:
    """(model, tokenizer, sparse model, its tokenizer): the sparse pair is the first unless --sparse-model is given."""
    model, tokenizer = load_checkpoint(args.model)
    if not getattr(args, "sparse_model", None):
        return model, tokenizer, model, tokenizer
    return (model, tokenizer, *load_checkpoint(args.sparse_model))
