"""Hyper-parameter sweep for COBRA on a prepared catalog, with a plain training loop (no Trainer, no datasets),
so it runs on a bare accelerator machine that has only torch + transformers.

Step 1 (here, CPU): freeze the leave-one-out splits and the pretrained text-token initialisation:
  python benchmarks/sweep.py prepare --catalog runs/beauty/catalog --data ../shared/data/beauty --out runs/sweep
Step 2 (anywhere): train one configuration of a JSON list, logging validation Recall/NDCG per epoch:
  python benchmarks/sweep.py run --catalog runs/beauty/catalog --frozen runs/sweep --configs benchmarks/sweep_configs.json \
      --index 0 --device cuda --out runs/sweep/results
Each run writes <name>.json: the config, seconds and validation metrics per epoch, and test metrics per mode.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

from cobra_hf.configuration_cobra import GENERATION_MODES
from cobra_hf.evaluation import evaluate_model
from cobra_hf.training.collator import CobraDataCollator
from cobra_hf.training.model_builder import build_model, load_catalog, pretrained_token_embeddings


def prepare(args) -> None:
    from cobra_hf.training.datasets import index_splits

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, text, prepare_args = load_catalog(args.catalog)
    splits = index_splits(args.data, tokenizer, max_history=tokenizer.max_history)
    frozen = {
        "train": list(splits["train"]["item_index"]),
        "validation": {"history": list(splits["validation"]["history_index"]), "target": list(splits["validation"]["target_index"])},
        "test": {"history": list(splits["test"]["history_index"]), "target": list(splits["test"]["target_index"])},
    }
    torch.save(frozen, out / "splits.pt")
    for width in args.widths:
        rows = pretrained_token_embeddings(prepare_args.get("encoder"), text["source_token_ids"], width)
        if rows is not None:
            torch.save(rows, out / f"text_init_{width}.pt")
    print(f"frozen splits: {len(frozen['train'])} train sequences, {len(frozen['test']['target'])} test users -> {out}")


def run(args) -> None:
    config = json.loads(Path(args.configs).read_text())[args.index]
    name = config["name"]
    torch.manual_seed(config.get("seed", 0))
    random.seed(config.get("seed", 0))
    frozen = torch.load(Path(args.frozen) / "splits.pt")
    model, tokenizer = build_model(args.catalog, init_text_embeddings=False, seed=config.get("seed", 0), **config["model"])
    init = Path(args.frozen) / f"text_init_{model.config.hidden_size}.pt"
    if init.is_file():
        with torch.no_grad():
            model.item_encoder.token_embed.weight.copy_(torch.load(init))
            model.item_encoder.token_embed.weight[0].zero_()
    device = torch.device(args.device)
    model.to(device)
    collator = CobraDataCollator(tokenizer, max_items=model.config.max_history + 1)
    train = frozen["train"][: config.get("max_train")]
    batch_size, epochs = config.get("batch_size", 256), config.get("epochs", 20)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total = steps_per_epoch * epochs
    decay, no_decay = [], []
    for pname, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in pname or "embed" in pname else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.get("weight_decay", 0.01)}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.get("lr", 1e-3),
    )
    warmup = int(config.get("warmup", 0.05) * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    val_users = config.get("val_users", args.val_users)
    val_h, val_t = frozen["validation"]["history"][:val_users], frozen["validation"]["target"][:val_users]
    log = {"name": name, "config": config, "device": str(device), "epochs": []}
    start = time.perf_counter()
    rng = random.Random(config.get("seed", 0))
    for epoch in range(1, epochs + 1):
        model.train()
        order = list(range(len(train)))
        rng.shuffle(order)
        losses = []
        for begin in range(0, len(order), batch_size):
            batch = collator([{"item_index": train[i]} for i in order[begin : begin + batch_size]])
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        entry = {"epoch": epoch, "seconds": round(time.perf_counter() - start, 1), "train_loss": round(sum(losses) / len(losses), 4)}
        if epoch % config.get("eval_every", 2) == 0 or epoch == epochs:
            metrics = evaluate_model(model, tokenizer, val_h, val_t, batch_size=512, show_progress=False, **config.get("generate", {}))
            entry.update({k: round(v, 4) for k, v in metrics.items() if "@" in k})
        log["epochs"].append(entry)
        print(json.dumps({"name": name, **entry}), flush=True)
    model.eval()
    log["test"] = {}
    for mode in GENERATION_MODES:
        if mode == "dense" and not model.config.history_dense_loss_weight:
            continue
        metrics = evaluate_model(model, tokenizer, frozen["test"]["history"], frozen["test"]["target"], batch_size=512,
                                 show_progress=False, mode=mode, **config.get("generate", {}))
        log["test"][mode] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}
        print(json.dumps({"name": name, "test_mode": mode, **log["test"][mode]}), flush=True)
    # BeamFusion settings on validation (the paper's grid points)
    log["fusion_grid"] = []
    for tau, psi, n in config.get("fusion_grid", []):
        metrics = evaluate_model(model, tokenizer, val_h, val_t, batch_size=512, show_progress=False,
                                 beam_fusion_tau=tau, beam_fusion_psi=psi, num_candidates=n)
        log["fusion_grid"].append({"tau": tau, "psi": psi, "num_candidates": n, **{k: round(v, 4) for k, v in metrics.items() if "@" in k}})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(log, indent=1))
    if args.save_model:
        model.cpu().save_pretrained(out / f"{name}_model")
        tokenizer.save_pretrained(out / f"{name}_model")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--catalog", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    r = sub.add_parser("run")
    r.add_argument("--catalog", required=True)
    r.add_argument("--frozen", required=True)
    r.add_argument("--configs", required=True)
    r.add_argument("--index", type=int, required=True)
    r.add_argument("--device", default="cpu")
    r.add_argument("--out", required=True)
    r.add_argument("--val-users", type=int, default=5000)
    r.add_argument("--save-model", action="store_true")
    args = parser.parse_args(argv)
    prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
