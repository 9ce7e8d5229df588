"""The research tables on the dense/sparse cascade (issue 21), validation only, picked up as files appear:

- "complementarity": benchmarks/complementarity.py (research/complementarity/*.json with `either_dense_or_sparse`):
  per user, whether the dense-only and the sparse-only top K hold the target; "either" is an oracle union, not a method.
- "rank-fusion-probe": benchmarks/rank_fusion_probe.py (research/complementarity/rank_probe_*.json, told apart by
  their `grid` of `rrf` rows): offline reciprocal-rank fusions of the two lists over a grid of w and c, not a
  generate() mode.
- "learned-fusion": benchmarks/learned_fusion_probe.py: a linear listwise fusion of the two lists, cross-fitted.
- "whole-catalog-probes": benchmarks/prefix_prior_probe.py (`first_code_top10`) and benchmarks/mixture_probe.py
  (`dense_only` + a grid of tau/psi/psi_h): ID-path signals added to the dense half over every catalog item.
- "cascade-decomposition": benchmarks/cascade_decomposition_probe.py (`"probe": "cascade-decomposition"`): which cell,
  then which item inside it, each factor by the ID path and by the ID-free v_0.
- "role-pairs": benchmarks/pair_probe.py (`vectors` + `ids` + `final`): a CobraEnsemble whose beams come from one
  checkpoint and whose vectors from another, decoded by generate() itself (or, with roles "both", a plain ensemble
  of the two: the pair's equal-cost baseline).
- "popularity-buckets": benchmarks/popularity_probe.py (`"probe": "popularity"`): each mode's recall by how often the
  target item occurs in training.

Files of other probes in that folder are left to their own blocks.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .core import Renderer, f4, mean_sd, mean_sd_percent, num, table
from .runs import member_name


def _kind(path: Path) -> str | None:
    """Which script wrote a file of research/complementarity/, told by its content (other probes share the folder)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return None
    if data.get("probe") == "popularity":
        return "popularity"
    if "vectors" in data and "ids" in data and "final" in data:
        return "role-pairs"
    if data.get("probe") == "cascade-decomposition":
        return "cascade-decomposition"
    if "either_dense_or_sparse" in data:
        return "complementarity"
    if "learned" in data and "weights_per_fold" in data:
        return "learned-fusion"
    if "first_code_top10" in data:
        return "prefix-prior"
    if "dense_only" in data and "num_beams" in data:
        return "mixture"
    if any(isinstance(row, dict) and row.get("fusion") == "rrf" for row in data.get("grid") or []):
        return "rank-fusion-probe"
    return None


def _files(r: Renderer, kind: str) -> list[str]:
    """The files of one kind under research/complementarity/, sorted by name (read here, cited once loaded)."""
    paths = sorted(r.results.glob("research/complementarity/*.json"))
    return [p.relative_to(r.results).as_posix() for p in paths if _kind(p) == kind]


def _models(dense: str | None, sparse: str | None) -> str:
    """'`run`' when one model gave both lists, else 'dense `a`, sparse `b`'."""
    dense_name, sparse_name = member_name(dense or "?"), member_name(sparse or dense or "?")
    return f"`{dense_name}`" if dense_name == sparse_name else f"dense `{dense_name}`, sparse `{sparse_name}`"


def _share(value: dict | None) -> str:
    """A share of users, 'rate ± se' (one standard error), '-' when the file lacks it."""
    if not value:
        return "-"
    return f4(value["rate"]) + (f" ± {float(value['se']):.4f}" if value.get("se") is not None else "")


