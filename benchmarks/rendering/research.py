"""The research tables of docs/EXPERIMENTS.md (issue 21): one summary row and one section per run of
benchmarks/research_run.py (benchmarks/results/research/*.json, picked up as they appear), and the validation-only
fusion grids of research models (research/fusion/*.json).
"""

from __future__ import annotations

import shlex
import statistics
from pathlib import Path

from .core import HEADER, METRICS, MODE_NAMES, Renderer, f4, mean_sd, minutes, num, table

def _runs(r: Renderer, pattern: str) -> list[tuple[Path, dict]]:
    """(path, parsed JSON) of every results file matching `pattern` (relative to benchmarks/results), sorted."""
    return [(path, r.load(path.relative_to(r.results).as_posix())) for path in sorted(r.results.glob(pattern))]


def block_research(r: Renderer, arg=None) -> str:
    """One section per research run (research/*.json): its command, scores per split and mode with
    standard errors, and its ID-path diagnostics. A run's expectations (written before it ran) are shown once: a
    later run (another seed) that carried the same text points to the first."""
    runs = _runs(r, "research/*.json")
    if not runs:
        return "No runs yet."
    first_with: dict[str, str] = {}
    sections = []
    for path, run in runs:
        name = run.get("name") or path.stem
        expected = run.get("expected")
        sections.append(render_research_run(run, path.relative_to(r.results).as_posix(),
                                            expected_as=first_with.get(expected) if expected else None))
        if expected:
            first_with.setdefault(expected, name)
    return "\n\n".join(sections)


def _id_kind(run: dict) -> str:
    """Which semantic IDs a research run used: the catalog's level sizes and how they were made."""
    sizes = run.get("config", {}).get("level_sizes") or []
    catalog = str(run.get("catalog", ""))
    kind = "RQ-KMeans of learned item vectors" if "collab" in catalog else (
        "RQ-KMeans of text" if "rqk" in catalog else "RQ-VAE of text")
    return f"{'x'.join(map(str, sizes))} {kind}"


def _dense_columns(cfg: dict) -> str:
    """How the dense losses were computed: the item-text encoder's depth and what each InfoNCE scores against."""
    negatives = int(cfg.get("num_dense_negatives", 0))
    columns = {0: "in-batch", -1: "whole catalog"}.get(negatives, f"in-batch + {negatives} uniform")
    if cfg.get("dense_logq_correction") and negatives != -1:
        columns += ", log Q"
    return f"{cfg.get('encoder_layers', 1)}; {columns}"


def block_research_summary(r: Renderer, arg=None) -> str:
    """One row per research run (research/*.json): IDs, loss weights, validation R@10 / N@10 per
    mode, ID-path diagnostics, and the test numbers read once (research/test/NAME.json) where a run became a recipe."""
    runs = _runs(r, "research/*.json")
    if not runs:
        return "No runs yet."
    rows = []
    for path, run in runs:
        cfg = run.get("config", {})
        val = run.get("validation", {})
        diag = run.get("diagnostics", {})
        tf = diag.get("teacher_forced", {}).get("top1_valid") or []
        hits = diag.get("beam_search", {}).get("id_hit_rate", {})

        def cell(mode):
            v = val.get(mode)
            return "-" if not v else f"{v['recall@10']:.4f} / {v['ndcg@10']:.4f}"
        losses = f"{cfg.get('sparse_loss_weight', 1):g} / {cfg.get('dense_loss_weight', 1):g} / {cfg.get('history_dense_loss_weight', 0):g}"
        if cfg.get("within_id_loss_weight"):
            losses += f" / within-ID {cfg['within_id_loss_weight']:g}"
        test_rel = f"research/test/{path.stem}.json"
        test = "-"
        if r.exists(test_rel):
            # one mode (cobra-hf evaluate --mode M) or a list of every mode (--all-modes)
            tests = r.load(test_rel)
            test = "; ".join(f"{t['mode']}: {t['recall@10']:.4f} / {t['ndcg@10']:.4f}"
                             for t in (tests if isinstance(tests, list) else [tests]))
        rows.append([f"`{run.get('name', path.stem)}`", _id_kind(run), losses, _dense_columns(cfg),
                     _train_minutes(r, run),
                     cell("cobra"), cell("dense"), cell("sparse"), cell("cobra_paper_fusion"),
                     f"{tf[0]:.3f}" if tf else "-", f"{hits['20']:.3f}" if "20" in hits else "-", test])
    return table(["run", "IDs", "loss weights sparse / dense / ID-free dense", "text encoder layers; InfoNCE columns",
                  "train min",
                  "COBRA mode R@10 / N@10", "dense only", "sparse only", "COBRA, paper's BeamFusion",
                  "level-1 code top-1", "target ID in M=20 beams", "test, once (R@10 / N@10)"], rows) + (
        "\n\nValidation split, all users (one standard error is about 0.0013 on Recall@10 near 0.04 and 0.002 near"
        " 0.10). COBRA mode uses each run's own fusion; the ID-only runs have no trained dense head, so their COBRA"
        " mode ranks each ID's items by an untrained vector. Test is read once, for a run kept as a recipe"
        " (`cobra-hf evaluate ... --split test`, all users); TIGER's published test figures are in"
        " `paper.json`. " + r.sources())


