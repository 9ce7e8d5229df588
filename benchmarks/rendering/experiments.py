"""The tables of docs/EXPERIMENTS.md's log: every Beauty run at a glance, the GPU sweep, fusion grids and
popularity probes, history exclusion, seeds, ensembles and new items without retraining.
"""

from __future__ import annotations

import json

from .core import HEADER, METRICS, MODE_NAMES, MODES, Renderer, cells, f4, fusion, mean_sd, minutes, num, table
from .runs import ENSEMBLES, GPU_SWEEP, RECIPE, RUNS, changed, curve_peak, epochs, member_name, recipe_seeds

def block_runs(r: Renderer, arg=None) -> str:
    """Every Beauty benchmark run in RUNS, one row each: what it changed against the run it follows, its test
    metrics per mode and its validation peak (RUN/results.json)."""
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
    """The early GPU sweep of model flags (gpu_sweep/*.json): test Recall@10 per mode, paper's BeamFusion."""
    rows = []
    for name in GPU_SWEEP:
        run = r.load(f"gpu_sweep/{name}.json")
        config = run["config"]
        args = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in config.get("model", {}).items()) or "the paper's (defaults)"
        test = run["test"]
        rows.append([f"`{name}`", args, num(config["lr"]), str(config["epochs"]),
                     *(f4(test.get(m, {}).get("recall@10")) if m in test else "-" for m in MODES)])
    return table(["run", "model flags", "lr", "epochs", "COBRA R@10", "dense R@10", "sparse R@10", "no-fusion R@10"],
                 rows) + "\n\nTest Recall@10, all users, COBRA mode with the paper's BeamFusion. " + r.sources()


def block_gpu_sweep_negatives(r: Renderer, arg=None) -> str:
    """The GPU sweep of dense negatives (gpu_sweep_negatives/results.json): test Recall@10 per mode."""
    data = r.load("gpu_sweep_negatives/results.json")
    rows = [[f"`{name}`", *(f4(run["test"].get(m, {}).get("recall@10")) if m in run["test"] else "-" for m in MODES)]
            for name, run in data["runs"].items()]
    return (table(["run", "COBRA R@10", "dense R@10", "sparse R@10", "no-fusion R@10"], rows)
            + f"\n\n{data['note']}\n\n" + r.sources())


def block_tune(r: Renderer, arg: str) -> str:
    """One fusion grid of tune_fusion.py (the file named in the marker): validation metrics per setting, the
    paper's BeamFusion, and the test numbers of the selected setting when the grid read test."""
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
    """A popularity-prior probe (the file named in the marker): validation Recall@10 per setting and beta."""
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
    return (table(["validation Recall@10 at beta =", *(num(b) for b in betas)], rows)
            + f"\n\n{probe['validation_users']:,} validation users; candidates re-ranked with {probe['prior']}. "
            + r.sources())


def block_excluded(r: Renderer, arg=None) -> str:
    """Test metrics with history items excluded (the */test_*_exclude_history.json files)."""
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
    """The recipe's three seeds per mode with mean ± sd (RECIPE*/results.json and seed 0's fusion grid)."""
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
    """Every ensemble in ENSEMBLES (evaluate_ensemble.py, */results.json): test metrics per mode, users/s."""
    rows = []
    for name in ENSEMBLES:
        ens = r.load(f"{name}/results.json")
        members = ", ".join(member_name(m) for m in ens["members"])
        for mode in MODES:
            if mode in ens["test"]:
                rows.append([f"`{name}/`", members, minutes(ens["train_seconds_total"]), MODE_NAMES[mode],
                             *cells(ens["test"][mode]), num(ens["test"][mode].get("users_per_second"))])
    text = table(["ensemble", "members", "train min (sum)", "mode", *HEADER, "users/s"], rows)
    first = r.load(f"{ENSEMBLES[0]}/results.json")
    return text + f"\n\nTest, all users, {fusion(first['generation'])}. " + r.sources()


def block_cold_start(r: Renderer, arg=None) -> str:
    """New items added without retraining (bench_cold_start.py, cold_start.json): Recall@10 on the test
    cases whose target is a new item, and how often new items are recommended."""
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
