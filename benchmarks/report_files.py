"""The flags and the write of a benchmark's JSON report, shared by the timing scripts: an existing report is not
replaced without --overwrite (refused before any work), and the new one is written aside, then renamed, so a kill
leaves the old report or none."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch


def add_report_flags(parser: argparse.ArgumentParser) -> None:
    """--threads, --output and --overwrite."""
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", required=True, help="JSON report (refuses to replace one without --overwrite)")
    parser.add_argument("--overwrite", action="store_true")


def check_report_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses an existing --output without --overwrite (one line, exit 2); applies --threads."""
    if Path(args.output).exists() and not args.overwrite:
        parser.error(f"{args.output} already exists (--overwrite to replace it).")
    if args.threads:
        torch.set_num_threads(args.threads)


def save_report(report: dict, output: str | Path) -> None:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    aside = output.with_name(f".{output.name}.tmp")
    aside.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(aside, output)