def _init_run(r: Renderer, run: dict) -> dict | None:
    """The research run whose model a run continued (`--init_from runs/research/NAME/model` in its train args)."""
    words = str(run.get("train_args", "")).split()
    if "--init_from" not in words:
        return None
    name = Path(words[words.index("--init_from") + 1]).parent.name
    return r.load(f"research/{name}.json") if r.exists(f"research/{name}.json") else None


def _train_minutes(r: Renderer, run: dict) -> str:
    """Training minutes; for a run that continued another research run's model, that run's minutes + its own."""
    first = _init_run(r, run)
    own = minutes(run.get("train_seconds"))
    return own if first is None else f"{minutes(first.get('train_seconds'))} + {own}"


def two_phase_pairs(r: Renderer, dataset: str | None = None) -> list[tuple[dict, dict]]:
    """(the one-run trunk, the `--train_only id_trunk` run that continued it) for each research/trunk2ph_* run
    (research/DATASET_trunk2ph_* for another dataset's, e.g. `sci`)."""
    pairs = []
    for _, run in _runs(r, f"research/{dataset + '_' if dataset else ''}trunk2ph_*.json"):
        first = _init_run(r, run)
        if first is not None:
            pairs.append((first, run))
    return pairs


def block_two_phase_trunk(r: Renderer, arg=None) -> str:
    """The ID trunk given more epochs than the dense half: each `--train_only id_trunk` run (research/trunk2ph_*,
    or research/ARG_trunk2ph_* for another dataset's, e.g. `sci`) beside the one-run trunk it continued, per mode
    on validation (all users), and the mean over seeds."""
    rows, gains = [], {"before": [], "after": []}
    users = set()
    for first, run in two_phase_pairs(r, arg):
        before, after = first["validation"], run["validation"]
        users.add(after["cobra"]["users"])
        same_dense = all(before["dense"][m] == after["dense"][m] for m in ("recall@10", "ndcg@10"))

        def pair(v):
            return f"{v['recall@10']:.4f} / {v['ndcg@10']:.4f}"

        def gain(v):
            return [100 * (v["cobra"][m] / v["dense"][m] - 1) for m in ("recall@10", "ndcg@10")]

        gains["before"].append(gain(before))
        gains["after"].append(gain(after))
        rows.append([f"`{first['name']}` -> `{run['name']}`", pair(after["dense"]) + (" (unchanged)" if same_dense else
                     f" (was {pair(before['dense'])})"), f"{pair(before['sparse'])} -> {pair(after['sparse'])}",
                     f"{pair(before['cobra'])} -> {pair(after['cobra'])}",
                     "{:+.1f}% / {:+.1f}% -> {:+.1f}% / {:+.1f}%".format(*gains["before"][-1], *gains["after"][-1]),
                     pair(after["cobra_paper_fusion"]), f"{minutes(first['train_seconds'])} + {minutes(run['train_seconds'])}"])
    if not rows:
        return "No runs yet."
    if len(rows) > 1:
        def spread(values):
            return (f"{statistics.mean(values):+.1f}% ± {statistics.stdev(values):.1f}")
        rows.append([f"mean of {len(rows)} seeds", "", "", "", " / ".join(spread([g[i] for g in gains["before"]])
                     for i in (0, 1)) + " -> " + " / ".join(spread([g[i] for g in gains["after"]]) for i in (0, 1)),
                     "", ""])
    return table(["phase 1 -> phase 2 (the ID trunk alone)", "dense only R@10 / N@10", "sparse only",
                  "COBRA mode", "COBRA over its own dense", "COBRA, the paper's BeamFusion (phase 2)",
                  "train min (phase 1 + 2)"], rows) + (
        f"\n\nValidation split, all {', '.join(f'{n:,}' for n in sorted(users))} users; COBRA mode is the trunks' joint fusion fixed before the runs (tau"
        " 0.3, psi 2, psi_h 16, G 50); ± is the standard deviation over seeds. Phase 2 trains only the ID trunk, so"
        " the dense mode must not move. Training minutes depend on how many jobs shared the 2 cores. " + r.sources())


