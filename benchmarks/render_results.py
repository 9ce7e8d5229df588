"""Renders every results table of README.md and docs/EXPERIMENTS.md from the JSON files in benchmarks/results.

A table lives between two marker comments; everything between them is replaced by what the block of that name
renders, so no number in those tables is typed by hand:

    <!-- results:beauty -->                      (a block without an argument)
    <!-- /results:beauty -->
    <!-- results:tune beauty_cpu_fast/tune_fusion.json -->     (a block with one argument)
    <!-- /results:tune -->

Every block names the JSON files it read (paths under benchmarks/results/). The research runs of
benchmarks/research_run.py (benchmarks/results/research/*.json) are picked up as they appear.

usage:
  python benchmarks/render_results.py            # rewrite the tables of README.md and docs/EXPERIMENTS.md in place
  python benchmarks/render_results.py --check    # exit 1 and name the files whose tables are stale (tests/test_docs.py)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ("README.md", "docs/EXPERIMENTS.md", "docs/ROBUSTNESS.md")
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
HEADER = ["Recall@5", "NDCG@5", "Recall@10", "NDCG@10"]
MODES = ("cobra", "dense", "sparse", "no_fusion")
MODE_NAMES = {"cobra": "COBRA mode", "dense": "dense only (no ID)", "sparse": "sparse only (ID only)",
              "no_fusion": "no BeamFusion (top-1 ID + ANN)"}
BLOCK = re.compile(r"<!-- results:(?P<name>[\w-]+)(?: (?P<arg>[^\s>]+))? -->\n.*?<!-- /results:(?P=name) -->", re.S)

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
        return "Source: " + ", ".join(f"`benchmarks/results/{rel}`" for rel in self.read) + "."


# ----------------------------------------------------------------------------------------------- formatting
def f4(value) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def cells(result: dict | None, metrics=METRICS) -> list[str]:
    return [f4((result or {}).get(m)) for m in metrics]


def mean_sd(values: list[float]) -> str:
    """'mean ± sd' (sample standard deviation) over seeds."""
    if len(values) == 1:
        return f4(values[0])
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def minutes(seconds) -> str:
    return "n/a" if seconds is None else f"{float(seconds) / 60:.1f}"


def arrow(a, b, digits: int = 4) -> str:
    return f"{float(a):.{digits}f} → {float(b):.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fusion(generation: dict | None) -> str:
    """The decoding setting in words: 'paper' or 'joint tau 0.1, psi 2, psi_h 16, G 50'."""
    g = generation or {}
    if g.get("beam_fusion", "paper") == "paper":
        extra = f", G {g['dense_guided_ids']}" if g.get("dense_guided_ids") else ""
        return f"paper BeamFusion, tau {_num(g.get('beam_fusion_tau', 0.9))}, psi {_num(g.get('beam_fusion_psi', 16))}{extra}"
    return (f"joint BeamFusion, tau {_num(g.get('beam_fusion_tau'))}, psi {_num(g.get('beam_fusion_psi'))}, "
            f"psi_h {_num(g.get('beam_fusion_dense_psi', 0))}, G {g.get('dense_guided_ids', 0)}")


def _num(value) -> str:
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
    mine = settings(run)
    if reference is None:
        return ", ".join(f"`{k}={v}`" for k, v in mine.items())
    theirs = settings(reference)
    diff = [f"`{k}={mine.get(k, 'default')}`" for k in list(mine) + [k for k in theirs if k not in mine]
            if mine.get(k) != theirs.get(k)]
    return ", ".join(diff) or "same settings"


def epochs(run: dict) -> str:
    return parse_flags(run.get("train_args")).get("num_train_epochs", "?")


def curve_peak(run: dict, key: str = "eval_recall@10") -> str:
    """Peak of the per-epoch validation curve, 'value (epoch e of n)'."""
    points = [p for p in run.get("curve") or [] if key in p]
    if not points:
        return "n/a"
    best = max(range(len(points)), key=lambda i: points[i][key])
    return f"{points[best][key]:.4f} (epoch {best + 1} of {len(points)})"


def benchmark_command(run: dict) -> str:
    generation = {k: v for k, v in (run.get("generation") or {}).items() if k != "num_beams"}
    output = str(Path((run.get("config") or {}).get("_name_or_path", "runs/bench/RUN/model")).parent)
    first = f"python benchmarks/run_benchmark.py --data {run['data']} --output {output}"
    if run.get("timings", {}).get("prepare_seconds", 1) == 0.0 and run.get("catalog"):
        first += f" --catalog {run['catalog']}"
    parts = [first]
    parts.append(f"--model-args {shlex.quote(json.dumps(run.get('model_args') or {}))}")
    parts.append(f"--train-args {shlex.quote(run.get('train_args') or '')}")
    if generation:
        parts.append(f"--generate-args {shlex.quote(json.dumps(generation))}")
    return " \\\n  ".join(parts)


def tune_command(tune: dict, rel: str) -> str:
    grid = [point["setting"] for point in tune.get("grid", [])]
    models = " ".join(tune["model"] if isinstance(tune["model"], list) else [tune["model"]])
    parts = [f"python benchmarks/tune_fusion.py --model {models} --data {tune.get('data')} "
             f"--val-users {tune.get('validation_users')}"]
    if tune.get("selected_by") and tune["selected_by"] != "recall@10":
        parts.append(f"--select {tune['selected_by']}")
    if tune.get("test_capped"):
        parts.append(f"--test-users {tune.get('test_users')}")
    first_model = tune["model"][0] if isinstance(tune["model"], list) else tune["model"]
    parts += [f"--grid {shlex.quote(json.dumps(grid))}", f"--output {Path(first_model).parent / Path(rel).name}"]
    return " \\\n  ".join(parts)


def ensemble_command(ens: dict, rel: str) -> str:
    generation = {k: v for k, v in ens["generation"].items()
                  if k in ("beam_fusion", "dense_guided_ids", "beam_fusion_tau", "beam_fusion_psi",
                           "beam_fusion_dense_psi")}
    parts = [f"python benchmarks/evaluate_ensemble.py --data {ens['data']} --output runs/bench/{Path(rel).parent.name}",
             "--models " + " ".join(ens["members"]),
             f"--generate-args {shlex.quote(json.dumps(generation))}"]
    modes = [m for m in MODES if m in ens["test"]]
    if len(modes) < len(MODES):
        parts.append("--modes " + ",".join(modes))
    return " \\\n  ".join(parts)


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
    paper = r.load("paper.json")["datasets"][dataset]
    return [[f"{m} (paper)", *cells(paper[m])] for m in models]


# ------------------------------------------------------------------------------------------------ README blocks
def block_beauty(r: Renderer, arg=None) -> str:
    seeds = recipe_seeds(r)
    rows = paper_rows(r, "beauty")
    sweep = r.load("gpu_sweep/paper.json")
    rows.append(["cobra-hf, the paper's configuration and decoding on the current code", "not run yet", "-", "-", "-"])
    rows.append([f"cobra-hf, the paper's configuration on older code ({sweep['config']['epochs']} epochs, GPU; "
                 "COBRA mode, paper's BeamFusion)", *cells(sweep["test"]["cobra"])])
    n = len(seeds)
    for mode in MODES:
        values = [[s["test"][mode][m] for s in seeds] for m in METRICS]
        label = f"**cobra-hf recipe, one model, {MODE_NAMES[mode]}**" if mode == "cobra" else \
            f"cobra-hf recipe, one model, {MODE_NAMES[mode]}"
        if mode == "cobra":
            label += f" ({fusion(seeds[0]['setting'])})"
        rows.append([label + f", {n} seeds", *[mean_sd(v) for v in values]])
        if mode == "cobra":
            rows.append(["cobra-hf recipe, one model, COBRA mode with the paper's BeamFusion (seed 0 only)",
                         *cells(seeds[0]["paper_fusion"])])
    ens = r.load(f"{ENSEMBLE}/results.json")
    for mode in ("cobra", "dense"):
        rows.append([f"cobra-hf recipe, ensemble of seeds 0 + 1, {MODE_NAMES[mode]}", *cells(ens["test"][mode])])
    users = seeds[0]["test"]["cobra"]["users"]
    train = statistics.mean(s["train_seconds"] for s in seeds)
    text = table(["model", *HEADER], rows)
    text += (f"\n\nTest split, all {users:,} users, full ranking over every item, M = 20 beams, K = 10, history items "
             f"not excluded. Recipe: {minutes(train)} minutes of training per seed on a 2-core CPU; ± is the standard "
             f"deviation over seeds 0, 1, 2; the ensemble's members trained {minutes(ens['train_seconds_total'])} "
             "minutes in all.\n\n" + r.sources())
    return text


def block_scientific(r: Renderer, arg=None) -> str:
    run = r.load(f"{SCIENTIFIC}/results.json")
    tune = r.load(f"{SCIENTIFIC}/tune_fusion.json")
    rows = [[f"cobra-hf, COBRA mode ({fusion(tune['best']['setting'])}, Beauty's setting, not tuned here)",
             *cells(tune["test"]["best"])],
            [f"cobra-hf, COBRA mode ({fusion(run['generation'])})", *cells(run["test"]["cobra"])]]
    rows += [[f"cobra-hf, {MODE_NAMES[m]}", *cells(run["test"][m])] for m in MODES[1:] if m in run["test"]]
    text = table(["model (one seed)", *HEADER], rows)
    text += (f"\n\nTest split, {run['test']['cobra']['users']:,} users. An earlier configuration than Beauty's recipe "
             f"({changed(run, None)}; {minutes(run['timings']['train_seconds'])} minutes of training); the recipe has "
             "not been run on Scientific. The paper reports no Scientific numbers.\n\n" + r.sources())
    return text


QUICKSTART = "quickstart/test_metrics.json"


def block_quickstart(r: Renderer, arg=None) -> str:
    if not r.exists(QUICKSTART):
        return ("Not recorded for the current code yet. To record them: run `bash scripts/quickstart.sh`, copy "
                "`runs/quickstart/test_metrics.json` to `benchmarks/results/quickstart/test_metrics.json` and run "
                "`python benchmarks/render_results.py`.")
    results = r.load(QUICKSTART)
    results = results if isinstance(results, list) else [results]
    rows = [[MODE_NAMES.get(res.get("mode"), res.get("mode")), *cells(res)] for res in results]
    users = results[0].get("users")
    return (table(["mode", *HEADER], rows) +
            f"\n\nScientific, 2 epochs, a seeded random sample of {users:,} test users (`EVAL_USERS`); a run on another machine differs "
            "by a seed's noise.\n\n" + r.sources())


def block_deviations(r: Renderer, arg=None) -> str:
    rows = []
    seeds = recipe_seeds(r)
    ids = r.load("semantic_ids.json")["datasets"]["beauty"]
    s0 = seeds[0]
    rows.append(["`beam_fusion=\"joint\"`: one softmax over every beam's candidates of "
                 "tau·phi_k + psi·cos(v_k, a) + psi_h·cos(v_0, a)",
                 f"with {ids['items_per_id_mean']:.2f} items per ID (3 x 32 codes) the paper's per-beam softmax leaves "
                 "the beams' sparse order", "off (`\"paper\"`)",
                 f"recipe seed 0, test COBRA R@10 {arrow(s0['paper_fusion']['recall@10'], s0['test']['cobra']['recall@10'])}, "
                 f"N@5 {arrow(s0['paper_fusion']['ndcg@5'], s0['test']['cobra']['ndcg@5'])} (`{RECIPE_SEED0_FUSION}`)"])
    ablation = r.load("beauty_cpu_fast/fusion_ablation.json")
    best = ablation["best"]

    def point(**change):
        want = {**best["setting"], **change}
        return next(p["validation"] for p in ablation["grid"] if same_setting(p["setting"], want))

    no_g, no_h = point(dense_guided_ids=0), point(beam_fusion_dense_psi=0)
    rows.append(["`dense_guided_ids` (G): the IDs of the G items nearest to v_0 are decoded beside the beams",
                 "the beams rarely hold the target's ID", "off (0)",
                 f"validation R@10 without → with: {arrow(no_g['recall@10'], best['validation']['recall@10'])} "
                 "(`beauty_cpu_fast/fusion_ablation.json`)"])
    hd = [r.load(f"{name}/results.json") for name in ("beauty_cpu_logq_del02", "beauty_cpu_logq_del02_hd1", RECIPE)]
    weights = " → ".join(_num(run["model_args"]["history_dense_loss_weight"]) for run in hd)
    rows.append(["`history_dense_loss_weight`: a head predicting the next item's vector v_0 before its ID",
                 "gives the paper's \"without ID\" ablation (`mode=\"dense\"`) and psi_h", "off (0)",
                 f"psi_h 0 in the fusion: validation R@10 {arrow(best['validation']['recall@10'], no_h['recall@10'])} "
                 f"(same file); weight {weights}: test dense N@5 "
                 + " → ".join(f4(run["test"]["dense"]["ndcg@5"]) for run in hd)
                 + ", sparse R@10 " + " → ".join(f4(run["test"]["sparse"]["recall@10"]) for run in hd)
                 + " (`beauty_cpu_logq_del02{,_hd1}/`, `" + RECIPE + "/results.json`"
                 + ("; the first two on another catalog" if len({run["config"]["catalog_hash"] for run in hd}) > 1 else "")
                 + ")"])
    sweep = {name: r.load(f"gpu_sweep/{name}.json") for name in ("paper", "item_emb", "item_text_emb",
                                                                  "item_text_emb_t007")}

    def sweep_effect(a, b, mode="cobra"):
        return arrow(sweep[a]["test"][mode]["recall@10"], sweep[b]["test"][mode]["recall@10"])

    rows.append(["`use_item_embeddings`: a learned vector per item added to its text vector",
                 "Beauty's text is a short title and anonymous attribute ids", "off",
                 f"COBRA R@10 {sweep_effect('paper', 'item_emb')} (`gpu_sweep/paper.json` → `item_emb.json`; GPU, "
                 "older code)"])
    rows.append(["`use_text_embeddings`: the item's frozen sentence embedding, projected, added too",
                 "a pretrained view of the text", "off",
                 f"COBRA R@10 {sweep_effect('item_emb', 'item_text_emb')}, with the v_0 head at 0.5 "
                 "(`gpu_sweep/item_emb.json` → `item_text_emb.json`)"])
    rows.append(["`contrastive_temperature` 0.07 in the recipe",
                 "the paper gives no temperature; 0.2 (reimplementations) is the default", "0.2",
                 f"dense R@10 {sweep_effect('item_text_emb', 'item_text_emb_t007', 'dense')}, COBRA "
                 f"{sweep_effect('item_text_emb', 'item_text_emb_t007')} (`gpu_sweep/item_text_emb_t007.json`)"])
    fast, fast_tune = r.load("beauty_cpu_fast/results.json"), r.load("beauty_cpu_fast/tune_fusion.json")
    logq = r.load("beauty_cpu_logq/results.json")
    assert same_setting(fast_tune["best"]["setting"], logq["generation"])
    rows.append(["`dense_logq_correction`: log Q(item) subtracted in the in-batch InfoNCE",
                 "in-batch negatives are drawn by popularity", "off",
                 f"test dense R@10 {arrow(fast['test']['dense']['recall@10'], logq['test']['dense']['recall@10'])}, "
                 f"COBRA {arrow(fast_tune['test']['best']['recall@10'], logq['test']['cobra']['recall@10'])} at the same "
                 "fusion (`beauty_cpu_fast/` → `beauty_cpu_logq/`)"])
    del03 = r.load("beauty_cpu_logq_del03_e20/results.json")
    rows.append(["`item_deletion`: each training item dropped with this chance in every forward",
                 "other subsequences each epoch", "off (0)",
                 f"20 epochs, 0.3: test dense R@10 {arrow(logq['test']['dense']['recall@10'], del03['test']['dense']['recall@10'])}"
                 f", sparse {arrow(logq['test']['sparse']['recall@10'], del03['test']['sparse']['recall@10'])} "
                 "(`beauty_cpu_logq/` → `beauty_cpu_logq_del03_e20/`)"])
    base, neg = r.load("beauty_cpu/results.json"), r.load("beauty_cpu_negatives/results.json")
    rows.append(["`num_dense_negatives`: uniform catalog items as extra InfoNCE negatives",
                 "more negatives than a batch holds", "off (0)",
                 f"test dense R@10 {arrow(base['test']['dense']['recall@10'], neg['test']['dense']['recall@10'])}, COBRA "
                 f"{arrow(base['test']['cobra']['recall@10'], neg['test']['cobra']['recall@10'])}, {epochs(base)} → "
                 f"{epochs(neg)} epochs in the same time (`beauty_cpu/` → `beauty_cpu_negatives/`)"])
    cat = r.load("beauty_cpu_catalog/results.json")
    rows.append(["`catalog_dense_loss_weight`: an InfoNCE against every catalog item (a refreshed bank)",
                 "the full softmax instead of in-batch", "removed (no gain)",
                 f"test dense R@10 {arrow(logq['test']['dense']['recall@10'], cat['test']['dense']['recall@10'])}, "
                 f"sparse {arrow(logq['test']['sparse']['recall@10'], cat['test']['sparse']['recall@10'])}, "
                 f"{epochs(logq)} → {epochs(cat)} epochs in the same time (`beauty_cpu_catalog/`)"])
    ema = r.load(f"{RECIPE}_ema998/results.json")
    assert same_setting(ema["generation"], s0["setting"])
    rows.append(["`--weight_average_decay`: a moving average of the weights", "smoother end point", "removed (no gain)",
                 f"test COBRA R@10 {arrow(s0['test']['cobra']['recall@10'], ema['test']['cobra']['recall@10'])}, "
                 f"N@5 {arrow(s0['test']['cobra']['ndcg@5'], ema['test']['cobra']['ndcg@5'])} (`{RECIPE}_ema998/`)"])
    ens = r.load(f"{ENSEMBLE}/results.json")
    pair = seeds[:2]
    rows.append(["`CobraEnsemble`: checkpoints of one catalog decode as one model (mean log-probs and cosines)",
                 "independent seeds' errors average out", "opt-in",
                 "test COBRA R@10 "
                 + arrow(statistics.mean(s["test"]["cobra"]["recall@10"] for s in pair), ens["test"]["cobra"]["recall@10"])
                 + ", N@5 "
                 + arrow(statistics.mean(s["test"]["cobra"]["ndcg@5"] for s in pair), ens["test"]["cobra"]["ndcg@5"])
                 + f" (members' mean → `{ENSEMBLE}/`), at twice the decoding cost"])
    hd1 = hd[1]
    excl = r.load("beauty_cpu_logq_del02_hd1/test_cobra_exclude_history.json")
    rows.append(["`exclude_history=True`: items of the history are never recommended",
                 "a deployed recommender would; the paper's protocol does not say", "off",
                 f"test COBRA R@10 {arrow(hd1['test']['cobra']['recall@10'], excl['recall@10'])} "
                 "(`beauty_cpu_logq_del02_hd1/test_cobra_exclude_history.json`); not used in the tables above"])
    before, after = r.load("beauty_cpu_logq/results.json"), r.load("beauty_cpu_logq_e40/results.json")

    def per_step(run):
        return run["timings"]["train_seconds"] / run["train_summary"]["global_step"]

    rows.append(["`length_buckets` (8): each batch decoded in groups of rows of similar length",
                 "most of a padded batch is padding; same losses and gradients (tests/test_modeling.py)", "on",
                 f"seconds per training step incl. validation {arrow(per_step(before), per_step(after), 2)} "
                 "(`beauty_cpu_logq/` → `beauty_cpu_logq_e40/`, different sessions)"])
    rows.append(["top-up: when the beams hold fewer than K items, the catalog items nearest to the best beam's "
                 "vector fill the list", "K real items always come back", "on",
                 "none on Beauty's tables (M x N ≥ K)"])
    return (table(["what", "why", "default", "measured effect (Beauty)"], rows) + "\n\nFiles under `benchmarks/results/`: "
            + ", ".join(f"`{rel}`" for rel in r.read) + ".")


# ------------------------------------------------------------------------------------------ EXPERIMENTS blocks
def block_runs(r: Renderer, arg=None) -> str:
    rows = []
    loaded = {name: r.load(f"{name}/results.json") for name, _ in RUNS}
    for name, ref in RUNS:
        run = loaded[name]
        test = run["test"]
        rows.append([f"`{name}/`", changed(run, loaded[ref] if ref else None),
                     f"`{(run.get('config') or {}).get('catalog_hash', '?')[:6]}`", epochs(run),
                     minutes(run["timings"]["train_seconds"]), fusion(run["generation"]), *cells(test.get("cobra")),
                     f4(test.get("dense", {}).get("recall@10")), f4(test.get("sparse", {}).get("recall@10")),
                     f4(test.get("no_fusion", {}).get("recall@10")), curve_peak(run)])
    header = ["run", "changed against the run it follows", "catalog", "epochs", "train min", "fusion (test)",
              "COBRA R@5", "N@5", "R@10", "N@10", "dense R@10", "sparse R@10", "no-fusion R@10",
              "validation COBRA R@10, peak"]
    return (table(header, rows) + "\n\nEach row: `benchmarks/results/RUN/results.json` (test: all 22,363 users; "
            "validation: 2,000 users per epoch, the first 2,000 before `beauty_cpu_logq_del02`, a seeded random "
            "sample from then on). \"default\" means the flag was absent; \"catalog\" is the start of the catalog's hash "
            "(`prepare` run again on another machine gave other IDs).")


def block_gpu_sweep(r: Renderer, arg=None) -> str:
    rows = []
    for name in GPU_SWEEP:
        run = r.load(f"gpu_sweep/{name}.json")
        config = run["config"]
        args = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in config.get("model", {}).items()) or "the paper's (defaults)"
        test = run["test"]
        rows.append([f"`{name}`", args, _num(config["lr"]), str(config["epochs"]),
                     *(f4(test.get(m, {}).get("recall@10")) if m in test else "-" for m in MODES)])
    return table(["run", "model flags", "lr", "epochs", "COBRA R@10", "dense R@10", "sparse R@10", "no-fusion R@10"],
                 rows) + "\n\nTest Recall@10, all users, COBRA mode with the paper's BeamFusion. " + r.sources()


def block_gpu_sweep_negatives(r: Renderer, arg=None) -> str:
    data = r.load("gpu_sweep_negatives/results.json")
    rows = [[f"`{name}`", *(f4(run["test"].get(m, {}).get("recall@10")) if m in run["test"] else "-" for m in MODES)]
            for name, run in data["runs"].items()]
    return (table(["run", "COBRA R@10", "dense R@10", "sparse R@10", "no-fusion R@10"], rows)
            + f"\n\n{data['note']}\n\n" + r.sources())


def block_tune(r: Renderer, arg: str) -> str:
    tune = r.load(arg)
    rows = []
    for point in tune["grid"]:
        mark = " (selected)" if tune.get("best") and point["setting"] == tune["best"]["setting"] else ""
        extra = ", exclude_history" if point["setting"].get("exclude_history") else ""
        rows.append([fusion(point["setting"]) + extra + mark, *cells(point["validation"])])
    if tune.get("paper_validation"):
        rows.append([fusion({}), *cells(tune["paper_validation"])])
    text = table([f"setting ({tune['validation_users']:,} validation users)", *HEADER], rows)
    if tune.get("test"):
        users = tune["test"]["best"]["users"]
        text += (f"\n\nTest ({users:,} users): the selected setting {' / '.join(cells(tune['test']['best']))}; the "
                 f"paper's BeamFusion {' / '.join(cells(tune['test']['paper']))} (R@5 / N@5 / R@10 / N@10).")
    if tune.get("selected_by"):
        text += f" Selected by validation {tune['selected_by']}."
    if tune.get("note"):
        text += f"\n\nNote recorded with the run: {tune['note']}."
    return text + "\n\n" + r.sources()


def block_probe(r: Renderer, arg: str) -> str:
    probe = r.load(arg)
    betas = sorted({p["beta"] for p in probe["results"]})
    settings_seen = []
    for p in probe["results"]:
        if p["setting"] not in settings_seen:
            settings_seen.append(p["setting"])
    rows = []
    for setting in settings_seen:
        label = "dense only" if setting.get("mode") == "dense" else fusion(setting)
        by_beta = {p["beta"]: p for p in probe["results"] if p["setting"] == setting}
        rows.append([label, *(f4(by_beta.get(b, {}).get("recall@10")) for b in betas)])
    return (table(["validation Recall@10 at beta =", *(_num(b) for b in betas)], rows)
            + f"\n\n{probe['validation_users']:,} validation users; candidates re-ranked with {probe['prior']}. "
            + r.sources())


def block_excluded(r: Renderer, arg=None) -> str:
    rows = []
    fast = r.load("beauty_cpu_fast/test_joint_exclude_history.json")["result"]
    rows.append(["`beauty_cpu_fast/`, COBRA mode (joint)", *cells(fast)])
    for name, label in (("beauty_cpu_logq/test_joint_exclude_history.json", "`beauty_cpu_logq/`, COBRA mode (joint)"),
                        ("beauty_cpu_logq/test_dense_exclude_history.json", "`beauty_cpu_logq/`, dense only"),
                        ("beauty_cpu_logq_del02_hd1/test_cobra_exclude_history.json",
                         "`beauty_cpu_logq_del02_hd1/`, COBRA mode (joint)"),
                        ("beauty_cpu_logq_del02_hd1/test_dense_exclude_history.json",
                         "`beauty_cpu_logq_del02_hd1/`, dense only")):
        rows.append([label, *cells(r.load(name))])
    return table(["checkpoint, mode (history items excluded)", *HEADER], rows) + "\n\nTest, all users. " + r.sources()


def block_seeds(r: Renderer, arg=None) -> str:
    seeds = recipe_seeds(r)
    rows = []
    for mode in MODES:
        for i, s in enumerate(seeds):
            rows.append([f"seed {i}" if i else f"seed 0 (`{RECIPE}/`)", MODE_NAMES[mode], *cells(s["test"][mode])])
        rows.append(["mean ± sd", MODE_NAMES[mode], *(mean_sd([s["test"][mode][m] for s in seeds]) for m in METRICS)])
    text = table(["seed", "mode", *HEADER], rows)
    return text + (f"\n\nCOBRA mode at {fusion(seeds[0]['setting'])}; training minutes "
                   + ", ".join(minutes(s["train_seconds"]) for s in seeds) + ". " + r.sources())


def block_ensembles(r: Renderer, arg=None) -> str:
    rows = []
    for name in ENSEMBLES:
        ens = r.load(f"{name}/results.json")
        members = ", ".join(member_name(m) for m in ens["members"])
        for mode in MODES:
            if mode in ens["test"]:
                rows.append([f"`{name}/`", members, minutes(ens["train_seconds_total"]), MODE_NAMES[mode],
                             *cells(ens["test"][mode]), _num(ens["test"][mode].get("users_per_second"))])
    text = table(["ensemble", "members", "train min (sum)", "mode", *HEADER, "users/s"], rows)
    first = r.load(f"{ENSEMBLES[0]}/results.json")
    return text + f"\n\nTest, all users, {fusion(first['generation'])}. " + r.sources()


def block_cold_start(r: Renderer, arg=None) -> str:
    cs = r.load("cold_start.json")
    rows = []
    for key, label in (("cobra", "COBRA mode"), ("sparse", "sparse only, same model"),
                       ("tiger_like_sparse", "TIGER-like (unique IDs, sparse only)")):
        res = cs[key]
        rows.append([label, f4(res["recall@10"]), f"{res['cases_with_a_new_item_in_top10']:.1%}",
                     str(res["distinct_new_items_recommended"])])
    cat = cs["cobra_catalog"]
    return (table([f"the {cs['cobra']['cold_target_cases']:,} test cases whose target is a new item", "Recall@10",
                   "cases with a new item in the top 10", "distinct new items recommended"], rows)
            + f"\n\n{cat['new_items']:,} of {cat['old_items'] + cat['new_items']:,} items held out "
            f"({cs['holdout_fraction']:.0%}), models trained {cs['max_steps']} steps, the new items added in "
            f"{cat['add_seconds']:.1f} s ({cat['new_items_sharing_an_id_with_an_old_item']} share an ID with an old item). "
            + r.sources())


def block_speed(r: Renderer, arg=None) -> str:
    s = r.load("speed.json")
    rows = [["training, batch " + str(s["train_batch_size"]), f"{s['train_sequences_per_s']:.0f} sequences/s "
             f"({s['train_fraction_of_peak']:.0%} of the matmul peak in model FLOPs)",
             f"{s['train_bound_sequences_per_s']:.0f} sequences/s"],
            ["matmul kernels of a training step", f"{s['matmul_layers_gflops_per_s']:.1f} GFLOP/s = "
             f"{s['matmul_layers_fraction_of_peak']:.0%} of peak, {s['matmul_share_of_step_time']:.0%} of the step", ""],
            [f"generate, M = {s['generate_num_beams']}", f"{s['generate_users_per_s']:.0f} users/s, "
             f"{s['generate_invalid_items']} invalid items", f"{s['generate_bound_users_per_s']:.0f} users/s"],
            ["peak memory (RSS)", f"{s['peak_rss_gb_after_training']:.2f} GB after training, {s['peak_rss_gb']:.2f} GB "
             "in all", ""]]
    return (table(["", "measured", "limit (FLOPs / measured matmul peak)"], rows)
            + f"\n\nMatmul peak measured in the same run: {s['matmul_peak_gflops']:.0f} GFLOP/s on {s['threads']} threads "
            "(it differs between sessions by tens of percent). " + r.sources())


def block_scale(r: Renderer, arg=None) -> str:
    s = r.load("scale.json")
    lat = s["latency_ms_per_user"]
    modes = sorted({k.split("@")[0] for k in lat}, key=lambda m: list(lat).index(f"{m}@batch1"))
    batches = sorted({k.split("@batch")[1] for k in lat}, key=int)
    rows = [[f"`{m}`", *(f"{lat[f'{m}@batch{b}']:.1f}" for b in batches)] for m in modes]
    return (table(["ms per user", *(f"batch {b}" for b in batches)], rows)
            + f"\n\nA synthetic catalog of {s['items']:,} items ({' x '.join(map(str, s['level_sizes']))} random IDs, "
            f"{s['distinct_ids']:,} distinct): catalog tensors {s['catalog_tensor_mb']:.0f} MB, ID index "
            f"{s['id_index_mb']:.0f} MB, peak RSS {s['peak_rss_gb']:.1f} GB. " + r.sources())


def block_semantic_ids(r: Renderer, arg=None) -> str:
    data = r.load("semantic_ids.json")["datasets"]
    rows = [[name, f"{d['items']:,}", " x ".join(map(str, d["codebook_sizes"])), f"{d['distinct_ids']:,}",
             f"{d['items_per_id_mean']:.2f}", str(d["items_per_id_max"]), f"{d['shared_id_fraction']:.0%}",
             f"{d['embed_seconds'] + d['quantizer_seconds']:.0f}"] for name, d in data.items()]
    return table(["data", "items", "codes", "distinct IDs", "items per ID", "max", "items sharing an ID",
                  "seconds (embed + RQ-VAE)"], rows) + "\n\n" + r.sources()


def block_load_checks(r: Renderer, arg=None) -> str:
    data = r.load("load_checks.json")
    rows = [[f"{x['num_items']:,}", f"{x['hashed_mb']:,.0f}", f"{x['load_without_checks_s']:.3f}",
             f"{x['load_with_checks_s']:.3f}", f"+{x['extra_s']:.2f}",
             f"{x['load_without_checks_then_read_every_tensor_s']:.3f}", f"{x['tensor_checks_alone_s']:.3f}"]
            for x in data["results"]]
    return (table(["catalog items", "MB hashed", "load, no checks (s)", "load with checks (s)", "extra (s)",
                   "no checks, then every tensor read once (s)", "tensor scan instead (old checkpoints, s)"], rows)
            + f"\n\n{data['what']} ({data['cpu']}, torch {data['torch']}, {data['torch_threads']} thread). " + r.sources())


def block_data_layer(r: Renderer, arg=None) -> str:
    d = r.load("data_layer.json")
    res = d["results"]
    names = [n for n in ("rowwise", "columnar", "pandas") if n in res]
    def sec(v):
        return "-" if v is None else f"{v:.1f} s"
    rows = [["read + 5-core + sort + group into sequences", *(sec(res[n]["load_s"]) for n in names)],
            ["leave-one-out splits", *(sec(res[n].get("split_s")) for n in names)],
            ["peak RSS of the process", *(f"{res[n]['peak_rss_gb']:.2f} GB" for n in names)]]
    scaling = sorted(d.get("columnar_scaling", {}).items(), key=lambda kv: int(kv[0]))
    note = "; ".join(f"{int(k):,}: {v['load_s']:.0f} s, {v['peak_rss_gb']:.2f} GB" for k, v in scaling)
    return (table([f"{d['rows']:,} interactions ({d['users']:,} users, {d['items']:,} items), {d['threads']} thread",
                   *(d["labels"][n] for n in names)], rows)
            + f"\n\nColumnar path at other sizes (load, peak RSS): {note}. " + r.sources())


def block_commands(r: Renderer, arg=None) -> str:
    parts = []
    for name, _ in RUNS + [(SCIENTIFIC, None)]:
        run = r.load(f"{name}/results.json")
        parts.append(f"# {name}\n{benchmark_command(run)}")
    for rel in sorted(p.relative_to(r.results).as_posix() for p in r.results.glob("*/tune_fusion*.json")):
        tune = r.load(rel)
        if "best" in tune:
            parts.append(f"# {rel}\n{tune_command(tune, rel)}")
    for name in ENSEMBLES:
        rel = f"{name}/results.json"
        parts.append(f"# {rel}\n{ensemble_command(r.load(rel), rel)}")
    return "```bash\n" + "\n\n".join(parts) + "\n```"


def block_research(r: Renderer, arg=None) -> str:
    files = sorted(r.results.glob("research/*.json"))
    if not files:
        return "No runs yet."
    out = []
    for path in files:
        rel = path.relative_to(r.results).as_posix()
        run = r.load(rel)
        out.append(render_research_run(run, rel))
    return "\n\n".join(out)


def _id_kind(run: dict) -> str:
    """Which semantic IDs a research run used: the catalog's level sizes and how they were made."""
    sizes = run.get("config", {}).get("level_sizes") or []
    catalog = str(run.get("catalog", ""))
    kind = "RQ-KMeans of learned item vectors" if "collab" in catalog else (
        "RQ-KMeans of text" if "rqk" in catalog else "RQ-VAE of text")
    return f"{'x'.join(map(str, sizes))} {kind}"


