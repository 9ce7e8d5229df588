"""`cobra-hf push MODEL_DIR --repo-id NAME`: upload a checkpoint folder to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cobra-hf push",
        description="Upload a checkpoint folder (config, weights, tokenizer, catalog, code, model card) to the Hub. "
        "The Hub address comes from HF_ENDPOINT and the token from --token, HF_TOKEN or `hf auth login`.",
    )
    parser.add_argument("model_dir", help="checkpoint folder made by `cobra-hf train`")
    parser.add_argument("--repo-id", required=True, help="Hub repo, `name` or `user/name`")
    parser.add_argument("--private", action="store_true", help="create the repo as private (if it is new)")
    parser.add_argument("--commit-message", default=None, help="message of the commit")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    parser.add_argument(
        "--no-card", action="store_true",
        help="do not write the cobra-hf model card into a folder that has no README.md (then a missing README.md is an error)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = Path(args.model_dir)
    if not folder.is_dir():  # the same line as recommend/evaluate give, before any Hub request
        why = "it is a file; a checkpoint is a folder" if folder.exists() else "it does not exist"
        raise FileNotFoundError(f"no model folder at {args.model_dir}: {why}")
    from ..hub.push import push_checkpoint

    print(f"Pushing {args.model_dir} to {args.repo_id} ...", file=sys.stderr)
    try:
        url = push_checkpoint(
            args.model_dir, args.repo_id, private=args.private, commit_message=args.commit_message, token=args.token,
            write_card=not args.no_card,
        )
    except Exception as err:  # Hub/HTTP errors get one sentence; anything else is a bug: traceback
        if not type(err).__module__.startswith(("huggingface_hub", "httpx")):
            raise
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = " ".join(lines[:2]) or type(err).__name__
        print(f"cobra-hf push: error: the upload to {args.repo_id} failed: {reason}", file=sys.stderr)
        return 1
    print(url)
    return 0
