"""One end-to-end run at catalog scale (default 1,000,000 items): the user's path, step by step, with the time and the
peak memory of each step.

Every step of the path is the real `cobra-hf` command run as a child process, so that its wall time, CPU time and
peak resident memory (the child's own `wait4` rusage, ru_maxrss) are measured on their own:

  synthesize     a synthetic dataset in the data-folder format (sequences.txt + items.jsonl): N items with short
                 texts from a small vocabulary (title words, a brand, a 3-level category path; real English word
                 pieces of the sentence encoder's vocabulary, so the item-text tokenizer sees a realistic text), a log
                 of U users whose items follow a Zipf-like popularity (exponent --zipf) with a per-user taste for one
                 category (half of their items), sequences of 5 to 50 items (mean about 10); plus --new-items items
                 (same generator, in no sequence) for add-items. Then the sentence-embedding cache of the catalog
                 texts is filled with SYNTHETIC vectors (below), so that prepare finds it and skips the encoder.
  encoder_probe  the real sentence encoder (all-MiniLM-L6-v2) on --probe-texts of the same texts: texts/s, from
                 which the real embedding time of the catalog is extrapolated (recorded as an extrapolation).
  prepare        cobra-hf prepare --levels 3 --codebook-size 256 --dedup-level --cache-dir ...  (embeddings from
                 the cache, RQ-VAE training or --quantizer rq-kmeans, IDs, tokenizer, item text tensors)
  train          cobra-hf train --recipe none + the joint recipe's model flags written out, one epoch (or
                 --max-steps), no validation, no intermediate checkpoints
  evaluate       cobra-hf evaluate --all-modes --max-users E: generate in every mode (cobra, dense, sparse,
                 no_fusion) for E test users, full ranking over the catalog
  add_items      cobra-hf add-items of --new-items new items; their texts go through the REAL encoder inside
                 add-items (the command has no embedding cache), so this step includes real embedding time
  recommend      the grown checkpoint loaded as the CLI loads it (cobra_hf.inference) and a few users' top 10 in every
                 mode (the lists are recorded: proof that each mode recommends, and whether new items come up)

The synthetic embeddings: each text's vector is a deterministic function of the text alone, the L2-normalised sum of
one Gaussian vector per lower-cased word (seeded by the word's CRC32), at the default encoder's width (384). Texts
that share words (category path, brand, topic words) get nearby vectors, so the RQ-VAE sees clustered data. The cache
file has the name and the key that `cobra_hf.semantic_ids.embeddings.embed_texts` computes for the texts that prepare
reads (they are made here by the package's own loader and `item_text`), so no package code is changed.

Metrics on this random synthetic data only show that the path works. Output: a JSON file (default
benchmarks/results/scale_million.json for the full-size run, WORK/scale_million.json for any smaller one) and a table.

usage (the full run as measured; do not start it beside other heavy jobs, it uses --threads cores):
  python benchmarks/bench_million.py --work runs/million --threads 1 --quantizer rq-kmeans --users 100000
a quick trial:
  python benchmarks/bench_million.py --items 20000 --users 5000 --threads 1 --work runs/million_20k

Cost, measured (benchmarks/results/scale_million.json; one thread, beside one other training): the full run with
--quantizer rq-kmeans --users 100000 took 26 min in all and 8.9 GB at its peak: prepare 10 min (RQ-KMeans), one epoch
10 min, evaluate 2 min, add-items and recommend under 1.5 min each. The work folder then holds about 9 GB. The
20,000-item trial takes under 3 min.

The work folder must be new or empty; --overwrite replaces what an earlier run of this script wrote there (a marker
file lists it) and nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # million_synthetic beside this file, also when loaded by path
try:
    from million_synthetic import make_items, make_log, synthetic_vectors, vocabulary, write_jsonl
finally:
    sys.path.pop(0)

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("cobra", "dense", "sparse", "no_fusion")
MARKER = ".bench_million.json"
# everything this script writes into the work folder (the only names --overwrite ever removes)
ENTRIES = ("data", "new_items.jsonl", "cache", "catalog", "model", "model_plus", "logs", "eval_metrics.json",
           "synthesize.json", "scale_million.json")
STEPS = ("synthesize", "encoder_probe", "prepare", "train", "evaluate", "add_items", "recommend")
FULL_ITEMS, DEFAULT_USERS = 1_000_000, 150_000
EMBED_MAX_LENGTH = 64  # prepare's default --embed-max-length, given explicitly (it is part of the cache key)
# the joint recipe's model settings and its decoding (src/cobra_hf/training/recipes.py), written out so that the
# run does not change when the recipe does
MODEL_FLAGS = ["--use_item_embeddings", "True", "--use_text_embeddings", "True", "--history_dense_loss_weight", "2.0",
               "--contrastive_temperature", "0.07", "--dense_logq_correction", "True", "--item_deletion", "0.2"]
GENERATION = {"beam_fusion": "joint", "dense_guided_ids": 50, "beam_fusion_tau": 0.1, "beam_fusion_psi": 2.0,
              "beam_fusion_dense_psi": 16.0}


def stage_synthesize(args) -> dict:
    """Writes WORK/data (sequences.txt, items.jsonl), WORK/new_items.jsonl and the embedding cache; returns a summary."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from cobra_hf.data.item_text import DEFAULT_DESCRIPTION_CHARS, item_text
    from cobra_hf.data.loading import load_items
    from cobra_hf.semantic_ids.embeddings import embedding_cache_key, resolve_encoder

    work = Path(args.work)
    rng = np.random.default_rng(args.seed)
    words = vocabulary(args.seed)
    num_leaves = int(min(960, max(4, args.items // 50)))
    started = time.perf_counter()
    items, leaf = make_items(rng, args.items, words, num_leaves, "i")
    new_items, _ = make_items(rng, args.new_items, words, num_leaves, "n")
    flat, lengths = make_log(rng, args.items, args.users, leaf, args.zipf, taste=0.5)
    data = work / "data"
    data.mkdir()
    write_jsonl(data / "items.jsonl", items)
    write_jsonl(work / "new_items.jsonl", new_items)
    ids = [row["item_id"] for row in items]
    with open(data / "sequences.txt", "w", encoding="utf-8") as handle:
        at = 0
        for user, n in enumerate(lengths.tolist()):
            handle.write(f"u{user:07d} " + " ".join(ids[j] for j in flat[at:at + n].tolist()) + "\n")
            at += n
    write_seconds = time.perf_counter() - started
    del items, ids

    # the texts exactly as prepare makes them: the package's loader, then item_text
    started = time.perf_counter()
    texts = [item_text(row, max_description_chars=DEFAULT_DESCRIPTION_CHARS)
             for row in load_items(data / "items.jsonl").to_list()]
    encoder = resolve_encoder(None)
    dim = int(json.loads((Path(encoder) / "config.json").read_text())["hidden_size"])
    vectors = synthetic_vectors(texts, dim)
    key = embedding_cache_key(texts, encoder, EMBED_MAX_LENGTH)
    cache = work / "cache"
    cache.mkdir()
    cache_file = cache / f"embeddings-{key[:24]}.safetensors"
    save_file({"embeddings": vectors.contiguous()}, str(cache_file))
    counts = np.bincount(flat, minlength=args.items)
    top = np.sort(counts)[::-1]
    return {
        "items": args.items, "new_items": args.new_items, "users": args.users, "categories": num_leaves,
        "interactions": int(lengths.sum()), "sequence_length": {"mean": round(float(lengths.mean()), 2),
                                                               "min": int(lengths.min()), "max": int(lengths.max())},
        "items_in_log": int((counts > 0).sum()), "top_item_share": round(float(top[0] / counts.sum()), 4),
        "top_1pct_items_share": round(float(top[:max(1, args.items // 100)].sum() / counts.sum()), 4),
        "text_words_mean": round(float(np.mean([len(t.split()) for t in texts[:10000]])), 1),
        "example_text": texts[0], "embedding_dim": dim, "cache_file": cache_file.name,
        "write_seconds": round(write_seconds, 1), "embedding_cache_seconds": round(time.perf_counter() - started, 1),
    }


def stage_encoder_probe(args) -> dict:
    """The real encoder's throughput on the first --probe-texts catalog texts (embed_texts, no cache)."""
    import torch

    from cobra_hf.data.item_text import item_text
    from cobra_hf.semantic_ids.embeddings import embed_texts, load_encoder

    torch.set_num_threads(args.threads)
    texts = []
    with open(Path(args.work) / "data" / "items.jsonl", encoding="utf-8") as handle:
        for line in handle:
            texts.append(item_text(json.loads(line)))
            if len(texts) == args.probe_texts:
                break
    load_encoder(None)  # the load is not part of the throughput
    started = time.perf_counter()
    embed_texts(texts, None, show_progress=False, max_length=EMBED_MAX_LENGTH)
    seconds = time.perf_counter() - started
    return {"texts": len(texts), "seconds": round(seconds, 2), "texts_per_second": round(len(texts) / seconds, 1),
            "threads": args.threads}


def stage_recommend(args) -> dict:
    """Loads the grown checkpoint as the CLI does; times the first call (it encodes every catalog item's vector and
    builds the ID index, once per weights), then each mode warm: a few users one by one through `recommend` (the
    lists are kept), and one batch of up to 256 users through `generate` (the serving cost per user)."""
    import torch

    from cobra_hf.inference import load_checkpoint, recommend

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    histories = []
    with open(work / "data" / "sequences.txt", encoding="utf-8") as handle:
        for line in handle:
            histories.append(line.split()[1:-1][-20:])
            if len(histories) == 256:
                break
    started = time.perf_counter()
    model, tokenizer = load_checkpoint(str(work / "model_plus"))
    out = {"load_seconds": round(time.perf_counter() - started, 2), "catalog_items": tokenizer.num_items, "modes": {}}
    with torch.no_grad():
        started = time.perf_counter()
        recommend(model, tokenizer, histories[:1], top_k=10, mode="cobra")
        out["first_call_seconds"] = round(time.perf_counter() - started, 2)
        batch = tokenizer(histories, return_tensors="pt")
        for mode in MODES:
            recommend(model, tokenizer, histories[:1], top_k=10, mode=mode)  # the mode's own indexes, if any
            started = time.perf_counter()
            rows = recommend(model, tokenizer, histories[:4], top_k=10, mode=mode)
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            model.generate(**batch, top_k=10, mode=mode)
            batched = time.perf_counter() - started
            out["modes"][mode] = {
                "users": len(rows), "ms_per_user": round(1000 * seconds / len(rows), 1),
                "batch_users": len(histories), "batch_ms_per_user": round(1000 * batched / len(histories), 2),
                "lists_of_10": sum(len(row) == 10 for row in rows),
                "first_user_top_10": [r["item_id"] for r in rows[0]],
                "new_items_recommended": sum(r["item_id"].startswith("n") for row in rows for r in row),
            }
    return out


STAGES = {"synthesize": stage_synthesize, "encoder_probe": stage_encoder_probe, "recommend": stage_recommend}


# ---------------------------------------------------------------------------------------------- measurement
def cobra_hf_command() -> list[str]:
    """The `cobra-hf` console script of this interpreter's environment (the user's command)."""
    beside = Path(sys.executable).with_name("cobra-hf")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("cobra-hf")
    return [found] if found else [sys.executable, "-m", "cobra_hf.cli.main"]


def run_step(name: str, argv: list[str], shown: list[str], logs: Path, env: dict) -> dict:
    """Runs argv as a child; its wall seconds, CPU seconds and peak RSS (wait4's rusage of that child alone)."""
    print(f"== {name}: {shlex.join(shown)}", flush=True)
    with open(logs / f"{name}.out", "wb") as out, open(logs / f"{name}.err", "wb") as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    peak_kb = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    record = {"command": shlex.join(shown), "seconds": round(seconds, 1),
              "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_gb": round(peak_kb / 2**20, 3),
              "returncode": child.returncode}
    print(f"   {record['seconds']} s, cpu {record['cpu_seconds']} s, peak RSS {record['peak_rss_gb']} GB", flush=True)
    if child.returncode != 0:
        tail = (logs / f"{name}.err").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"step {name} failed (exit {child.returncode}); see {logs / name}.err:\n{tail}")
    return record


def last_json_line(path: Path):
    for line in reversed(path.read_text(encoding="utf-8").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    return None


def prepare_work(work: Path, overwrite: bool) -> None:
    """A new or empty folder gets the marker; a folder this script wrote is emptied of its own entries only with
    --overwrite; any other non-empty folder is refused."""
    if work.exists() and not work.is_dir():
        raise SystemExit(f"--work {work} exists and is not a folder")
    if work.is_dir() and any(work.iterdir()):
        if not (work / MARKER).is_file():
            raise SystemExit(f"--work {work} is not empty and was not written by this script; choose another folder")
        if not overwrite:
            raise SystemExit(f"--work {work} holds an earlier run; pass --overwrite to replace it (only the entries "
                             f"this script writes are removed: {', '.join(ENTRIES)})")
        for name in ENTRIES:
            path = work / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text(json.dumps({"written_by": "benchmarks/bench_million.py", "entries": list(ENTRIES)}))


def machine() -> dict:
    import torch

    info = {"cpu_cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__}
    try:
        import transformers

        from cobra_hf import __version__

        info.update(transformers=transformers.__version__, cobra_hf=__version__)
    except ImportError:
        pass
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", cpu).group(1).strip()
        mem = Path("/proc/meminfo").read_text()
        info["memory_gb"] = round(int(re.search(r"MemTotal:\s*(\d+)", mem).group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    return info


def check_cache_hit(work: Path, cache_file: str) -> bool:
    """The catalog's text_embeddings are the synthetic vectors (prepare used the cache, not the encoder)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(work / "catalog" / "item_text.safetensors"), "pt") as handle:
        got = handle.get_slice("text_embeddings")[:16]
    with safe_open(str(work / "cache" / cache_file), "pt") as handle:
        want = handle.get_slice("embeddings")[:16]
    return bool(torch.equal(got, want))


def print_table(result: dict) -> None:
    print(f"\n{'step':<14} {'seconds':>9} {'cpu s':>9} {'peak RSS GB':>12}")
    for name, step in result["steps"].items():
        print(f"{name:<14} {step['seconds']:>9.1f} {step['cpu_seconds']:>9.1f} {step['peak_rss_gb']:>12.2f}")
    print(f"{'total':<14} {result['total_seconds']:>9.1f} {'':>9} {result['max_peak_rss_gb']:>12.2f} (max)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=FULL_ITEMS, help="catalog items (default 1,000,000)")
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help=f"users in the log (default {DEFAULT_USERS:,})")
    parser.add_argument("--new-items", type=int, default=10_000, help="items given to add-items (default 10,000)")
    parser.add_argument("--eval-users", type=int, default=1000, help="test users evaluated in every mode (default 1000)")
    parser.add_argument("--probe-texts", type=int, default=2000, help="texts for the real-encoder probe (0: skip it)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of every step (default: all cores)")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--quantizer", choices=("rqvae", "rq-kmeans"), default="rqvae",
                        help="prepare's --quantizer (default rqvae, prepare's own default)")
    parser.add_argument("--rqvae-epochs", type=int, default=None, help="RQ-VAE epochs (default: prepare's)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size (default 256)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop training after this many steps (default: one epoch)")
    parser.add_argument("--zipf", type=float, default=0.8, help="popularity exponent (default 0.8; not 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/million", help="work folder (default runs/million)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run of this script in --work")
    parser.add_argument("--output", default=None,
                        help="JSON file (default: benchmarks/results/scale_million.json for the full-size run, "
                        "WORK/scale_million.json otherwise)")
    parser.add_argument("--_stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._stage:
        print(json.dumps(STAGES[args._stage](args)))
        return 0
    if abs(args.zipf - 1.0) < 1e-6:
        parser.error("--zipf 1 is not supported (use 0.99 or 1.01)")
    full = args.items == FULL_ITEMS and args.users == DEFAULT_USERS and args.max_steps is None
    output = Path(args.output) if args.output else (RESULTS / "scale_million.json" if full else Path(args.work) / "scale_million.json")
    work = Path(args.work)
    prepare_work(work, args.overwrite)
    logs = work / "logs"
    logs.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    cli, shown_cli = cobra_hf_command(), ["cobra-hf"]
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--work", str(work), "--items", str(args.items), "--users", str(args.users), "--new-items",
              str(args.new_items), "--seed", str(args.seed), "--zipf", str(args.zipf), "--threads", str(args.threads),
              "--probe-texts", str(args.probe_texts)]
    load_before = os.getloadavg()
    started = time.perf_counter()
    steps, outputs = {}, {}

    def stage(name: str) -> dict:
        argv = [*me, *common, "--_stage", name]
        steps[name] = run_step(name, argv, ["python", "benchmarks/bench_million.py", *common, "--_stage", name], logs, env)
        return last_json_line(logs / f"{name}.out")

    def command(name: str, args_: list[str]) -> None:
        steps[name] = run_step(name, [*cli, *args_], [*shown_cli, *args_], logs, env)

    synth = stage("synthesize")
    outputs["synthesize"] = synth
    (work / "synthesize.json").write_text(json.dumps(synth, indent=1))
    probe = stage("encoder_probe") if args.probe_texts > 0 else None

    data, catalog, model, grown = work / "data", work / "catalog", work / "model", work / "model_plus"
    prepare = ["prepare", str(data), "--output", str(catalog), "--levels", str(args.levels), "--codebook-size",
               str(args.codebook_size), "--dedup-level", "--cache-dir", str(work / "cache"), "--embed-max-length",
               str(EMBED_MAX_LENGTH), "--seed", str(args.seed), "--quiet"]
    if args.rqvae_epochs is not None:
        prepare += ["--epochs", str(args.rqvae_epochs)]
    if args.quantizer != "rqvae":
        prepare += ["--quantizer", args.quantizer]
    command("prepare", prepare)
    stats = json.loads((catalog / "stats.json").read_text())
    outputs["prepare"] = {key: stats.get(key) for key in ("num_items", "num_users", "distinct_ids", "items_per_id_max",
                                                          "codes_used", "codebook_sizes", "text_vocab_size",
                                                          "text_tokens_per_item", "quantizer_final_loss", "timings_s")}
    cache_hit = check_cache_hit(work, synth["cache_file"])
    if not cache_hit:
        raise RuntimeError("prepare did not use the synthetic embedding cache (its text embeddings differ)")

    train = ["train", "--recipe", "none", "--catalog", str(catalog), "--output_dir", str(model),
             *MODEL_FLAGS, "--generation", json.dumps(GENERATION, separators=(",", ":")),
             "--learning_rate", "2e-3", "--per_device_train_batch_size", str(args.batch_size),
             "--num_train_epochs", "1", "--eval_strategy", "no", "--eval_users", "0", "--save_strategy", "no",
             "--logging_steps", "50", "--disable_tqdm", "True", "--report_to", "none", "--seed", str(args.seed)]
    if args.max_steps is not None:
        train += ["--max_steps", str(args.max_steps)]
    command("train", train)
    outputs["train"] = last_json_line(logs / "train.out")
    if outputs["train"] and outputs["train"].get("global_step"):
        outputs["train"]["seconds_per_step"] = round(outputs["train"]["train_seconds"] / outputs["train"]["global_step"], 3)

    metrics_file = work / "eval_metrics.json"
    command("evaluate", ["evaluate", str(model), "--data", str(data), "--split", "test", "--all-modes",
                         "--max-users", str(args.eval_users), "--output", str(metrics_file)])
    outputs["evaluate"] = {row["mode"]: {key: row[key] for key in ("recall@5", "ndcg@5", "recall@10", "ndcg@10",
                                                                   "users", "seconds", "users_per_second") if key in row}
                           for row in json.loads(metrics_file.read_text())}

    command("add_items", ["add-items", str(model), str(work / "new_items.jsonl"), "--output", str(grown)])
    added = (logs / "add_items.out").read_text().splitlines()
    outputs["add_items"] = {"summary": added[0] if added else None}
    outputs["recommend"] = stage("recommend")

    total = time.perf_counter() - started
    disk = sum(f.stat().st_size for f in work.rglob("*") if f.is_file() and not f.is_symlink())
    peak = max(step["peak_rss_gb"] for step in steps.values())
    result = {
        "benchmark": "one end-to-end run at catalog scale (benchmarks/bench_million.py)",
        "command": shlex.join(["python", "benchmarks/bench_million.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": {"items": args.items, "users": args.users, "new_items": args.new_items, "eval_users": args.eval_users,
                   "threads": args.threads, "levels": args.levels, "codebook_size": args.codebook_size,
                   "dedup_level": True, "quantizer": args.quantizer, "rqvae_epochs": "prepare's default" if args.rqvae_epochs is None else args.rqvae_epochs,
                   "batch_size": args.batch_size, "max_steps": args.max_steps, "zipf": args.zipf, "seed": args.seed,
                   "model_flags": MODEL_FLAGS, "generation": GENERATION, "embed_max_length": EMBED_MAX_LENGTH},
        "embeddings": {
            "catalog": "synthetic-cached: the embedding cache was pre-filled with a deterministic function of each "
                       "text (L2-normalised sum of per-word Gaussian vectors); prepare read it and ran no encoder",
            "cache_hit": cache_hit,
            "new_items": "real encoder (all-MiniLM-L6-v2) inside add-items; note that the quantizer was fitted on the "
                         "synthetic vectors, so these items' IDs only show that the path works",
            "real_encoder_probe": probe,
            "real_catalog_embedding_seconds_extrapolated": (
                round(args.items / probe["texts_per_second"]) if probe else None),
            "extrapolation": "items / probe texts_per_second, same threads and texts of the same kind (an estimate "
                             "of what prepare's embedding step would take without the cache; not measured)",
        },
        "steps": steps,
        "outputs": outputs,
        "total_seconds": round(total, 1),
        "max_peak_rss_gb": peak,
        "every_step_under_24_gb": peak < 24,
        "work_folder_gb": round(disk / 2**30, 2),
        "machine": {**machine(), "threads": args.threads, "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "note": "metrics on random synthetic data only show that the path works; seconds are wall time on this "
                "machine with the load average given (other jobs slow every step)",
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    print(f"written {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
