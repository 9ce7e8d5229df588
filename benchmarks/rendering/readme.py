"""The README's tables: the headline Beauty table (paper rows, the recipe's seeds, the ensemble), Scientific, the
quickstart's numbers and the table of deviations from the paper with their measured effects.
"""

from __future__ import annotations

import statistics

from .core import HEADER, METRICS, MODE_NAMES, MODES, Renderer, arrow, cells, f4, fusion, mean_sd, minutes, num, \
    same_setting, table
from .final_read import ROWS as FINAL_READ_ROWS, gains as cascade_gains, read_runs
from .research import ID_ONLY_RUNS, two_phase_pairs
from .runs import ENSEMBLE, RECIPE, RECIPE_SEED0_FUSION, SCIENTIFIC, changed, epochs, paper_rows, recipe_seeds

# the paper's recipe on the current code, and the ID-only unique-ID model (issue 21), test read once each
PAPER_RECIPE_TEST = "research/test/paper_recipe_3x32.json"
SCIENTIFIC_PAPER_TEST = "research/test/sci_paper_recipe_3x32.json"
# the training length chosen on validation (EXPERIMENTS, "ids-only-seeds", where both lengths' test reads are)
# the ID-only setting the README shows (a key of ID_ONLY_RUNS, chosen on validation) and its description
ID_ONLY_README = "32, text RQ-KMeans IDs, per-item output rows, dropout 0.2, their weight decay 1.0"
ID_ONLY_LABEL = "ID only; unique IDs: RQ-KMeans 3x256 of text + a dedup code"
ID_ONLY_TESTS = f"research/test/{ID_ONLY_RUNS[ID_ONLY_README]}*.json"
# the named recipe unchanged on Scientific, one file per seed (research_run.py --test)
SCIENTIFIC_RECIPE = "research/sci_joint_recipe_3x32*.json"


def _trunk_rows(r: Renderer, dataset: str) -> tuple[list[list[str]], str]:
    """`--recipe trunk` (the CLI's default) per mode, mean ± sd over the seeds read so far (final_read.read_runs),
    and a sentence on how they were trained and read; ([], "") before any seed is read."""
    runs = read_runs(r, dataset)
    if not runs:
        return [], ""
    n = len(runs)
    rows = []
    # with one item per ID the paper's per-beam softmax keeps the beams' order: its rows equal sparse mode's
    same = all(run["test"].get("cobra_paper_fusion", {}).get(m) == run["test"]["sparse"][m]
               for run in runs for m in METRICS)
    for mode, name in FINAL_READ_ROWS:
        if same and mode == "cobra_paper_fusion":
            continue
        if same and mode == "sparse":
            name += " = COBRA mode with the paper's BeamFusion (tau 0.9, psi 16)"
        if all(mode in run["test"] for run in runs):
            values = [[run["test"][mode][m] for run in runs] for m in METRICS]
            default = " (the default)" if mode == "cobra" else ""
            rows.append([f"`--recipe trunk`{default}, {name}, {n} seed{'s' * (n > 1)}",
                         *[mean_sd(v) if n > 1 else f4(v[0]) for v in values]])
    # per seed, since the seeds ran in different sessions, on 2-core CPUs of different speeds
    train = ", ".join(minutes(run["train_seconds"]) for run in runs)
    how = (f"`--recipe trunk`: {train} minutes of training (both phases) for the seeds on 2-core CPUs, "
           "decoding picked per seed on validation, test read once per seed")
    return rows, how


