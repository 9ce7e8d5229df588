"""Cold start: items the model never saw in training, added afterwards with `cobra_hf.cold_start.add_items`.

1. prepare the dataset with a fraction of the items held out of the catalog (`holdout_fraction`, seeded);
2. train a model on the rest (the held-out items are dropped from the training sequences);
3. add the held-out items to the trained checkpoint (IDs from the saved quantizer, text from the compact vocabulary);
4. on the TEST cases whose target is a new item, Recall@5/10 and NDCG for mode "cobra" (ID beams + dense vector,
   BeamFusion) and mode "sparse" (ID beams only; items sharing an ID are ranked in catalog order, so a new item comes
   after the old items of its ID), and for a TIGER-like setting: a second catalog with TIGER's collision code
   (unique IDs), a model trained with the sparse loss only, decoded in "sparse" mode. Also how often a new item is
   recommended at all, in those cases and in all test cases, and how many new items share their ID with an old one.
Writes JSON (default benchmarks/results/cold_start.json).

Cost here (2 cores, default model: hidden 128, batch 256): about 4 s per training step with --threads 2; embedding
the catalog texts takes a few minutes the first time (cached in --cache-dir). Measured: --max-steps 300 took 39 min
for both models (benchmarks/results/cold_start.json):
  python benchmarks/bench_cold_start.py --data ../shared/data/beauty --work runs/cold_start --cache-dir runs/cache \
      --threads 2 --max-steps 300          # --no-tiger halves it
smoke test (~6 min, numbers meaningless): --tiny --max-steps 5 --output /tmp/cold_start_tiny.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from cobra_hf.cold_start import add_items
from cobra_hf.evaluation import evaluate_model
from cobra_hf.inference import check_compatible, load_checkpoint
from cobra_hf.semantic_ids.catalog import HELDOUT_FILE, build_catalog
from cobra_hf.training.datasets import index_splits
from cobra_hf.training.train import parse_args, run_training

RESULTS = Path(__file__).resolve().parent / "results" / "cold_start.json"


@contextmanager
def recording(model):
    """Keeps every `item_indices` that model.generate returns while inside (evaluate_model calls model.generate)."""
    seen: list[torch.Tensor] = []
    original = model.generate

    def generate(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out.item_indices.cpu())
        return out

    model.generate = generate
    try:
        yield seen
    finally:
        del model.generate  # back to the class method


def prepare(args, name: str, dedup: bool) -> Path:
    catalog = Path(args.work) / (name + ("_tiny" if args.tiny else ""))  # a smoke test's catalog is never reused
    if (catalog / "item_catalog.json").is_file() and not args.fresh:
        return catalog
    settings = dict(holdout_fraction=args.holdout_fraction, dedup_level=dedup, seed=args.seed, cache_dir=args.cache_dir,
                    overwrite=True, show_progress=not args.quiet)
    if args.tiny:
        settings.update(rqvae_epochs=3)
    return build_catalog(args.data, catalog, **settings)


def train(args, catalog: Path, name: str, extra: list[str]) -> tuple[Path, dict]:
    output = Path(args.work) / (name + ("_tiny" if args.tiny else ""))
    argv = ["--recipe", "none", "--catalog", str(catalog), "--output_dir", str(output), "--overwrite", "True", "--max_steps", str(args.max_steps),
            "--eval_strategy", "no", "--save_strategy", "no", "--eval_users", "0", "--use_cpu", "True",
            "--logging_steps", str(max(1, args.max_steps // 10)), "--disable_tqdm", str(args.quiet)]
    if args.tiny:
        argv += ["--hidden_size", "32", "--num_attention_heads", "2", "--intermediate_size", "64", "--max_train_sequences", "2000"]
    argv += extra + shlex.split(args.train_args)
    start = time.perf_counter()
    summary = run_training(*parse_args(argv))
    return output, {"global_step": summary["global_step"], "train_loss": summary["train_loss"],
                    "seconds": round(time.perf_counter() - start, 1), "train_args": argv[2:]}


def grow(checkpoint: Path, catalog: Path) -> tuple:
    """Loads the trained checkpoint and adds the held-out items; returns (model, tokenizer, new indices, info)."""
    model, tokenizer = load_checkpoint(str(checkpoint))
    heldout = [json.loads(line) for line in (catalog / HELDOUT_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
    old = tokenizer.num_items
    start = time.perf_counter()
    new = add_items(model, tokenizer, heldout, checkpoint)
    seconds = time.perf_counter() - start
    check_compatible(model, tokenizer)
    codes = tokenizer.item_codes
    old_ids = {tuple(row) for row in codes[:old].tolist()}
    sharing = sum(tuple(row) in old_ids for row in codes[old:].tolist())
    info = {"old_items": old, "new_items": len(new), "add_seconds": round(seconds, 2),
            "new_items_sharing_an_id_with_an_old_item": sharing,
            "new_items_with_unk_text_tokens": int((model.item_text_ids[old:] == 2).any(1).sum())}
    return model, tokenizer, set(new), info


def measure(args, model, tokenizer, new: set[int], mode: str) -> dict:
    splits = index_splits(args.data, tokenizer, max_history=model.config.max_history)  # histories may hold new items
    test = splits["test"]
    histories, targets = list(test["history_index"]), list(test["target_index"])
    cold = [i for i, t in enumerate(targets) if t in new]
    if args.max_users and len(cold) > args.max_users:
        cold = cold[: args.max_users]
    if not cold:
        raise ValueError("No test case has a held-out target: raise --holdout-fraction.")
    kwargs = dict(mode=mode, num_beams=args.num_beams, show_progress=not args.quiet, batch_size=args.batch_size)
    with recording(model) as seen:
        metrics = evaluate_model(model, tokenizer, [histories[i] for i in cold], [targets[i] for i in cold], **kwargs)
    ranked = torch.cat(seen) if seen else torch.zeros(0, 10, dtype=torch.long)
    is_new = torch.isin(ranked, torch.tensor(sorted(new)))
    result = {"cold_target_cases": len(cold), **{k: metrics[k] for k in metrics if "@" in k},
              "seconds": metrics["seconds"],
              "cases_with_a_new_item_in_top10": round(float(is_new.any(1).float().mean()), 4) if len(cold) else None,
              "distinct_new_items_recommended": int(ranked[is_new].unique().numel())}
    # how often new items show up at all, over (a sample of) every test case
    sample = list(range(0, len(targets), max(1, len(targets) // args.all_users)))[: args.all_users]
    with recording(model) as seen:
        overall = evaluate_model(model, tokenizer, [histories[i] for i in sample], [targets[i] for i in sample], **kwargs)
    ranked = torch.cat(seen)
    is_new = torch.isin(ranked, torch.tensor(sorted(new)))
    result["all_test_sample"] = {"cases": len(sample), "recall@10": overall["recall@10"],
                                 "cases_with_a_new_item_in_top10": round(float(is_new.any(1).float().mean()), 4),
                                 "new_item_share_of_slots": round(float(is_new.float().mean()), 4)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/beauty")
    parser.add_argument("--work", default="runs/cold_start", help="catalogs and checkpoints go here")
    parser.add_argument("--cache-dir", default="runs/cache", help="sentence-embedding cache")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--holdout-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=50, help="training steps per model (batch 256)")
    parser.add_argument("--train-args", default="", help="more `cobra-hf train` flags, e.g. '--hidden_size 64'")
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-users", type=int, default=0, help="cap on cold-target test cases (0 = all)")
    parser.add_argument("--all-users", type=int, default=1000, help="test cases sampled for the overall counts")
    parser.add_argument("--no-tiger", action="store_true", help="skip the TIGER-like model (half the time)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="rebuild the catalogs even if present")
    parser.add_argument("--tiny", action="store_true", help="smoke test: small model, few sequences, few steps")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tiny:
        args.max_users = args.max_users or 200
        args.all_users = min(args.all_users, 200)
    started = time.perf_counter()
    report = {"data": args.data, "holdout_fraction": args.holdout_fraction, "max_steps": args.max_steps,
              "num_beams": args.num_beams, "tiny": args.tiny, "threads": args.threads, "torch": torch.__version__,
              "machine": platform.machine(), "settings": {}}

    catalog = prepare(args, "catalog", dedup=False)
    checkpoint, report["settings"]["cobra_training"] = train(args, catalog, "model", [])
    model, tokenizer, new, report["cobra_catalog"] = grow(checkpoint, catalog)
    report["cobra"] = measure(args, model, tokenizer, new, "cobra")
    report["sparse"] = measure(args, model, tokenizer, new, "sparse")
    if not args.no_tiger:
        catalog = prepare(args, "catalog_tiger", dedup=True)
        checkpoint, report["settings"]["tiger_training"] = train(args, catalog, "model_tiger", ["--dense_loss_weight", "0"])
        model, tokenizer, new, report["tiger_catalog"] = grow(checkpoint, catalog)
        report["tiger_like_sparse"] = measure(args, model, tokenizer, new, "sparse")
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    report["notes"] = (
        "cold-target cases: TEST users (leave-one-out) whose last item was held out of the catalog and added after "
        "training. Before add_items these items are not in the catalog at all (Recall 0 by construction). "
        "'sparse' reaches a new item only through its semantic ID; with shared IDs it ranks after the old items of "
        "that ID. 'tiger_like_sparse': catalog with TIGER's collision code (unique IDs), sparse loss only, sparse "
        "decoding; a new item's collision code may be one the model never saw as a target."
    )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in report if k in ("cobra", "sparse", "tiger_like_sparse")}, indent=1))


if __name__ == "__main__":
    main()