def _fusion_label(setting: dict) -> str:
    """A grid point as a row label: the joint fusion's weights, or the mode of a reference point (e.g. dense)."""
    if setting.get("beam_fusion", "joint") != "joint" or setting.get("mode", "cobra") != "cobra":
        return f"{setting.get('mode', 'cobra')} mode" + (f", {setting['beam_fusion']} fusion"
                                                        if "beam_fusion" in setting else "")
    beams = f", M {setting['num_beams']}" if "num_beams" in setting else ""
    return (f"joint, tau {num(setting['beam_fusion_tau'])}, psi {num(setting['beam_fusion_psi'])}, psi_h "
            f"{num(setting['beam_fusion_dense_psi'])}, G {setting.get('dense_guided_ids', 0)}{beams}")


def block_research_fusion(r: Renderer, arg=None) -> str:
    """Validation-only fusion grids (`tune_fusion.py --no-test`) of research models; where a grid holds a dense-mode
    point, every point's gain over it on the same users."""
    grids = _runs(r, "research/fusion/*.json")
    if not grids:
        return "No fusion grids yet."
    rows = []
    for path, grid in grids:
        name = f"`{path.stem}`"
        points = [(p["setting"], p["validation"]) for p in grid["grid"]]
        points.append(({"mode": "cobra", "beam_fusion": "paper"}, grid["paper_validation"]))
        dense = next((v for s, v in points if s.get("mode") == "dense"), None)
        for setting, v in points:
            label = ("the paper's BeamFusion (tau 0.9, psi 16)" if setting.get("beam_fusion") == "paper"
                     else _fusion_label(setting))
            gain = "-" if dense is None or setting.get("mode") == "dense" else (
                f"{100 * (v['recall@10'] / dense['recall@10'] - 1):+.1f}% / "
                f"{100 * (v['ndcg@10'] / dense['ndcg@10'] - 1):+.1f}%")
            rows.append([name, label, f"{v['recall@10']:.4f}", f"{v['ndcg@10']:.4f}", gain, str(v["users"])])
    return table(["model", "fusion", "validation R@10", "N@10", "over dense mode, same users", "users (seeded sample)"],
                 rows) + "\n\n" + r.sources()


def block_decoding_speed(r: Renderer, arg=None) -> str:
    """Decoding speed of research checkpoints under several generate() settings (benchmarks/bench_decoding.py,
    research/decoding_speed/*.json), each against the first setting measured in the same process."""
    runs = _runs(r, "research/decoding_speed/*.json")
    if not runs:
        return "No decoding-speed measurements yet."
    rows = []
    for path, run in runs:
        for row in run["results"]:
            setting = ", ".join(f"{key} {value}" for key, value in row["setting"].items())
            rows.append([f"`{path.stem}`", setting, f"{row['users_per_second']:.1f}", f"{row['ratio']:.2f}x",
                         f"{row['same_top10_share']:.3f}"])
    return table(["model", "generate() setting", "users/s (median of rounds)", "against the first",
                  "users whose top 10 is unchanged"], rows) + (
        "\n\nValidation histories (a seeded sample), top 10, batches of 256; the settings take turns round after round"
        " in one process. Threads and what ran beside are in each file. " + r.sources())


def _pm(result: dict, metric: str) -> str:
    """'value ± se' when the result records a standard error."""
    value = result.get(metric)
    if value is None:
        return "n/a"
    se = result.get(f"se_{metric}")
    return f4(value) + (f" ± {float(se):.4f}" if se is not None else "")