def block_complementarity(r: Renderer, arg=None) -> str:
    """One row per complementarity file: the share of validation users whose target the dense-only and the
    sparse-only top K hold, either (the oracle union), both, only one of them, the lists' mean overlap, and, where
    the file has them, COBRA mode's Recall and its hits outside / lost from the dense list."""
    files = _files(r, "complementarity")
    if not files:
        return "No complementarity files yet."
    rows, ks, beams = [], set(), set()
    for rel in files:
        d = r.load(rel)
        ks.add(d.get("k"))
        beams.add(d.get("num_beams"))
        recall = d.get("recall", {})
        overlap = d.get("list_overlap_mean")
        cobra = "-" if "cobra" not in recall else (
            f"{_share(recall['cobra'])}; {_share(d.get('cobra_hits_outside_dense'))} / "
            f"{_share(d.get('dense_hits_lost_by_cobra'))}")
        rows.append([_models(d.get("dense_model"), d.get("sparse_model")), str(d.get("users", "n/a")),
                     _share(recall.get("dense")), _share(recall.get("sparse")), _share(d.get("either_dense_or_sparse")),
                     _share(d.get("both")), _share(d.get("sparse_only_hits")), _share(d.get("dense_only_hits")),
                     "-" if overlap is None else f"{overlap:.4f}", cobra])
    k = f"@{num(next(iter(ks)))}" if len(ks) == 1 and None not in ks else "@K"
    text = table(["model(s)", "users", f"dense R{k}", f"sparse R{k}", "either (oracle union)", "both",
                  "sparse-only hits", "dense-only hits", "list overlap",
                  f"COBRA mode R{k}; its hits outside the dense list / dense hits it loses"], rows)
    return (text + f"\n\nValidation split, a seeded sample of users; top {_values(ks)}, "
            f"sparse lists from M = {_values(beams)} beams. Every cell is a share of the users "
            "(± one standard error); list overlap is the mean share of the dense top K that is also in the sparse "
            "top K. " + r.sources())


def _values(values: set) -> str:
    """The distinct settings the files recorded, '1, 2'; '?' when none did."""
    return ", ".join(num(v) for v in sorted(v for v in values if v is not None)) or "?"


def _pair(row: dict | None) -> str:
    return "-" if not row else f"{f4(row['recall@10'])} / {f4(row['ndcg@10'])}"


def _best_rrf(grid: list[dict]) -> dict | None:
    """The RRF row with the highest validation Recall@10 (ties: the higher NDCG@10, then the first)."""
    rows = [row for row in grid if row.get("fusion") == "rrf"]
    return max(rows, key=lambda row: (row["recall@10"], row["ndcg@10"])) if rows else None


def block_rank_fusion_probe(r: Renderer, arg=None) -> str:
    """One row per rank-fusion probe file: each half alone and the RRF setting of its grid with the best validation
    Recall@10, with its gain over the dense half."""
    files = _files(r, "rank-fusion-probe")
    if not files:
        return "No rank-fusion probes yet."
    rows, sizes, lengths = [], set(), set()
    for rel in files:
        d = r.load(rel)
        grid = d.get("grid", [])
        half = {row["fusion"]: row for row in grid if row.get("fusion") in ("dense", "sparse")}
        dense, sparse, best = half.get("dense"), half.get("sparse"), _best_rrf(grid)
        sizes.add(sum(row.get("fusion") == "rrf" for row in grid))
        lengths.add(d.get("length"))
        gain = "-" if not (best and dense and dense["recall@10"]) else \
            f"{(best['recall@10'] / dense['recall@10'] - 1) * 100:+.1f}%"
        rows.append([_models(d.get("model"), d.get("sparse_model")), str(d.get("users", "n/a")), _pair(dense),
                     _pair(sparse), "-" if not best else num(best["w"]), "-" if not best else num(best["c"]),
                     _pair(best), gain])
    text = table(["model(s)", "users", "dense R@10 / N@10", "sparse R@10 / N@10", "best RRF: w", "c",
                  "R@10 / N@10", "R@10 vs dense"], rows)
    first = r.load(files[0])
    dense_first = next((row for row in first.get("grid", []) if row.get("fusion") == "dense"), None)
    se = "" if not dense_first or not first.get("users") else (
        f" One standard error of a Recall@10 near the dense half's at {first['users']:,} users is "
        f"{math.sqrt(dense_first['recall@10'] * (1 - dense_first['recall@10']) / first['users']):.4f}.")
    return (text + f"\n\nValidation split, a seeded sample of users; lists of length {_values(lengths)} fused. "
            f"The best of {' or '.join(str(n) for n in sorted(sizes))} RRF settings is picked and scored on the same users, so "
            f"its gain is an optimistic estimate.{se} " + r.sources())


