"""One prepared GPU check (issue 22): sentence-embedding throughput fp32 / fp16 / bf16, Beauty training throughput
(bf16 autocast, the default on a CUDA GPU, and fp32) against the CPU of the same machine, and the GPU model's
validation Recall/NDCG on 2,000 users in every mode beside the CPU run it copies, all in $OUT/gpu_check.json.

Two steps, because the device machine reaches nothing outside the copy of this repository it is sent.

1. Here, on the CPU machine, once (a few seconds with --catalog; without it a Beauty catalog is prepared here, minutes):

    .venv/bin/python benchmarks/gpu_check.py stage --data ../shared/data/beauty --catalog runs/bench/beauty_fast/catalog

   writes .gpu_check/ (built aside and swapped in; an existing folder that this script did not write is refused;
   added to .git/info/exclude; about 45 MB, within the 64 MiB a device call carries); gpu_stage.py does the staging:
   data/ (sequences.txt, items.jsonl), catalog/ (a copy; runs/bench/beauty_fast/catalog is the catalog of the CPU
   reference run, benchmarks/results/beauty_cpu_logq_del02_hd2), encoder/ (the sentence encoder's config and
   tokenizer, not its 90 MB of weights: the embedding throughput is measured on the same architecture with random
   weights), token_rows.safetensors (the encoder's word-embedding rows of the catalog's text vocabulary, what
   `cobra-hf train`'s init_text_embeddings reads), site/ (datasets, dill and multiprocess copied from this
   environment: the device image lacks them; its own copies win where it has them) and stage.json.

2. On the device, through the tool `run` (its python3 holds a CUDA torch, transformers and accelerate; nothing is
   installed; about 3 to 6 minutes: no optional phase starts after --max-minutes, default 6):

    run(command="set -o pipefail; PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py run --stage .gpu_check --out $OUT 2>&1 | tee $OUT/gpu_check.log",
        carry=[".gpu_check"], timeout_s=540)

   Phases, each written to gpu_check.json as soon as it ends (an error is recorded and the next phase runs):
   device (names, versions, bf16 support) -> embedding (5,000 Beauty item texts through the encoder on the GPU in
   fp32, fp16, bf16, and 1,000 on the CPU) -> training gpu_bf16 (the CPU reference's flags, `--recipe none` and its
   model, training and generation settings, stopped after --steps 300 of its 32-epoch schedule: validation at
   every epoch on 2,000 users, dense and sparse too) -> evaluation (the saved GPU model on 2,000 validation users in
   every mode on the GPU, COBRA mode also under bf16 autocast and on the CPU) -> training cpu_fp32 (the same flags
   on the CPU, --cpu-steps 40, for steps/s) -> training gpu_fp32 (`--bf16 False`, the same steps and validations:
   bf16 against fp32 on one machine).

Here, `python benchmarks/gpu_check.py run --tiny --out DIR` runs every phase on a generated tiny dataset, on the CPU
(bf16 through CPU autocast) when there is no GPU: what tests/test_gpu_paths.py runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # the device runs from a bare copy of the repository: no install
    sys.path.insert(0, str(ROOT / "src"))

from gpu_stage import STAGE_DIR, StageRefused, stage, tiny_stage  # noqa: E402 (after the path above)

REFERENCE_DIR = "benchmarks/results/beauty_cpu_logq_del02_hd2"  # the CPU run of the README's recipe rows
TINY_MODEL = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "max_history": 8}


# ------------------------------------------------------------------------------------------------ run (device)
class Report:
    """gpu_check.json, rewritten after every phase."""

    def __init__(self, path: Path, max_minutes: float):
        self.path, self.start, self.limit = path, time.perf_counter(), max_minutes * 60
        self.data: dict = {"script": "benchmarks/gpu_check.py", "errors": {}, "skipped": []}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def phase(self, name: str, function, *args, optional: bool = True):
        if optional and self.elapsed() > self.limit:
            self.data["skipped"].append(f"{name}: {self.elapsed():.0f}s had passed (--max-minutes)")
            self.save()
            return None
        print(f"[gpu_check] {name} ({self.elapsed():.0f}s)", flush=True)
        started = time.perf_counter()
        try:
            result = function(*args)
        except Exception:  # recorded, and the next phase runs: one broken phase must not cost the whole lease
            self.data["errors"][name] = traceback.format_exc()[-3000:]
            print(self.data["errors"][name], file=sys.stderr, flush=True)
            result = None
        self.data.setdefault("phase_seconds", {})[name] = round(time.perf_counter() - started, 1)
        self.save()
        return result

    def save(self) -> None:
        self.data["seconds"] = round(self.elapsed(), 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def device_info(device: str) -> dict:
    import accelerate
    import torch
    import transformers

    info = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=properties.name, gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                    capability=list(torch.cuda.get_device_capability(0)), bf16=torch.cuda.is_bf16_supported(),
                    multiprocessors=properties.multi_processor_count)
    try:
        import datasets

        info["datasets"] = datasets.__version__
    except Exception as err:  # the training phases need it: say why they will fail
        info["datasets"] = f"missing: {err}"
    return info


def _item_texts(stage_dir: Path, count: int) -> list[str]:
    from cobra_hf.data.item_text import item_text

    texts = []
    with open(stage_dir / "data" / "items.jsonl", encoding="utf-8") as handle:
        for line in handle:
            texts.append(item_text(json.loads(line)))
            if len(texts) == count:
                break
    return texts


def embedding_phase(stage_dir: Path, device: str, texts: int, cpu_texts: int) -> dict:
    """Texts/s of embed_texts on `device` per dtype and on the CPU in fp32, the encoder loaded once per dtype."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from cobra_hf.semantic_ids import embeddings as emb

    source = stage_dir / "encoder"
    pretrained = any(source.glob("*.safetensors"))
    folder = source
    if not pretrained:  # the encoder's architecture with random weights: the same work per text as the trained one
        folder = Path(tempfile.mkdtemp(prefix="gpu_check_encoder_"))
        torch.manual_seed(0)
        AutoModel.from_config(AutoConfig.from_pretrained(source)).save_pretrained(folder)
        AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    loaded: dict = {}
    real_load = emb.load_encoder

    def load_once(path, device="cpu", dtype="fp32"):
        key = (str(path), device, dtype)
        if key not in loaded:
            loaded[key] = real_load(path, device=device, dtype=dtype)
        return loaded[key]

    emb.load_encoder = load_once
    sample = _item_texts(stage_dir, texts)
    result = {"texts": len(sample), "max_length": 64, "encoder": "pretrained" if pretrained else
              "random weights (the staged encoder's architecture)", "runs": []}
    vectors = {}
    plans = [(device, "fp32"), (device, "fp16")]
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        plans.append((device, "bf16"))
    if device != "cpu":
        plans.append(("cpu", "fp32"))
    try:
        for where, dtype in plans:
            batch = sample if where == device else sample[:cpu_texts]
            emb.embed_texts(batch[:64], folder, device=where, dtype=dtype, show_progress=False)  # load + warm-up
            _sync()
            start = time.perf_counter()
            out = emb.embed_texts(batch, folder, device=where, dtype=dtype, show_progress=False)
            _sync()
            seconds = time.perf_counter() - start
            vectors[(where, dtype)] = out
            result["runs"].append({"device": where, "dtype": dtype, "texts": len(batch),
                                   "batch_size": emb.default_batch_size(where), "seconds": round(seconds, 3),
                                   "texts_per_second": round(len(batch) / seconds, 1)})
    finally:
        emb.load_encoder = real_load
        if folder != source:
            shutil.rmtree(folder, ignore_errors=True)
    reference = vectors[(device, "fp32")]
    for (where, dtype), out in vectors.items():
        if where == device and dtype != "fp32":
            cos = (out * reference).sum(-1)
            result[f"{dtype}_vs_fp32_cosine"] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
    by = {(run["device"], run["dtype"]): run["texts_per_second"] for run in result["runs"]}
    if ("cpu", "fp32") in by and device != "cpu":
        result["speedup_over_cpu_fp32"] = {dtype: round(by[(device, dtype)] / by[("cpu", "fp32")], 1)
                                           for where, dtype in by if where == device}
    return result