def _command_and_expectations(run: dict, expected_as: str | None) -> list[str]:
    """The run's command in a bash block; its `--expected` text (often a page long) is shown as `$EXPECTED` there and
    once below it, folded, or as a pointer to the earlier run that carried the same text."""
    command = run.get("command", "(no command recorded)")
    expected = run.get("expected")
    # research_run.py writes shlex.quote's form; a hand-typed command may quote a plain word anyway
    forms = [f"--expected {q}" for q in (shlex.quote(expected), f"'{expected}'")] if expected else []
    quoted = next((form for form in forms if form in command), None)
    if not quoted:
        return ["```bash", command, "```"]
    lines = ["```bash", command.replace(quoted, '--expected "$EXPECTED"'), "```", ""]
    if expected_as:
        return lines + [f"`$EXPECTED` is the text of `{expected_as}` above (written before either ran)."]
    fence = "````" if "```" in expected else "```"
    return lines + ["<details><summary><code>$EXPECTED</code>: the expectations, written before the run</summary>", "",
                    f"{fence}text", expected.rstrip(), fence, "", "</details>"]


def render_research_run(run: dict, rel: str, expected_as: str | None = None) -> str:
    """The section of one research run: heading, command (and its expectations), a table per split, diagnostics.
    `expected_as` names an earlier run whose expectations were the same text."""
    name = run.get("name") or Path(rel).stem
    lines = [f"#### `{name}`", "", f"`benchmarks/results/{rel}`; training {minutes(run.get('train_seconds'))} minutes, "
             f"{run.get('global_step', 'n/a')} steps.", "", *_command_and_expectations(run, expected_as)]
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


# the ID-only unique-ID model (issue 21, goal 1): one glob per setting (epochs, dropout), seeds 0, 1, 2
ID_ONLY_RUNS = {"16": "ids_only_collab3x256d_e16", "32": "ids_only_collab3x256d_e32", "48": "ids_only_collab3x256d_e48",
                "32, dropout 0.2": "ids_only_collab3x256d_drop02_e32", "32, dropout 0.3": "ids_only_collab3x256d_drop03_e32",
                "32, dropout 0.2, constant lr 5e-4, best epoch": "ids_only_collab3x256d_drop02_const5e4_e32",
                "32, dropout 0.2, peak lr 3e-3": "ids_only_collab3x256d_drop02_lr3e3_e32",
                "32, dropout 0.2, loss over valid codes": "ids_only_collab3x256d_drop02_validloss_e32",
                "32, dropout 0.2, tied code heads": "ids_only_collab3x256d_drop02_tied_e32",
                "32, dropout 0.2, label smoothing 0.1": "ids_only_collab3x256d_drop02_ls01_e32",
                "32, dropout 0.2, item deletion 0.3": "ids_only_collab3x256d_drop02_del03_e32",
                "32, dropout 0.2, per-item output rows": "ids_only_collab3x256d_drop02_itemout_e32",
                # the text RQ-KMeans catalog (session 29: the collaborative one could not be rebuilt on a new machine)
                "32, text RQ-KMeans IDs": "ids_only_rqktext3x256d_e32",
                "32, text RQ-KMeans IDs, per-item output rows": "ids_only_rqktext3x256d_itemout_e32",
                "32, text RQ-KMeans IDs, tied per-item output rows": "ids_only_rqktext3x256d_itemout_tied_e32",
                "32, text RQ-KMeans IDs, per-item output rows, their weight decay 1.0":
                    "ids_only_rqktext3x256d_itemout_wd1_e32",
                "32, text RQ-KMeans IDs, per-item output rows, dropout 0.2": "ids_only_rqktext3x256d_itemout_drop02_e32",
                "32, text RQ-KMeans IDs, per-item output rows, dropout 0.2, their weight decay 1.0":
                    "ids_only_rqktext3x256d_itemout_drop02_wd1_e32"}
BEAM_WIDTH = "research/beam_width/*.json"


