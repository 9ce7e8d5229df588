"""Sentence-encoder flags shared by `cobra-hf prepare` and `cobra-hf add-items` (not a subcommand itself)."""

from __future__ import annotations

import argparse

EMBED_DTYPE_CHOICES = ("auto", "fp32", "fp16", "bf16")


def add_embedding_flags(parser: argparse.ArgumentParser) -> None:
    """--device, --embed-dtype and --embed-batch-size: where and how the sentence encoder reads the item texts."""
    group = parser.add_argument_group("sentence encoder")
    group.add_argument("--device", default="auto", metavar="DEVICE",
                       help="where the sentence encoder runs: auto (default: a CUDA GPU when there is one, else the "
                            "CPU), cpu, cuda, cuda:N or mps")
    group.add_argument("--embed-dtype", choices=EMBED_DTYPE_CHOICES, default="auto",
                       help="the encoder's precision: auto (default: fp16 on CUDA, fp32 elsewhere), fp32, fp16 or bf16; "
                            "the embeddings are fp32 unit vectors either way, and the --cache-dir entry depends on it")
    group.add_argument("--embed-batch-size", type=int, default=None, metavar="N",
                       help="texts per encoder forward pass (default 64 on the CPU, 512 on a GPU)")


def check_embedding_flags(args: argparse.Namespace) -> tuple[str, str]:
    """(device, dtype) resolved on this machine; a ValueError (one line, naming the flag) before any work."""
    from ..semantic_ids.embeddings import resolve_device, resolve_embed_dtype

    if args.embed_batch_size is not None and args.embed_batch_size < 1:
        raise ValueError(f"--embed-batch-size must be at least 1, got {args.embed_batch_size}.")
    device = resolve_device(args.device)
    return device, resolve_embed_dtype(args.embed_dtype, device)