def block_beauty(r: Renderer, arg=None) -> str:
    """The README's headline table: the paper's rows (paper.json), the paper's configuration (`--recipe paper`),
    the default recipe's seeds per mode, the joint recipe's seeds and two-seed ensemble (chosen partly on test in
    earlier sessions) and the ID-only model; test split, mean ± sd over seeds."""
    seeds = recipe_seeds(r)
    rows = paper_rows(r, "beauty")
    by_mode = {entry["mode"]: entry for entry in r.load(PAPER_RECIPE_TEST)}
    rows += [[f"cobra-hf `--recipe paper` (the paper's configuration and decoding), {MODE_NAMES[mode]}",
              *cells(by_mode[mode])] for mode in ("cobra", "sparse") if mode in by_mode]
    trunk, how = _trunk_rows(r, "beauty")
    rows += [[f"cobra-hf {row[0]}", *row[1:]] for row in trunk]
    n = len(seeds)
    for mode in ("cobra", "dense"):
        values = [[s["test"][mode][m] for s in seeds] for m in METRICS]
        rows.append([f"cobra-hf `--recipe joint`, {MODE_NAMES[mode]}"
                     + (f" ({fusion(seeds[0]['setting'])})" if mode == "cobra" else "") + f", {n} seeds",
                     *[mean_sd(v) for v in values]])
    ens = r.load(f"{ENSEMBLE}/results.json")
    rows.append(["cobra-hf `--recipe joint`, ensemble of seeds 0 + 1, COBRA mode", *cells(ens["test"]["cobra"])])
    id_only = sorted(p.relative_to(r.results).as_posix() for p in r.results.glob(ID_ONLY_TESTS))
    if id_only:
        runs = [r.load(rel) for rel in id_only]
        label = f"cobra-hf `--recipe ids` ({ID_ONLY_LABEL}), {len(runs)} seed{'s' * (len(runs) > 1)}"
        cell = (lambda m: mean_sd([run[m] for run in runs])) if len(runs) > 1 else (lambda m: f4(runs[0][m]))
        rows.append([label, *[cell(m) for m in METRICS]])
    users = seeds[0]["test"]["cobra"]["users"]
    train = statistics.mean(s["train_seconds"] for s in seeds)
    text = table(["model", *HEADER], rows)
    text += (f"\n\nTest split, all {users:,} users, full ranking over every item, M = 20 beams, K = 10, history items "
             f"not excluded; ± is the standard deviation over seeds. {how}. `--recipe joint`: {minutes(train)} "
             f"minutes per seed, its fusion and the ensemble ({minutes(ens['train_seconds_total'])} minutes in all) "
             "chosen in earlier sessions partly on these test numbers.\n\n" + r.sources())
    return text


def _scientific_earlier(r: Renderer) -> tuple[list[list[str]], str]:
    """The one-seed run of an earlier configuration (scientific_cpu/): its rows and how it was trained."""
    run = r.load(f"{SCIENTIFIC}/results.json")
    tune = r.load(f"{SCIENTIFIC}/tune_fusion.json")
    rows = [[f"cobra-hf, COBRA mode ({fusion(tune['best']['setting'])}, Beauty's setting, not tuned here)",
             *cells(tune["test"]["best"])],
            [f"cobra-hf, COBRA mode ({fusion(run['generation'])})", *cells(run["test"]["cobra"])]]
    rows += [[f"cobra-hf, {MODE_NAMES[m]}", *cells(run["test"][m])] for m in MODES[1:] if m in run["test"]]
    how = f"{changed(run, None)}; {minutes(run['timings']['train_seconds'])} minutes of training"
    return rows, how


def _scientific_recipe(r: Renderer) -> tuple[list[list[str]], str, int]:
    """The named recipe's seeds on Scientific (research_run.py --test): mean ± sd per mode, and how they trained."""
    runs = [r.load(rel) for rel in sorted(p.relative_to(r.results).as_posix() for p in r.results.glob(SCIENTIFIC_RECIPE))]
    runs = [run for run in runs if "test" in run]
    if not runs:
        return [], "", 0
    n, rows = len(runs), []
    for mode in ("cobra", "cobra_paper_fusion", *MODES[1:]):
        if all(mode in run["test"] for run in runs):
            name = ("COBRA mode, the paper's BeamFusion (tau 0.9, psi 16)" if mode == "cobra_paper_fusion" else
                    "COBRA mode (joint BeamFusion picked on validation)" if mode == "cobra" else MODE_NAMES[mode])
            label = f"`--recipe joint`, {name}, {n} seed{'s' * (n > 1)}"
            rows.append([label,
                         *[mean_sd([run["test"][mode][m] for run in runs]) for m in METRICS]])
    train = statistics.mean(run["train_seconds"] for run in runs)
    how = (f"Beauty's recipe unchanged, {minutes(train)} minutes of training per seed, ± the sd over {n} "
           f"seed{'s' * (n > 1)}, decoding picked per seed on validation")
    return rows, how, runs[0]["test"]["cobra"]["users"]