def block_research_summary(r: Renderer, arg=None) -> str:
    files = sorted(r.results.glob("research/*.json"))
    if not files:
        return "No runs yet."
    rows = []
    for path in files:
        run = r.load(path.relative_to(r.results).as_posix())
        cfg = run.get("config", {})
        val = run.get("validation", {})
        diag = run.get("diagnostics", {})
        tf = diag.get("teacher_forced", {}).get("top1_valid") or []
        hits = diag.get("beam_search", {}).get("id_hit_rate", {})

        def cell(mode):
            v = val.get(mode)
            return "-" if not v else f"{v['recall@10']:.4f} / {v['ndcg@10']:.4f}"
        losses = f"{cfg.get('sparse_loss_weight', 1):g} / {cfg.get('dense_loss_weight', 1):g} / {cfg.get('history_dense_loss_weight', 0):g}"
        test_rel = f"research/test/{path.stem}.json"
        test = "-"
        if r.exists(test_rel):
            t = r.load(test_rel)
            test = f"{t['mode']}: {t['recall@10']:.4f} / {t['ndcg@10']:.4f}"
        rows.append([f"`{run.get('name', path.stem)}`", _id_kind(run), losses, minutes(run.get("train_seconds")),
                     cell("cobra"), cell("dense"), cell("sparse"), cell("cobra_paper_fusion"),
                     f"{tf[0]:.3f}" if tf else "-", f"{hits['20']:.3f}" if "20" in hits else "-", test])
    return table(["run", "IDs", "loss weights sparse / dense / ID-free dense", "train min",
                  "COBRA mode R@10 / N@10", "dense only", "sparse only", "COBRA, paper's BeamFusion",
                  "level-1 code top-1", "target ID in M=20 beams", "test, once (R@10 / N@10)"], rows) + (
        "\n\nValidation split, all users (one standard error is about 0.0013 on Recall@10 near 0.04 and 0.002 near"
        " 0.10). COBRA mode uses each run's own fusion; the ID-only runs have no trained dense head, so their COBRA"
        " mode ranks each ID's items by an untrained vector. Test is read once, for a run kept as a recipe"
        " (`cobra-hf evaluate ... --split test`, all users); TIGER's published test figures are in"
        " `paper.json`. " + r.sources())