def _settings(row: dict, names: tuple[str, ...]) -> str:
    return ", ".join(f"{name} {num(row[name])}" for name in names if name in row)


def block_whole_catalog_probes(r: Renderer, arg=None) -> str:
    """One row per prefix-prior or mixture probe file: the dense-only point of its grid (tau = 0, or psi = 0), the
    grid's best point by validation Recall@10 and its gain over dense only."""
    files = [(kind, rel) for kind in ("prefix-prior", "mixture") for rel in _files(r, kind)]
    if not files:
        return "No whole-catalog probes yet."
    rows = []
    for kind, rel in files:
        d = r.load(rel)
        grid = d.get("grid", [])
        if kind == "prefix-prior":
            dense = next((row for row in grid if row.get("tau") == 0), None)
            names, what = ("tau",), f"psi_h {num(d.get('psi_h'))} cos(v0, a) + tau log P(c1(a))"
        else:
            dense = d.get("dense_only")
            names, what = ("tau", "psi", "psi_h"), (f"logsumexp over {d.get('num_beams')} beams of tau phi_k + psi "
                                                    "cos(v_k, a), + psi_h cos(v0, a)")
        others = [row for row in grid if row is not dense and row != dense]
        best = max(others, key=lambda row: (row["recall@10"], row["ndcg@10"])) if others else None
        gain = "-" if not (best and dense and dense["recall@10"]) else \
            f"{(best['recall@10'] / dense['recall@10'] - 1) * 100:+.1f}%"
        rows.append([f"`{member_name(d.get('model') or '?')}`", what, str(d.get("users", "n/a")), _pair(dense),
                     "-" if not best else _settings(best, names), _pair(best), gain, str(len(grid))])
    text = table(["model", "score of item a", "users", "dense only R@10 / N@10", "best other point",
                  "R@10 / N@10", "R@10 vs dense", "grid points"], rows)
    return (text + "\n\nValidation split, a seeded sample of users; every catalog item is scored (no beam prunes the "
            "candidates). The best point is picked and scored on the same users, an optimistic estimate. "
            + r.sources())


def block_learned_fusion(r: Renderer, arg=None) -> str:
    """One row per learned-fusion file: each half alone, the union's recall (an oracle ceiling) and the cross-fitted
    linear fusion's out-of-sample Recall/NDCG@10 with its gain over the dense half."""
    files = _files(r, "learned-fusion")
    if not files:
        return "No learned-fusion probes yet."
    rows = []
    for rel in files:
        d = r.load(rel)
        dense, learned = d.get("dense"), d.get("learned")
        gain = "-" if not (dense and learned and dense["recall@10"]) else \
            f"{(learned['recall@10'] / dense['recall@10'] - 1) * 100:+.1f}%"
        rows.append([_models(d.get("model"), d.get("sparse_model")), str(d.get("users", "n/a")), _pair(dense),
                     _pair(d.get("sparse")), f4(d.get("union_recall")), _pair(learned), gain])
    text = table(["model(s)", "users", "dense R@10 / N@10", "sparse R@10 / N@10", "union of the two top-L lists holds "
                  "the target", "learned fusion R@10 / N@10", "R@10 vs dense"], rows)
    return (text + "\n\nValidation split, a seeded sample of users split in two halves; the weights learned on one "
            "half rank the other (two-fold cross-fitting), so the fusion's numbers are out of sample. " + r.sources())


