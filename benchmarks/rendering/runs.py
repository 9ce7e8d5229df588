"""The runs the docs cite and what each trained with: the Beauty run log, the recipe and its seeds, the ensembles,
the GPU sweep, and the helpers that read a run's flags, its validation curve and the paper's rows.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .core import Renderer, cells, same_setting

# The recommended recipe (single model, three seeds) and the runs the README cites.
RECIPE = "beauty_cpu_logq_del02_hd2"
RECIPE_SEEDS = (RECIPE, f"{RECIPE}_seed1", f"{RECIPE}_seed2")
RECIPE_SEED0_FUSION = f"{RECIPE}/tune_fusion_ndcg5.json"  # seed 0 was tested at psi_h 16 by the fusion grid
ENSEMBLE = "beauty_cpu_ensemble_hd2_s01"
SCIENTIFIC = "scientific_cpu"

# Every Beauty benchmark run, in the order it was made, with the run it changed one thing against.
RUNS = [
    ("beauty_cpu", None),
    ("beauty_cpu_negatives", "beauty_cpu"),
    ("beauty_cpu_fast", "beauty_cpu"),
    ("beauty_cpu_grouped20", "beauty_cpu_fast"),
    ("beauty_cpu_grouped30", "beauty_cpu_grouped20"),
    ("beauty_cpu_grouped20_negatives", "beauty_cpu_grouped20"),
    ("beauty_cpu_logq", "beauty_cpu_fast"),
    ("beauty_cpu_logq_lr3e3", "beauty_cpu_logq"),
    ("beauty_cpu_catalog", "beauty_cpu_logq"),
    ("beauty_cpu_logq_b128", "beauty_cpu_logq"),
    ("beauty_cpu_logq_e40", "beauty_cpu_logq"),
    ("beauty_cpu_logq_e30_wd", "beauty_cpu_logq"),
    ("beauty_cpu_logq_t005", "beauty_cpu_logq"),
    ("beauty_cpu_logq_del02", "beauty_cpu_logq"),
    ("beauty_cpu_logq_del03_e20", "beauty_cpu_logq"),
    ("beauty_cpu_logq_del02_d256", "beauty_cpu_logq_del02"),
    ("beauty_cpu_logq_del02_hd1", "beauty_cpu_logq_del02"),
    ("beauty_cpu_logq_del02_hd2", "beauty_cpu_logq_del02"),
    ("beauty_cpu_logq_del02_hd4", "beauty_cpu_logq_del02"),
    ("beauty_cpu_logq_del03_hd2_e48", "beauty_cpu_logq_del02_hd2"),
    ("beauty_cpu_logq_del02_hd2_seed1", "beauty_cpu_logq_del02_hd2"),
    ("beauty_cpu_logq_del02_hd2_dec3", "beauty_cpu_logq_del02_hd2"),
    ("beauty_cpu_logq_del02_hd2_seed2", "beauty_cpu_logq_del02_hd2"),
    ("beauty_cpu_logq_del02_hd2_ema998", "beauty_cpu_logq_del02_hd2"),
]
ENSEMBLES = ["beauty_cpu_ensemble_hd2_s01", "beauty_cpu_ensemble_hd2_s02", "beauty_cpu_ensemble_hd2_s12",
             "beauty_cpu_ensemble_hd2_s012", "beauty_cpu_ensemble_hd2_e21_s345",
             "beauty_cpu_ensemble_hd2_e21_s345/seed3_alone"]
GPU_SWEEP = ["paper", "paper_h256", "item_emb", "item_text_emb", "item_text_emb_t007", "item_text_emb_lr2e3",
             "item_text_emb_drop02", "text_emb_hd"]
# train_args flags that do not change the model (left out of "what changed"), and flags given at their default
QUIET_FLAGS = {"eval_users", "logging_steps", "disable_tqdm"}
DEFAULT_FLAGS = {"attention_dropout": "0.0"}


def parse_flags(text: str | None) -> dict:
    """'--num_train_epochs 32 --seed 1' -> {'num_train_epochs': '32', 'seed': '1'}."""
    tokens, out = shlex.split(text or ""), {}
    for i, token in enumerate(tokens):
        if token.startswith("--"):
            value = tokens[i + 1] if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") else "True"
            out[token[2:]] = value
    return out


def settings(run: dict) -> dict:
    """What a benchmark run trained with: its model flags and its training flags (as strings)."""
    out = {k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in (run.get("model_args") or {}).items()}
    out.update({k: v for k, v in parse_flags(run.get("train_args")).items() if k not in QUIET_FLAGS})
    return {k: v for k, v in out.items() if DEFAULT_FLAGS.get(k) != v}


def changed(run: dict, reference: dict | None) -> str:
    """The flags in which a run differs from the run it follows (all its flags for the first run)."""
    mine = settings(run)
    if reference is None:
        return ", ".join(f"`{k}={v}`" for k, v in mine.items())
    theirs = settings(reference)
    diff = [f"`{k}={mine.get(k, 'default')}`" for k in list(mine) + [k for k in theirs if k not in mine]
            if mine.get(k) != theirs.get(k)]
    return ", ".join(diff) or "same settings"


def epochs(run: dict) -> str:
    """The run's --num_train_epochs."""
    return parse_flags(run.get("train_args")).get("num_train_epochs", "?")


def curve_peak(run: dict, key: str = "eval_recall@10") -> str:
    """Peak of the per-epoch validation curve, 'value (epoch e of n)'."""
    points = [p for p in run.get("curve") or [] if key in p]
    if not points:
        return "n/a"
    best = max(range(len(points)), key=lambda i: points[i][key])
    return f"{points[best][key]:.4f} (epoch {best + 1} of {len(points)})"


def member_name(path: str) -> str:
    """'runs/bench/beauty_del02_hd2/model' -> 'beauty_del02_hd2'."""
    p = Path(path)
    return p.parent.name if p.name == "model" else p.name


# ------------------------------------------------------------------------------------------------- data views
def recipe_seeds(r: Renderer) -> list[dict]:
    """The recommended recipe's three seeds: per seed its test metrics per mode at the recipe's fusion (psi_h 16),
    the paper's BeamFusion where measured, and training seconds. Seed 0's COBRA mode comes from its fusion grid,
    which tested the selected setting; the other modes do not depend on the fusion."""
    seeds = []
    tune = r.load(RECIPE_SEED0_FUSION)
    for i, name in enumerate(RECIPE_SEEDS):
        run = r.load(f"{name}/results.json")
        test = dict(run["test"])
        paper = None
        if i == 0:
            test["cobra"] = tune["test"]["best"]
            paper = tune["test"]["paper"]
            setting = tune["best"]["setting"]
        else:
            setting = run["generation"]
        seeds.append({"name": name, "test": test, "paper_fusion": paper, "setting": setting,
                      "train_seconds": run["timings"]["train_seconds"]})
    first = seeds[0]["setting"]
    for seed in seeds[1:]:
        if not same_setting(first, seed["setting"]):
            raise ValueError(f"{seed['name']} was tested with another fusion setting than seed 0: "
                             f"{seed['setting']} vs {first}")
    return seeds


def paper_rows(r: Renderer, dataset: str, models=("SASRec", "S3-Rec", "TIGER", "COBRA")) -> list[list[str]]:
    """The paper's published rows for a dataset (paper.json)."""
    paper = r.load("paper.json")["datasets"][dataset]
    return [[f"{m} (paper)", *cells(paper[m])] for m in models]