def block_research_fusion(r: Renderer, arg=None) -> str:
    """Validation-only fusion grids (`tune_fusion.py --no-test`) of research models."""
    files = sorted(r.results.glob("research/fusion/*.json"))
    if not files:
        return "No fusion grids yet."
    rows = []
    for path in files:
        grid = r.load(path.relative_to(r.results).as_posix())
        name = f"`{path.stem}`"
        for point in grid["grid"]:
            s, v = point["setting"], point["validation"]
            rows.append([name, f"joint, tau {_num(s['beam_fusion_tau'])}, psi {_num(s['beam_fusion_psi'])}, psi_h "
                         f"{_num(s['beam_fusion_dense_psi'])}, G {s.get('dense_guided_ids', 0)}",
                         f"{v['recall@10']:.4f}", f"{v['ndcg@10']:.4f}", str(v["users"])])
        v = grid["paper_validation"]
        rows.append([name, "the paper's BeamFusion (tau 0.9, psi 16)", f"{v['recall@10']:.4f}", f"{v['ndcg@10']:.4f}",
                     str(v["users"])])
    return table(["model", "fusion", "validation R@10", "N@10", "users (seeded sample)"], rows) + "\n\n" + r.sources()


def _pm(result: dict, metric: str) -> str:
    value = result.get(metric)
    if value is None:
        return "n/a"
    se = result.get(f"se_{metric}")
    return f4(value) + (f" ± {float(se):.4f}" if se is not None else "")