def block_popularity_buckets(r: Renderer, arg=None) -> str:
    """One table per popularity probe file: per bucket of the target's training occurrences, the users in it and the
    Recall@K of the dense, sparse and cobra lists (and of a second model's sparse list), with the sparse-only hits."""
    files = _files(r, "popularity")
    if not files:
        return "No popularity probes yet."
    parts = []
    for rel in files:
        d = r.load(rel)
        second = d.get("sparse_model")
        head = ["target's training occurrences", "users (share)", "dense", "sparse", "cobra", "cobra - dense",
                "sparse-only hits"]
        if second:
            head[5:5] = [f"sparse of `{member_name(second)}`"]
            head.append(f"`{member_name(second)}` sparse-only hits")
        rows = []
        for name, row in [*d["buckets"].items(), ("all", None)]:
            if row is None:
                recall = d["recall"]
                cells = [name, f"{d['users']} (1.0)", *(_share(recall.get(m)) for m in ("dense", "sparse", "cobra"))]
                cells += [_share(recall.get("second_sparse"))] if second else []
                cells += [f"{recall['cobra']['rate'] - recall['dense']['rate']:+.4f}", "", *([""] if second else [])]
            else:
                cells = [name, f"{row['users']} ({row['user_share']:.2f})",
                         *(_share(row.get(f"recall_{m}")) for m in ("dense", "sparse", "cobra"))]
                cells += [_share(row.get("recall_second_sparse"))] if second else []
                cells += [f"{row['cobra_minus_dense']:+.4f}", _share(row.get("sparse_only_hits"))]
                cells += [_share(row.get("second_sparse_only_hits"))] if second else []
            rows.append(cells)
        parts.append(f"Model `{member_name(d.get('model') or '?')}`, {d['users']:,} validation users, Recall@"
                     f"{num(d.get('k'))}, M = {num(d.get('num_beams'))} beams:\n\n" + table(head, rows))
    return ("\n\n".join(parts) + "\n\nValidation split, a seeded sample of users, bucketed by the "
            + (r.load(files[0]).get("bucket_by") or "target's training occurrences")
            + "; each cell ± one standard error. " + r.sources())


def block_cascade_decomposition(r: Renderer, arg=None) -> str:
    """One row per decomposition file: the target cell among the ID path's best beams vs among v_0's first cells, and
    the target's within-cell top-1 by v_k of its true ID vs by v_0."""
    files = _files(r, "cascade-decomposition")
    if not files:
        return "No decomposition probes yet."
    rows, users = [], set()
    for rel in files:
        d = r.load(rel)
        users.add(d["users"])
        hit, within = d["cell_hit"], d["within_cell_when_shared"]
        rows.append([f"`{member_name(d.get('model') or '?')}`", f"{d['cells']:,}",
                     f"{d['target_cell_size']['mean']:.1f}",
                     *(f"{_share(hit['id_path_beams'][k])} / {_share(hit['dense_v0_cells'][k])}" for k in ("1", "20")),
                     f"{within['users']:,}", _share(within["top1_vk_true_id"]), _share(within["top1_v0"]),
                     "-" if within.get("random_top1") is None else f4(within["random_top1"])])
    text = table(["model", "cells (IDs)", "target's cell: items", "target cell first: ID path / v_0",
                  "among 20: ID path / v_0", "users whose cell is shared", "within-cell top-1: v_k of the true ID",
                  "v_0", "random"], rows)
    return (text + f"\n\nValidation split, a seeded sample of {_values(users)} users; ± one standard error. v_0's cells are "
            "ranked by their best item's cosine with v_0; v_k is decoded for the target's own ID (a forced row), so it "
            "exists even where the beams miss the cell. " + r.sources())


# a seed suffix: "_s1", or "_s0_rerun" for a seed retrained under a new name (a new draw: session 32's reruns
# did not repeat runs of an older code version)
_SEED = re.compile(r"_s\d+(_rerun)?$")


def _seed_stem(name: str) -> str:
    """A run's name without its seed, as a table cell: `stem`, or `stem` (retrained) for "_sN_rerun" seeds."""
    match = _SEED.search(name)
    stem = f"`{_SEED.sub('', name)}`"
    return stem + " (retrained)" if match and match.group(1) else stem


def _roles(d: dict) -> list[str]:
    return d.get("roles") or ["vectors", "ids"]  # files written before --roles were all pairs


