"""What every block shares: where the files are, the metrics, the marker syntax, the file loader, formatting.

A block is a function `block_NAME(renderer, arg=None) -> str`; it reads JSON through `Renderer.load` (which records
the file, so the block can cite it) and returns the markdown that goes between its two markers.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ("README.md", "docs/EXPERIMENTS.md", "docs/RESEARCH_RUNS.md", "docs/ROBUSTNESS.md")
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
HEADER = ["Recall@5", "NDCG@5", "Recall@10", "NDCG@10"]
MODES = ("cobra", "dense", "sparse", "no_fusion")
MODE_NAMES = {"cobra": "COBRA mode", "dense": "dense only (no ID)", "sparse": "sparse only (ID only)",
              "no_fusion": "no BeamFusion (top-1 ID + ANN)"}
BLOCK = re.compile(r"<!-- results:(?P<name>[\w-]+)(?: (?P<arg>[^\s>]+))? -->\n.*?<!-- /results:(?P=name) -->", re.S)


class Renderer:
    """Loads JSON under benchmarks/results, remembering every file a block read (the block cites them)."""

    def __init__(self, results: Path = RESULTS):
        self.results = results
        self.read: list[str] = []  # the current block's files, in order
        self.all_read: set[str] = set()

    def load(self, rel: str):
        path = self.results / rel
        if not path.is_file():
            raise FileNotFoundError(f"benchmarks/results/{rel} is cited by the docs but does not exist")
        if rel not in self.read:
            self.read.append(rel)
        self.all_read.add(rel)
        return json.loads(path.read_text(encoding="utf-8"))

    def exists(self, rel: str) -> bool:
        return (self.results / rel).is_file()

    def sources(self) -> str:
        return "Source (under `benchmarks/results/`): " + ", ".join(f"`{rel}`" for rel in self.read) + "."



def f4(value) -> str:
    """A metric with four decimals, 'n/a' when absent."""
    return "n/a" if value is None else f"{float(value):.4f}"


def cells(result: dict | None, metrics=METRICS) -> list[str]:
    """The four metrics of a result, formatted, in METRICS order."""
    return [f4((result or {}).get(m)) for m in metrics]


def mean_sd(values: list[float]) -> str:
    """'mean ± sd' (sample standard deviation) over seeds."""
    if len(values) == 1:
        return f4(values[0])
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def mean_sd_percent(values: list[float]) -> str:
    """'+x.x% ± sd' over seeds ('+x.x%' for one): a relative change in percent."""
    if len(values) == 1:
        return f"{values[0]:+.1f}%"
    return f"{statistics.mean(values):+.1f}% ± {statistics.stdev(values):.1f}"


def minutes(seconds) -> str:
    """Seconds as minutes with one decimal."""
    return "n/a" if seconds is None else f"{float(seconds) / 60:.1f}"


def arrow(a, b, digits: int = 4) -> str:
    """'a → b', both with `digits` decimals: a change measured between two runs."""
    return f"{float(a):.{digits}f} → {float(b):.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fusion(generation: dict | None) -> str:
    """The decoding setting in words: 'paper' or 'joint tau 0.1, psi 2, psi_h 16, G 50'."""
    g = generation or {}
    if g.get("beam_fusion", "paper") == "paper":
        extra = f", G {g['dense_guided_ids']}" if g.get("dense_guided_ids") else ""
        return f"paper BeamFusion, tau {num(g.get('beam_fusion_tau', 0.9))}, psi {num(g.get('beam_fusion_psi', 16))}{extra}"
    return (f"joint BeamFusion, tau {num(g.get('beam_fusion_tau'))}, psi {num(g.get('beam_fusion_psi'))}, "
            f"psi_h {num(g.get('beam_fusion_dense_psi', 0))}, G {g.get('dense_guided_ids', 0)}")


def num(value) -> str:
    """A number as written in a setting: '16', '0.1'; '?' when absent."""
    if value is None:
        return "?"
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def same_setting(a: dict, b: dict) -> bool:
    """Whether two generate() settings decode alike (numbers compared as floats; bookkeeping keys ignored)."""
    keys = ("beam_fusion", "dense_guided_ids", "beam_fusion_tau", "beam_fusion_psi", "beam_fusion_dense_psi",
            "exclude_history")
    defaults = {"beam_fusion": "paper", "dense_guided_ids": 0, "beam_fusion_tau": 0.9, "beam_fusion_psi": 16,
                "beam_fusion_dense_psi": 0, "exclude_history": False}

    def norm(d, k):
        v = d.get(k, defaults[k])
        return v if isinstance(v, (str, bool)) else float(v)

    return all(norm(a, k) == norm(b, k) for k in keys)
