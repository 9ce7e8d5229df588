"""Renders every results table of README.md, docs/EXPERIMENTS.md, docs/RESEARCH_RUNS.md and docs/ROBUSTNESS.md from
the JSON files in benchmarks/results.

A table lives between two marker comments; everything between them is replaced by what the block of that name
renders, so no number in those tables is typed by hand:

    <!-- results:beauty -->                      (a block without an argument)
    <!-- /results:beauty -->
    <!-- results:tune beauty_cpu_fast/tune_fusion.json -->     (a block with one argument)
    <!-- /results:tune -->

Every block names the JSON files it read (paths under benchmarks/results/). The research runs of
benchmarks/research_run.py (benchmarks/results/research/*.json) are picked up as they appear. The blocks live in
benchmarks/rendering/, one module per family of tables (its __init__ lists them); this file is the entry point.

usage:
  python benchmarks/render_results.py            # rewrite the tables of the four documents in place
  python benchmarks/render_results.py --check    # exit 1 and name the files whose tables are stale (tests/test_docs.py)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the rendering package beside this file, also when loaded
try:  # from a path (tests/test_docs.py); taken off again so the caller's imports see the path they had
    from rendering.core import BLOCK, DOCS, METRICS, RESULTS, ROOT, Renderer
    from rendering.documents import BLOCKS, render_all, render_text
    from rendering.goals import verdict
    from rendering.research import block_research
finally:
    sys.path.pop(0)

__all__ = ["BLOCK", "BLOCKS", "DOCS", "METRICS", "RESULTS", "ROOT", "Renderer", "block_research", "main", "render_all",
           "render_text", "verdict"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a table is stale")
    args = parser.parse_args(argv)
    rendered, _ = render_all()
    stale = [doc for doc, (current, new) in rendered.items() if current != new]
    if args.check:
        for doc in stale:
            print(f"{doc}: tables are stale; run python benchmarks/render_results.py", file=sys.stderr)
        return 1 if stale else 0
    for doc in stale:
        (ROOT / doc).write_text(rendered[doc][1], encoding="utf-8")
        print(f"rewrote the tables of {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