def _gain(d: dict, metric: str) -> float:
    """The cobra mode's relative gain over the dense mode, in percent."""
    final = d["final"]
    return (final["cobra"][metric] / final["dense"][metric] - 1) * 100


def block_role_pairs(r: Renderer, arg=None) -> str:
    """One row per pair_probe file: the vectors model alone (dense mode), the ids model alone (sparse mode), the
    pair's cobra mode at its fusion setting and with the paper's BeamFusion, and the cobra gain over dense. A file of
    two checkpoints in roles "both" is a plain ensemble (the pair's equal-cost baseline): its columns are the
    ensemble's modes. Then, per pair of runs trained with several seeds, the mean and spread over seeds."""
    files = _files(r, "role-pairs")
    if not files:
        return "No role-pair probes yet."
    rows, grids, groups = [], set(), {}
    for rel in files:
        d = r.load(rel)
        final = d["final"]
        ensemble = set(_roles(d)) == {"both"}  # two or more checkpoints, each in both roles
        gains = " / ".join(f"{_gain(d, m):+.1f}%" for m in ("recall@10", "ndcg@10"))
        chosen = ", ".join(f"{k.replace('beam_fusion_', '')} {num(v)}" for k, v in d["chosen"].items())
        if d.get("chosen_by") == "--settings":
            chosen += " (fixed beforehand)"
        else:
            grids.add((d["grid_users"], len(d["grid"])))
        vectors = [d["vectors"]] if isinstance(d["vectors"], str) else d["vectors"]
        names = [" + ".join(f"`{member_name(path)}`" for path in vectors), f"`{member_name(d['ids'])}`"]
        first, second = (f"ensemble {names[0]} + {names[1]}", "(both)") if ensemble else (names[0], names[1])
        rows.append([first, second, f"{d['final_users']:,}", _pair(final["dense"]), _pair(final["sparse"]),
                     _pair(final["cobra"]), chosen, gains, _pair(final.get("cobra_paper_fusion"))])
        if not ensemble and len(vectors) == 1:
            # seeds pool only at one fusion setting (a pair scored at two is two rows of the seeds' table)
            setting = ", ".join(f"{k.replace('beam_fusion_', '')} {num(v)}" for k, v in sorted(d["chosen"].items()))
            key = (*(_seed_stem(member_name(path)) for path in (vectors[0], d["ids"])), setting)
            groups.setdefault(key, []).append(d)
    text = table(["vectors from", "beams from", "users", "dense (vectors model) R@10 / N@10",
                  "sparse (ids model) R@10 / N@10", "cobra R@10 / N@10", "fusion", "cobra vs dense R@10 / N@10",
                  "paper's BeamFusion R@10 / N@10"], rows)
    seeded = [[f"{vectors} + {ids}", setting, str(len(runs)),
               " / ".join(mean_sd([d["final"]["dense"][m] for d in runs]) for m in ("recall@10", "ndcg@10")),
               " / ".join(mean_sd([d["final"]["cobra"][m] for d in runs]) for m in ("recall@10", "ndcg@10")),
               " / ".join(mean_sd_percent([_gain(d, m) for d in runs]) for m in ("recall@10", "ndcg@10"))]
              for (vectors, ids, setting), runs in groups.items() if len(runs) > 1]
    if seeded:
        text += "\n\nOver seeds (seed N of each run with seed N of the other; ± the standard deviation over seeds):\n\n"
        text += table(["pair", "fusion", "seeds", "dense R@10 / N@10", "pair cobra R@10 / N@10",
                       "cobra vs dense R@10 / N@10"], seeded)
    grid_text = "; ".join(f"{cells} joint-fusion settings scored on a seeded {users:,} users" for users, cells in
                          sorted(grids))
    return (text + f"\n\nValidation split. A fusion setting is either chosen on a sample ({grid_text}; then every "
            "column is scored on all the users shown, so the chosen setting has seen part of them) or fixed "
            "beforehand (an earlier seed's choice, or the joint recipe's own for an ensemble). " + r.sources())
