"""Measurements that are not recommendation quality: speed, scale, semantic IDs, load-time checks (docs/ROBUSTNESS.md)
and the data layer (README). Each reads one JSON written by its benchmarks/bench_*.py script.
"""

from __future__ import annotations

import json
import statistics

from .core import Renderer, table

def block_speed(r: Renderer, arg=None) -> str:
    """Training and generate() throughput against the measured matmul peak (bench_speed.py, speed.json)."""
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
    """generate() latency per user on a synthetic large catalog, per mode and batch (bench_scale.py,
    scale.json)."""
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
    """The semantic-ID catalogs per dataset: codes, distinct IDs, items per ID, time
    (bench_semantic_ids.py, semantic_ids.json)."""
    data = r.load("semantic_ids.json")["datasets"]
    rows = [[name, f"{d['items']:,}", " x ".join(map(str, d["codebook_sizes"])), f"{d['distinct_ids']:,}",
             f"{d['items_per_id_mean']:.2f}", str(d["items_per_id_max"]), f"{d['shared_id_fraction']:.0%}",
             f"{d['embed_seconds'] + d['quantizer_seconds']:.0f}"] for name, d in data.items()]
    return table(["data", "items", "codes", "distinct IDs", "items per ID", "max", "items sharing an ID",
                  "seconds (embed + RQ-VAE)"], rows) + "\n\n" + r.sources()


def block_load_checks(r: Renderer, arg=None) -> str:
    """What the load-time integrity checks cost per catalog size (bench_load_checks.py,
    load_checks.json); docs/ROBUSTNESS.md."""
    data = r.load("load_checks.json")
    rows = [[f"{x['num_items']:,}", f"{x['hashed_mb']:,.0f}", f"{x['load_without_checks_s']:.3f}",
             f"{x['load_with_checks_s']:.3f}", f"+{x['extra_s']:.2f}",
             f"{x['load_without_checks_then_read_every_tensor_s']:.3f}", f"{x['tensor_checks_alone_s']:.3f}"]
            for x in data["results"]]
    return (table(["catalog items", "MB hashed", "load, no checks (s)", "load with checks (s)", "extra (s)",
                   "no checks, then every tensor read once (s)", "tensor scan instead (old checkpoints, s)"], rows)
            + f"\n\n{data['what']} ({data['cpu']}, torch {data['torch']}, {data['torch_threads']} thread). " + r.sources())


def block_data_layer(r: Renderer, arg=None) -> str:
    """Reading and splitting a large interaction file, per data-layer path (bench_data_layer.py,
    data_layer.json)."""
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


MILLION = "scale_million.json"
MILLION_STEPS = (("synthesize", "write the synthetic catalog and log, fill the embedding cache"),
                 ("encoder_probe", "the real sentence encoder on a sample of the texts"),
                 ("prepare", "`cobra-hf prepare` (embeddings from the cache, quantizer, IDs, tokenizer)"),
                 ("train", "`cobra-hf train`, one epoch"),
                 ("evaluate", "`cobra-hf evaluate --all-modes` (every mode)"),
                 ("add_items", "`cobra-hf add-items` (new items through the real encoder)"),
                 ("recommend", "load the grown checkpoint, recommend in every mode"))


def _million(r: Renderer) -> dict | None:
    return r.load(MILLION) if (r.results / MILLION).is_file() else None


def block_scale_million(r: Renderer, arg=None) -> str:
    """The README's line on a million items (bench_million.py, scale_million.json): minutes per step, peak memory,
    and the serving cost once the catalog's vectors are built."""
    m = _million(r)
    if m is None:
        return "The end-to-end run at a million items (`benchmarks/bench_million.py`) has not been run yet."
    c, steps, emb = m["config"], m["steps"], m["embeddings"]
    minutes = lambda name: f"{steps[name]['seconds'] / 60:.0f} min"  # noqa: E731
    rec = m["outputs"].get("recommend", {})
    serving = ""
    if "first_call_seconds" in rec:
        modes = rec["modes"]
        serving = (f"; after a {rec['first_call_seconds']:.0f} s first call that encodes the catalog, COBRA "
                   f"{modes['cobra']['batch_ms_per_user']:.0f} ms and dense {modes['dense']['batch_ms_per_user']:.0f} "
                   f"ms per user (batches of {modes['cobra']['batch_users']})")
    threads = "one thread" if c["threads"] == 1 else f"{c['threads']} threads"
    return (f"A million items (synthetic; {c['users']:,} users; {threads}; {c.get('quantizer', 'rqvae')} IDs): "
            f"prepare {minutes('prepare')} from cached embeddings (the encoder: about "
            f"{emb['real_catalog_embedding_seconds_extrapolated'] / 3600:.1f} h here; on a GPU, `--device cuda`), "
            f"one epoch {minutes('train')}, add-items of {c['new_items']:,} {minutes('add_items')}, peak "
            f"{m['max_peak_rss_gb']:.1f} GB{serving}. EXPERIMENTS section 14. " + r.sources())