def reference_flags() -> tuple[list[str], dict]:
    """The flags benchmarks/run_benchmark.py gave `cobra-hf train` for the CPU reference run, and its record."""
    results = json.loads((ROOT / REFERENCE_DIR / "results.json").read_text())
    flags = ["--recipe", "none", "--generation", json.dumps(results["generation"]), "--eval_modes", "dense,sparse"]
    for name, value in results["model_args"].items():
        flags += [f"--{name}", str(value)]
    return flags + shlex.split(results["train_args"]), results


def reference_record() -> dict:
    summary = json.loads((ROOT / REFERENCE_DIR / "training_summary.json").read_text())
    results = json.loads((ROOT / REFERENCE_DIR / "results.json").read_text())
    evals = [{key: value for key, value in entry.items() if key == "step" or "recall@10" in key or "ndcg@10" in key}
             for entry in summary["log_history"] if "eval_recall@10" in entry]
    return {"folder": REFERENCE_DIR, "catalog_hash": results["config"]["catalog_hash"],
            "train_args": results["train_args"], "global_step": summary["global_step"],
            "train_seconds_with_validations": summary["train_seconds"],
            "steps_per_second_with_validations": round(summary["global_step"] / summary["train_seconds"], 2),
            "evals": evals[:6], "note": "a 2-core CPU of an earlier session; validation on 2,000 seeded users"}