def block_scientific(r: Renderer, arg=None) -> str:
    """Amazon Scientific, test split: the default recipe's seeds, the joint recipe's seeds and the paper's
    configuration (README); with arg "earlier", or while no recipe has seeds, the one-seed run of an earlier
    configuration."""
    recipe, how, users = _scientific_recipe(r)
    earlier = arg == "earlier" or not recipe
    trunk, trunk_how = ([], "") if arg else _trunk_rows(r, "sci")
    joint = [row for row in recipe if "paper's" not in row[0]][:2]  # its COBRA and dense rows beside the trunk's
    rows, how = _scientific_earlier(r) if earlier else (trunk + joint, how)
    if not arg and (r.results / SCIENTIFIC_PAPER_TEST).is_file():
        by_mode = {entry["mode"]: entry for entry in r.load(SCIENTIFIC_PAPER_TEST)}
        rows += [[f"`--recipe paper` (the paper's configuration and decoding), {MODE_NAMES[m]}",
                  *cells(by_mode[m])] for m in ("cobra", "sparse") if m in by_mode]
    if earlier:
        users = r.load(f"{SCIENTIFIC}/results.json")["test"]["cobra"]["users"]
    text = table(["cobra-hf", *HEADER], rows)
    what = (f"one seed of an earlier configuration ({how})" if earlier else
            "; ".join(x for x in (trunk_how, f"`--recipe joint`: {how}") if x))
    more = "" if arg or earlier else " An earlier configuration: EXPERIMENTS section 12."
    text += (f"\n\nTest split, {users:,} users; {what}.{more} The paper reports no Scientific numbers.\n\n"
             + r.sources())
    return text


QUICKSTART = "quickstart/test_metrics.json"


def block_quickstart(r: Renderer, arg=None) -> str:
    """What scripts/quickstart.sh printed, when recorded (quickstart/test_metrics.json)."""
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
    """Each deviation from the paper, why, its default and its measured effect on Beauty, every number
    read from the run or grid named in its row."""
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
    weights = " → ".join(num(run["model_args"]["history_dense_loss_weight"]) for run in hd)
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
    ens = r.load(f"{ENSEMBLE}/results.json")
    pair = seeds[:2]
    rows.append(["`CobraEnsemble`: checkpoints of one catalog decode as one model (mean log-probs and cosines)",
                 "independent seeds' errors average out", "opt-in",
                 "test COBRA R@10 "
                 + arrow(statistics.mean(s["test"]["cobra"]["recall@10"] for s in pair), ens["test"]["cobra"]["recall@10"])
                 + ", N@5 "
                 + arrow(statistics.mean(s["test"]["cobra"]["ndcg@5"] for s in pair), ens["test"]["cobra"]["ndcg@5"])
                 + f" (members' mean → `{ENSEMBLE}/`), at twice the decoding cost"])
    pairs = two_phase_pairs(r)

    def mean_gains(which: int) -> str:
        runs = [pair[which] for pair in pairs]
        return " / ".join(f"{statistics.mean(cascade_gains(runs, 'validation', m)):+.1f}%"
                          for m in ("recall@10", "ndcg@10"))

    rows.append(["`id_trunk`: a second decoder for the IDs; `--recipe trunk` trains it 16 more epochs alone",
                 "in one decoder the IDs and the vectors compete; the IDs need more epochs", "off (the default "
                 "recipe on)", f"validation COBRA over its own dense R@10 / N@10, {len(pairs)} seeds: {mean_gains(0)} "
                 f"→ {mean_gains(1)} with the phase (`research/trunk2ph_hd2_rqk3x256d_e16p16*.json`)"])
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