def block_ids_only_seeds(r: Renderer, arg=None) -> str:
    """The ID-only model per training length (and dropout): validation and test (sparse mode, all users) as mean ± sd over the
    seeds that have each, against TIGER's published test figures; then any wider-beam rerun of a seed."""
    tiger = r.load("paper.json")["datasets"]["beauty"]["TIGER"]
    rows = []
    for setting, stem in ID_ONLY_RUNS.items():
        names = sorted(p.stem for p in r.results.glob(f"research/{stem}*.json"))
        if not names:
            continue
        runs = [r.load(f"research/{n}.json") for n in names]
        val = [run["validation"]["sparse"] for run in runs]
        # the held-out target's first-code NLL (teacher forced) against the Trainer's last eval_loss of the runs
        # logged while the collator labelled every item of a validation row (it now labels the target alone)
        nll = [run["diagnostics"]["teacher_forced"]["nll_valid"][0] for run in runs if "diagnostics" in run]
        eval_loss = [[c["eval_loss"] for c in run["curve"] if "eval_loss" in c][-1] for run in runs
                     if "eval_loss_scope" not in run]
        tests = [r.load(f"research/test/{n}.json") for n in names if r.exists(f"research/test/{n}.json")]
        test_cell = (f"{mean_sd([t['recall@10'] for t in tests])} / {mean_sd([t['ndcg@10'] for t in tests])}"
                     f" ({len(tests)})") if tests else "-"
        rows.append([setting, str(len(names)),
                     f"{mean_sd([v['recall@10'] for v in val])} / {mean_sd([v['ndcg@10'] for v in val])}",
                     f"{sum(nll) / len(nll):.2f}" if nll else "-", f"{sum(eval_loss) / len(eval_loss):.3f} ({len(eval_loss)})" if eval_loss else "-", test_cell])
    rows.append(["TIGER (paper)", "-", "-", "-", "-", f"{f4(tiger['recall@10'])} / {f4(tiger['ndcg@10'])}"])
    text = table(["epochs (dropout 0.1, collaborative IDs, unless stated)", "seeds", "validation R@10 / N@10",
                  "held-out first-code NLL",
                  "Trainer's last eval_loss, history labelled too (seeds)", "test R@10 / N@10 (seeds read)"], rows)
    wide = sorted(p.relative_to(r.results).as_posix() for p in r.results.glob(BEAM_WIDTH))
    for rel in wide:
        run = r.load(rel)
        text += (f"\n\n`{run['model'].split('/')[-2]}` with M = {run['num_beams']} beams instead of 20, validation: "
                 f"{f4(run['recall@10'])} / {f4(run['ndcg@10'])}.")
    return text + ("\n\nSparse mode (ID only), all users, M = 20 beams unless stated; ± is the standard deviation over"
                   " seeds. " + r.sources())


# which parts the ID path shares with the dense one (issue 21, goal 2): decoder x item representation, one stem per
# cell on the RQ-KMeans text catalog, the joint recipe; seeds are the stem and stem_s1, stem_s2 where they exist
SHARING_CELLS = [("shared", "shared (the joint model)", "joint_hd2_rqk3x256d_e16"),
                 ("separate", "shared, detached", "trunk_shared_hd2_rqk3x256d_e16"),
                 ("shared", "separate", "trunk_shdec_hd2_rqk3x256d_e16"),
                 ("separate", "separate (the ID trunk)", "trunk_hd2_rqk3x256d_e16"),
                 ("separate, clipped on its own (reverted)", "separate (the ID trunk)", "trunk_clip2_hd2_rqk3x256d_e16"),
                 ("separate, 64 wide", "separate, 64 wide (the narrow trunk)", "trunk_w64_hd2_rqk3x256d_e16")]


def _gain(runs: list[dict], metric: str) -> str:
    """COBRA mode over the same run's dense mode, relative, as mean ± sd over seeds."""
    gains = [100 * (run["validation"]["cobra"][metric] / run["validation"]["dense"][metric] - 1) for run in runs]
    if len(gains) == 1:
        return f"{gains[0]:+.1f}%"
    return f"{statistics.mean(gains):+.1f}% ± {statistics.stdev(gains):.1f}"


def block_sharing_cells(r: Renderer, arg=None) -> str:
    """What the ID path shares with the dense path, cell by cell: validation (all users) per mode as mean ± sd over
    the seeds run, and COBRA mode's gain over the same model's dense mode."""
    rows = []
    for decoder, items, stem in SHARING_CELLS:
        names = [n for n in (stem, f"{stem}_s1", f"{stem}_s2") if r.exists(f"research/{n}.json")]
        if not names:
            continue
        runs = [r.load(f"research/{n}.json") for n in names]

        def modes(mode):
            return (f"{mean_sd([run['validation'][mode]['recall@10'] for run in runs])} / "
                    f"{mean_sd([run['validation'][mode]['ndcg@10'] for run in runs])}")

        rows.append([decoder, items, f"`{stem}`", str(len(runs)),
                     f"{statistics.mean(run['train_seconds'] for run in runs) / 60:.1f}",
                     modes("dense"), modes("sparse"), modes("cobra"),
                     f"{_gain(runs, 'recall@10')} / {_gain(runs, 'ndcg@10')}"])
    text = table(["decoder", "item representation of the ID path", "run", "seeds", "train min (mean)",
                  "dense only R@10 / N@10", "sparse only", "COBRA mode", "COBRA over its own dense, R@10 / N@10"], rows)
    return text + ("\n\nValidation split, all 22,363 users; ± is the standard deviation over seeds (a gain's over the"
                   " seeds' own gains). COBRA mode is each run's own joint fusion (tau 0.1 for the joint model, 0.3 for"
                   " the trunks, fixed before the runs). Training minutes depend on how many jobs shared the 2 cores."
                   " " + r.sources())


