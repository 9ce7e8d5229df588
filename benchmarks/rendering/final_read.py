"""The final recipe's read (issue 21, goal 4): `cobra-hf train --recipe trunk` trained again per seed by
`benchmarks/research_run.py --train-args '--recipe trunk ...' --test`, so that each seed's validation and test
splits are scored once in every mode, beside the paper's configuration read once on the same test split.

Block "final-read": argument `beauty` or `sci`; the seeds are picked up as their files appear.
"""

from __future__ import annotations

import json

from .core import HEADER, METRICS, Renderer, f4, fusion, mean_sd, mean_sd_percent, minutes, table

# dataset -> (the seeds' files, the paper configuration's test read)
FINAL_READS = {
    "beauty": ("research/recipe_trunk*.json", "research/test/paper_recipe_3x32.json"),
    "sci": ("research/sci_recipe_trunk_read*.json", "research/test/sci_paper_recipe_3x32.json"),
}
ROWS = (
    ("cobra", "**COBRA mode** (the decoding picked on validation)"),
    ("cobra_paper_fusion", "COBRA mode, the paper's BeamFusion (tau 0.9, psi 16)"),
    ("dense", "dense only (no ID)"),
    ("sparse", "sparse only (ID only)"),
    ("no_fusion", "no BeamFusion (top-1 ID + ANN)"),
)
VALIDATION = ("recall@10", "ndcg@10")


def _seed(run: dict) -> str:
    words = str(run.get("train_args", "")).split()
    return words[words.index("--seed") + 1] if "--seed" in words else "?"


def gains(runs: list[dict], split: str, metric: str) -> list[float]:
    """COBRA mode over the same model's dense mode on `split`, in percent, one value per seed."""
    return [100 * (run[split]["cobra"][metric] / run[split]["dense"][metric] - 1) for run in runs]


def _gains(runs: list[dict], split: str, metric: str) -> str:
    return mean_sd_percent(gains(runs, split, metric))


def _picked(run: dict) -> str:
    """The decoding the recipe's grid picked at the end of training, in words ('not recorded' for older files)."""
    selection = run.get("decoding_selection") or {}
    if "chosen_settings" not in selection:
        return "not recorded"
    return f"{selection['chosen']} ({fusion(selection['chosen_settings'])}; {selection['users']:,} users)"


def read_runs(r: Renderer, dataset: str) -> list[dict]:
    """The final read's seeds of `dataset` (a key of FINAL_READS) whose test split is scored, each file cited; a seed
    still being scored (research_run writes its file twice, test last) is neither returned nor cited."""
    paths = [path for path in sorted(r.results.glob(FINAL_READS[dataset][0]))
             if "test" in json.loads(path.read_text(encoding="utf-8"))]
    return [r.load(path.relative_to(r.results).as_posix()) for path in paths]


def block_final_read(r: Renderer, arg=None) -> str:
    """Per mode: validation R@10 / N@10 and the four test metrics, mean ± sd over the seeds read so far; COBRA over
    its own dense on both splits; the paper's configuration's test rows; each seed's picked decoding and minutes."""
    if arg not in FINAL_READS:
        raise ValueError(f"final-read: unknown dataset {arg!r} (one of {', '.join(FINAL_READS)})")
    runs, paper = read_runs(r, arg), FINAL_READS[arg][1]
    if not runs:
        return "No seed read yet."
    n = len(runs)
    rows = []
    for mode, label in ROWS:
        if not all(mode in run["test"] and mode in run["validation"] for run in runs):
            continue
        rows.append([label, " / ".join(mean_sd([run["validation"][mode][m] for run in runs]) for m in VALIDATION),
                     *[mean_sd([run["test"][mode][m] for run in runs]) for m in METRICS]])
    rows.append(["COBRA mode over its own dense mode", " / ".join(_gains(runs, "validation", m) for m in VALIDATION),
                 *[_gains(runs, "test", m) for m in METRICS]])
    if r.exists(paper):
        by_mode = {entry["mode"]: entry for entry in r.load(paper)}
        rows += [[f"`--recipe paper` (the paper's configuration and decoding), {name}", "-",
                  *[f4(by_mode[mode][m]) for m in METRICS]]
                 for mode, name in (("cobra", "COBRA mode"), ("sparse", "sparse only")) if mode in by_mode]
    seeds = "; ".join(f"seed {_seed(run)} (`{run['name']}`): {minutes(run['train_seconds'])} min of training, "
                      f"decoding {_picked(run)}" for run in runs)
    users = {split: runs[0][split]["cobra"]["users"] for split in ("validation", "test")}
    return (table(["`--recipe trunk`", "validation R@10 / N@10", *[f"test {h}" for h in HEADER]], rows)
            + f"\n\n{n} seed{'s' * (n > 1)} read so far (± the sd over seeds); all {users['validation']:,} validation "
            f"and {users['test']:,} test users, M = 20 beams. {seeds}. The paper's configuration: one seed, test read "
            "once (its own run). " + r.sources())