def block_scale_million_steps(r: Renderer, arg=None) -> str:
    """Every step of the million-item run: wall and CPU seconds, peak RSS (bench_million.py, scale_million.json)."""
    m = _million(r)
    if m is None:
        return "Not run yet: `python benchmarks/bench_million.py --work runs/million --threads 1 --quantizer rq-kmeans`."
    rows = [[name, what, f"{m['steps'][name]['seconds']:.0f}", f"{m['steps'][name]['cpu_seconds']:.0f}",
             f"{m['steps'][name]['peak_rss_gb']:.2f}"] for name, what in MILLION_STEPS if name in m["steps"]]
    c = m["config"]
    return (table(["step", "what", "seconds", "CPU seconds", "peak RSS GB"], rows)
            + f"\n\n{c['items']:,} synthetic items, {c['users']:,} users, {c['threads']} torch thread(s), "
            f"{c.get('quantizer', 'rqvae')} with {c['levels']} x {c['codebook_size']} codes and a de-duplication code. "
            + _serving(m) +
            f"Load average before / after: {m['machine'].get('load_average_before')} / "
            f"{m['machine'].get('load_average_after')}. {m['embeddings']['catalog']}. `{m['command']}`. "
            + r.sources())


def _serving(m: dict) -> str:
    """The recommend step's timings: the first call and each mode warm, per user (empty for older files)."""
    rec = m["outputs"].get("recommend", {})
    if "first_call_seconds" not in rec:
        return ""
    modes = ", ".join(f"{mode} {row['batch_ms_per_user']:.1f} ms" for mode, row in rec["modes"].items())
    return (f"Serving the grown catalog ({rec['catalog_items']:,} items): loading {rec['load_seconds']:.0f} s, the "
            f"first call {rec['first_call_seconds']:.0f} s (every item's vector and the ID index, once per weights), "
            f"then per user in a batch of {next(iter(rec['modes'].values()))['batch_users']}: {modes}. ")


def block_option_cost(r: Renderer, arg=None) -> str:
    """What a CobraConfig option costs (bench_option_cost.py, option_cost/*.json): the variant against its base,
    timed in turns in one process."""
    rows = []
    for path in sorted(r.results.glob("option_cost/*.json")):
        s = r.load(path.relative_to(r.results).as_posix())
        changed = ", ".join(f"{k} {json.dumps(v)}" for k, v in s["variant"].items() if s["base"].get(k) != v)
        median = {what: {name: statistics.median(s[what][name]) for name in ("base", "variant")}
                  for what in ("train_sequences_per_s", "generate_users_per_s")}
        rows.append([changed, f"{median['train_sequences_per_s']['variant']:.0f} / "
                     f"{median['train_sequences_per_s']['base']:.0f} = {s['train_speed_ratio']:.2f}x",
                     f"{median['generate_users_per_s']['variant']:.0f} / {median['generate_users_per_s']['base']:.0f}"
                     f" = {s['generate_speed_ratio']:.2f}x",
                     f"{s['training_state_mb']['variant']:.1f} / {s['training_state_mb']['base']:.1f}",
                     f"{s['items']:,} items, {s['threads']} threads, {s['rounds']} rounds, {s['num_beams']} beams"])
    if not rows:
        return "No option-cost measurements yet."
    return table(["option (variant)", "training sequences/s, variant / base", "generation users/s, variant / base",
                  "AdamW training state, MB", "setting"], rows) + (
        "\n\nMedians over rounds; the base and the variant take turns on the same batches in one process (the order "
        "alternates), so the ratio is what the option costs on this machine. Training state: weights, gradients and "
        "two AdamW moments. " + r.sources())