def _spread(stats: dict | None) -> str:
    return "-" if not stats else f"{stats['p50']:.2f} ({stats['p10']:.2f}-{stats['p90']:.2f})"


def block_train_logs(r: Renderer, arg=None) -> str:
    """The gradient clip in each summarised research run (research/train_logs/*.json, benchmarks/train_log_summary.py):
    the whole gradient's pre-clip norm, the ID trunk's own where logged, the share of logged steps clipped, and the
    sparse training loss."""
    rows = []
    for path, log in _runs(r, "research/train_logs/*.json"):
        norm, trunk = log.get("grad_norm"), log.get("id_trunk_grad_norm")
        clip = "per backbone" if log["per_backbone_clip"] else "global"
        clipped = f"{100 * norm['clipped_share']:.0f}%" if norm and "clipped_share" in norm else "-"
        trunk_clipped = f"{100 * trunk['clipped_share']:.0f}%" if trunk and "clipped_share" in trunk else "-"
        rows.append([f"`{log['name']}`", "yes" if log["id_trunk"] else "no", f"{clip}, {num(log['max_grad_norm'])}",
                     _spread(norm), clipped, _spread(trunk), trunk_clipped, _spread(log.get("sparse_loss"))])
    if not rows:
        return "No runs yet."
    text = table(["run", "ID trunk", "clip", "whole gradient's norm, median (10th-90th pct)", "logged steps clipped",
                  "the ID trunk's own norm", "its steps clipped", "sparse training loss"], rows)
    return text + ("\n\nOver the steps the Trainer logged (every 20th); a norm is one step's, before clipping. Under the"
                   " global clip an ID trunk's step is scaled by max_grad_norm over the whole norm, which the dense"
                   " losses set. " + r.sources())


def block_decoding_temperature(r: Renderer, arg=None) -> str:
    """Per-level temperatures in the beam search (research/decoding_temperature/*.json, temperature_probe.py): for
    each model, the teacher-forced NLL per level at T = 1 and fitted on half A, then sparse mode on half B per setting,
    with its paired difference from T = 1 (± one standard error)."""
    rows, notes = [], []
    for path, run in _runs(r, "research/decoding_temperature/*.json"):
        model = run["model"].rstrip("/").split("/")[-2]
        one = run["grid"].index(1.0)
        notes.append(f"`{model}`: held-out NLL per level at T = 1 " + ", ".join(f"{row[one]:.2f}" for row in run["nll_b"])
                     + "; at the T fitted on half A (" + ", ".join(f"{t:g}" for t in run["fitted_on_a"]) + ") "
                     + ", ".join(f"{row[run['grid'].index(t)]:.2f}" for row, t in zip(run["nll_b"], run["fitted_on_a"]))
                     + f" (half B, {run['users_b']:,} users).")
        for entry in run["beam"]:
            b, a = entry["B"], entry["A"]
            diff = ("-" if "diff_recall@10" not in b else
                    f"{b['diff_recall@10']:+.4f} ± {b['se_diff_recall@10']:.4f} / "
                    f"{b['diff_ndcg@10']:+.4f} ± {b['se_diff_ndcg@10']:.4f}")
            rows.append([f"`{model}`", ", ".join(f"{t:g}" for t in entry["temperatures"]),
                         f"{f4(b['recall@10'])} / {f4(b['ndcg@10'])}", diff,
                         f"{f4(a['recall@10'])} / {f4(a['ndcg@10'])}"])
    if not rows:
        return "No runs yet."
    text = table(["model", "T per level", "half B: R@10 / N@10", "half B: difference from T = 1 (paired)",
                  "half A (the T was fitted here): R@10 / N@10"], rows)
    return (text + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n\nValidation split, sparse mode (ID only), "
            "M = 20 beams; the users are split in two halves by a seeded permutation. " + r.sources())