def _stage_token_rows(stage_dir: Path) -> None:
    """Training's init_text_embeddings reads the staged rows (the encoder's weights did not travel)."""
    from safetensors.torch import load_file

    from cobra_hf.training import model_builder

    rows_file = stage_dir / "token_rows.safetensors"
    if rows_file.is_file():
        rows = load_file(str(rows_file))["rows"]
        model_builder.encoder_token_rows = lambda encoder_path, source_token_ids: rows


def training_phase(stage_dir: Path, out: Path, name: str, device: str, steps: int, extra: list[str],
                   tiny: bool) -> dict:
    """`cobra-hf train` with the reference flags, stopped after `steps` steps; steps/s without the validations."""
    import torch
    from transformers import TrainerCallback

    from cobra_hf.training.train import parse_args, run_training

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends: list[tuple[int, float]] = []
            self.evaluated: set[int] = set()

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            self.ends.append((state.global_step, time.perf_counter()))
            if state.global_step >= steps:
                control.should_training_stop = True

        def on_evaluate(self, args, state, control, **kwargs):
            self.evaluated.add(state.global_step)

    flags, _ = reference_flags()
    flags = ["--catalog", str(stage_dir / "catalog"), "--data", str(stage_dir / "data"),
             "--output_dir", str(out / name), "--overwrite", "True", *flags, "--save_strategy", "no",
             "--log_level", "warning", "--disable_tqdm", "True"]
    if tiny:
        flags += [f"--{key}={value}" for key, value in TINY_MODEL.items()]
        flags += ["--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--eval_users", "10"]
    if device == "cpu":
        flags += ["--use_cpu", "True"]
    cobra_args, training_args = parse_args(flags + extra)
    clock = Clock()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    summary = run_training(cobra_args, training_args, callbacks=[clock])
    intervals = [(step, end - clock.ends[i - 1][1]) for i, (step, end) in enumerate(clock.ends) if i
                 and clock.ends[i - 1][0] not in clock.evaluated]
    warm = intervals[min(10, len(intervals) // 4):]  # the first steps pay for CUDA/cuBLAS start-up
    record = {"device": summary["device"], "precision": summary["precision"], "steps": summary["global_step"],
              "train_sequences": summary["train_sequences"], "train_seconds": summary["train_seconds"],
              "batch_size": training_args.per_device_train_batch_size, "flags": " ".join(flags + extra),
              "steps_per_second": round(len(warm) / sum(s for _, s in warm), 2) if warm else None,
              "step_seconds_median": round(sorted(s for _, s in warm)[len(warm) // 2], 4) if warm else None,
              "losses": [{"step": e["step"], "loss": round(e["loss"], 4)} for e in summary["log_history"] if "loss" in e],
              "evals": _merged_evals(summary["log_history"]), "output_dir": str(out / name)}
    if torch.cuda.is_available() and record["device"].startswith("cuda"):
        record["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return record


def _merged_evals(history: list[dict]) -> list[dict]:
    merged: dict[int, dict] = {}
    for entry in history:
        if any(key.startswith("eval_") for key in entry):
            merged.setdefault(entry["step"], {"step": entry["step"]}).update(
                {key: round(value, 5) for key, value in entry.items() if key.startswith("eval_")
                 and ("@" in key or key == "eval_loss")})
    return list(merged.values())


def evaluation_phase(stage_dir: Path, model_dir: str, device: str, users: int, cpu_users: int) -> dict:
    """The saved model on `users` validation users in every mode on `device`; COBRA mode under bf16 autocast and on
    the CPU (cpu_users) too."""
    import torch

    from cobra_hf.configuration_cobra import GENERATION_MODES
    from cobra_hf.evaluation import evaluate_split
    from cobra_hf.inference import load_checkpoint
    from cobra_hf.training.datasets import index_splits

    model, tokenizer = load_checkpoint(model_dir, device=device)
    validation = index_splits(str(stage_dir / "data"), tokenizer, max_history=model.config.max_history)["validation"]
    result = {"device": device, "users": min(users, len(validation)), "modes": {}}

    def measure(model, mode, count, **settings):
        kept = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "seconds", "users_per_second")
        evaluate_split(model, tokenizer, validation, max_users=min(count, 64), show_progress=False, mode=mode,
                       **settings)  # warm-up: the catalog vectors and index are built here
        _sync()
        metrics = evaluate_split(model, tokenizer, validation, max_users=count, show_progress=False, mode=mode, **settings)
        return {key: metrics[key] for key in kept if key in metrics}

    for mode in GENERATION_MODES:
        if mode == "dense" and not model.config.history_dense_loss_weight:
            continue
        result["modes"][mode] = measure(model, mode, users)
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            result["cobra_bf16_autocast"] = measure(model, "cobra", users)
    if device != "cpu":
        cpu_model, _ = load_checkpoint(model_dir, device="cpu", tokenizer=tokenizer)
        result["cobra_cpu"] = measure(cpu_model, "cobra", cpu_users)
        result["cobra_speedup_over_cpu"] = round(result["modes"]["cobra"]["users_per_second"]
                                                 / result["cobra_cpu"]["users_per_second"], 1)
    return result


def run(args) -> int:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out / "gpu_check.json", args.max_minutes)
    report.data["args"] = vars(args)
    if args.tiny:
        scratch = Path(tempfile.mkdtemp(prefix="gpu_check_tiny_"))
        stage_dir = tiny_stage(scratch)
        sizes = dict(texts=40, cpu_texts=20, steps=8, cpu_steps=3, users=10, cpu_users=5)
    else:
        stage_dir = Path(args.stage)
        if not (stage_dir / "stage.json").is_file():
            print(f"gpu_check: {stage_dir}/stage.json is missing: run `benchmarks/gpu_check.py stage` here first.",
                  file=sys.stderr)
            return 1
        sizes = dict(texts=args.embed_texts, cpu_texts=args.cpu_embed_texts, steps=args.steps,
                     cpu_steps=args.cpu_steps, users=args.eval_users, cpu_users=args.cpu_eval_users)
        site = stage_dir / "site"
        if site.is_dir():
            sys.path.append(str(site))  # after the image's own packages: its copies win where it has them
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.tiny:
        print("gpu_check: no CUDA GPU here; run it on the device machine, or with --tiny here.", file=sys.stderr)
        return 1
    # the checkpoints are written beside OUT, not into it (a device call brings back 8 files of OUT)
    models = out / "models" if args.keep_models else Path(tempfile.mkdtemp(prefix="gpu_check_models_"))
    report.data["stage"] = json.loads((stage_dir / "stage.json").read_text())
    report.data["device"] = report.phase("device", device_info, device, optional=False)
    report.data["embedding"] = report.phase("embedding", embedding_phase, stage_dir, device, sizes["texts"],
                                            sizes["cpu_texts"])
    _stage_token_rows(stage_dir)
    reference = report.data["reference_cpu_run"] = report.phase("reference", reference_record, optional=False)
    if reference:  # the GPU curve is comparable step for step only on the reference's own catalog
        reference["same_catalog_as_staged"] = reference["catalog_hash"] == report.data["stage"]["catalog_hash"]
    training = report.data["training"] = {}
    # on a GPU the default precision is bf16 (cobra-hf train's choice); with --tiny on a CPU, bf16 is asked for
    bf16 = [] if device != "cpu" else ["--bf16", "True"]
    training["gpu_bf16"] = report.phase("training gpu_bf16", training_phase, stage_dir, models, "gpu_bf16", device,
                                        sizes["steps"], bf16, args.tiny, optional=False)
    if training["gpu_bf16"]:
        report.data["evaluation"] = report.phase("evaluation", evaluation_phase, stage_dir,
                                                 training["gpu_bf16"]["output_dir"], device, sizes["users"],
                                                 sizes["cpu_users"])
    cpu_flags = ["--eval_strategy", "no", "--eval_users", "0"]
    training["cpu_fp32"] = report.phase("training cpu_fp32", training_phase, stage_dir, models, "cpu_fp32", "cpu",
                                        sizes["cpu_steps"], cpu_flags, args.tiny)
    training["gpu_fp32"] = report.phase("training gpu_fp32", training_phase, stage_dir, models, "gpu_fp32", device,
                                        sizes["steps"], ["--bf16", "False"], args.tiny)
    rates = {name: (record or {}).get("steps_per_second") for name, record in training.items()}
    if rates.get("gpu_bf16") and rates.get("cpu_fp32"):
        training["speedup_gpu_bf16_over_cpu_fp32"] = round(rates["gpu_bf16"] / rates["cpu_fp32"], 1)
    if rates.get("gpu_bf16") and rates.get("gpu_fp32"):
        training["speedup_bf16_over_fp32"] = round(rates["gpu_bf16"] / rates["gpu_fp32"], 2)
    if not args.keep_models:
        shutil.rmtree(models, ignore_errors=True)
    if args.tiny:
        shutil.rmtree(stage_dir.parent, ignore_errors=True)
    report.save()
    print(json.dumps({key: report.data.get(key) for key in ("seconds", "skipped", "errors")}, default=str)[:2000])
    print(f"[gpu_check] wrote {report.path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    staging = commands.add_parser("stage", help="here: gather what the device run needs into --stage-dir")
    staging.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beauty"))
    staging.add_argument("--catalog", default=None, help="copy this catalog (default: prepare one here, minutes)")
    staging.add_argument("--encoder", default=None, help="the catalog's sentence encoder folder (default: its own)")
    staging.add_argument("--cache-dir", default=None, help="sentence-embedding cache when a catalog is prepared")
    staging.add_argument("--stage-dir", default=str(ROOT / STAGE_DIR))
    staging.add_argument("--no-site", action="store_true", help="do not copy datasets/dill/multiprocess")
    running = commands.add_parser("run", help="on the device: every phase, into OUT/gpu_check.json")
    running.add_argument("--stage", default=STAGE_DIR)
    running.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"))
    running.add_argument("--tiny", action="store_true", help="a generated tiny dataset, CPU allowed (the test)")
    running.add_argument("--embed-texts", type=int, default=5000)
    running.add_argument("--cpu-embed-texts", type=int, default=1000)
    running.add_argument("--steps", type=int, default=300, help="training steps of each GPU run")
    running.add_argument("--cpu-steps", type=int, default=40, help="training steps of the CPU run")
    running.add_argument("--eval-users", type=int, default=2000)
    running.add_argument("--cpu-eval-users", type=int, default=200)
    running.add_argument("--max-minutes", type=float, default=6.0, help="no optional phase starts after this")
    running.add_argument("--keep-models", action="store_true", help="keep the trained checkpoints in OUT/models")
    args = parser.parse_args(argv)
    if args.command == "stage":
        try:
            record = stage(Path(args.data), Path(args.stage_dir), None if args.catalog is None else Path(args.catalog),
                           args.encoder, args.cache_dir, site=not args.no_site)
        except StageRefused as err:
            print(f"gpu_check: {err}", file=sys.stderr)
            return 1
        print(json.dumps(record, indent=1))
        repo = sum(path.stat().st_size for path in ROOT.rglob("*") if path.is_file() and ".git" not in path.parts
                   and ".venv" not in path.parts and "runs" not in path.parts and STAGE_DIR not in path.parts)
        print(f"staged {record['megabytes']} MB (the rest of the checkout: about {repo / 2**20:.0f} MB; a device call "
              "carries 64 MiB in all). On the device: see this script's docstring for the run command.")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
