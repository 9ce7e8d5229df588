"""Which blocks exist, and how a document is re-rendered: every `<!-- results:NAME [ARG] -->` ...
`<!-- /results:NAME -->` span is replaced by what block NAME renders.
"""

from __future__ import annotations

import re
from pathlib import Path

from .cascade import (block_cascade_decomposition, block_complementarity, block_learned_fusion,
                      block_popularity_buckets, block_rank_fusion_probe, block_role_pairs,
                      block_whole_catalog_probes)
from .commands import block_commands
from .core import BLOCK, DOCS, RESULTS, ROOT, Renderer
from .experiments import block_cold_start, block_ensembles, block_excluded, block_gpu_sweep, \
    block_gpu_sweep_negatives, block_probe, block_runs, block_seeds, block_tune
from .final_read import block_final_read
from .goals import block_goals
from .measurements import (block_data_layer, block_load_checks, block_option_cost, block_scale, block_scale_million,
                           block_scale_million_steps, block_semantic_ids, block_speed)
from .readme import block_beauty, block_deviations, block_quickstart, block_scientific
from .research import (block_decoding_speed, block_decoding_temperature, block_ids_only_seeds, block_research,
                       block_research_fusion, block_research_summary, block_sharing_cells, block_train_logs,
                       block_two_phase_trunk)

# block name in the docs' markers -> the function that renders it
BLOCKS = {
    "beauty": block_beauty, "scientific": block_scientific, "quickstart": block_quickstart,
    "deviations": block_deviations, "runs": block_runs, "gpu-sweep": block_gpu_sweep,
    "gpu-sweep-negatives": block_gpu_sweep_negatives, "tune": block_tune, "probe": block_probe,
    "excluded": block_excluded, "seeds": block_seeds, "ensembles": block_ensembles, "cold-start": block_cold_start,
    "speed": block_speed, "scale": block_scale, "semantic-ids": block_semantic_ids, "commands": block_commands,
    "research": block_research, "load-checks": block_load_checks, "data-layer": block_data_layer,
    "scale-million": block_scale_million, "scale-million-steps": block_scale_million_steps,
    "research-summary": block_research_summary, "research-fusion": block_research_fusion,
    "complementarity": block_complementarity, "rank-fusion-probe": block_rank_fusion_probe,
    "learned-fusion": block_learned_fusion, "role-pairs": block_role_pairs,
    "whole-catalog-probes": block_whole_catalog_probes, "popularity-buckets": block_popularity_buckets,
    "cascade-decomposition": block_cascade_decomposition, "ids-only-seeds": block_ids_only_seeds,
    "sharing-cells": block_sharing_cells, "train-logs": block_train_logs, "two-phase-trunk": block_two_phase_trunk,
    "decoding-speed": block_decoding_speed, "decoding-temperature": block_decoding_temperature,
    "option-cost": block_option_cost, "final-read": block_final_read, "goals": block_goals,
}


def render_text(text: str, renderer: Renderer) -> str:
    """`text` with every marked block re-rendered."""

    def replace(match: re.Match) -> str:
        name, arg = match.group("name"), match.group("arg")
        if name not in BLOCKS:
            raise KeyError(f"unknown results block {name!r}; known: {', '.join(sorted(BLOCKS))}")
        renderer.read = []
        body = BLOCKS[name](renderer, arg) if arg else BLOCKS[name](renderer)
        opening = f"<!-- results:{name}{' ' + arg if arg else ''} -->"
        return f"{opening}\n{body.rstrip()}\n<!-- /results:{name} -->"

    return BLOCK.sub(replace, text)


def render_all(root: Path = ROOT, results: Path = RESULTS) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """{doc: (current text, rendered text)} and the set of files read under benchmarks/results."""
    renderer = Renderer(results)
    out = {}
    for doc in DOCS:
        path = root / doc
        current = path.read_text(encoding="utf-8")
        out[doc] = (current, render_text(current, renderer))
    return out, renderer.all_read