def render_research_run(run: dict, rel: str) -> str:
    name = run.get("name") or Path(rel).stem
    lines = [f"#### `{name}`", "", f"`benchmarks/results/{rel}`; training {minutes(run.get('train_seconds'))} minutes, "
             f"{run.get('global_step', 'n/a')} steps.", "", "```bash", run.get("command", "(no command recorded)"), "```"]
    for split in ("validation", "test"):
        scores = run.get(split)
        if not scores:
            continue
        rows = []
        for mode, result in scores.items():
            rows.append([MODE_NAMES.get(mode, "COBRA mode, the paper's BeamFusion" if mode == "cobra_paper_fusion" else mode),
                         *(_pm(result, m) for m in METRICS), str(result.get("users", "n/a"))])
        lines += ["", table([f"{split} (± one standard error)", *HEADER, "users"], rows)]
    diag = run.get("diagnostics")
    if diag:
        tf = diag.get("teacher_forced", {})
        beam = diag.get("beam_search", {})
        grads = (diag.get("gradients") or {}).get("share", {})
        items = []
        if tf.get("top1_valid"):
            items.append("teacher-forced top-1 per level (true prefix, valid codes): "
                         + " / ".join(f"{v:.3f}" for v in tf["top1_valid"]))
        if tf.get("all_levels_top1_true_prefix") is not None:
            items.append(f"all levels right: {tf['all_levels_top1_true_prefix']:.3f}")
        if beam.get("id_hit_rate"):
            items.append("target ID among the beams at M = " + ", ".join(
                f"{m}: {v:.3f}" for m, v in beam["id_hit_rate"].items()))
        if grads:
            items.append("decoder gradient share: " + ", ".join(f"{k} {v:.0%}" for k, v in grads.items()))
        if items:
            lines += ["", "Diagnostics (validation): " + "; ".join(items) + "."]
    return "\n".join(lines)


BLOCKS = {
    "beauty": block_beauty, "scientific": block_scientific, "quickstart": block_quickstart,
    "deviations": block_deviations, "runs": block_runs, "gpu-sweep": block_gpu_sweep,
    "gpu-sweep-negatives": block_gpu_sweep_negatives, "tune": block_tune, "probe": block_probe,
    "excluded": block_excluded, "seeds": block_seeds, "ensembles": block_ensembles, "cold-start": block_cold_start,
    "speed": block_speed, "scale": block_scale, "semantic-ids": block_semantic_ids, "commands": block_commands,
    "research": block_research, "load-checks": block_load_checks, "data-layer": block_data_layer,
    "research-summary": block_research_summary, "research-fusion": block_research_fusion,
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
