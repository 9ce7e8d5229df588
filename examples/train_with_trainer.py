"""Train COBRA from Python with the transformers Trainer, then save a complete checkpoint (with its model card).

    cobra-hf prepare data/scientific --output runs/sci/catalog        # semantic IDs + tokenizer
    python examples/train_with_trainer.py --catalog runs/sci/catalog --data data/scientific \\
        --output runs/sci/model --max-steps 2000

The same as `cobra-hf train`, written out so you can change any piece.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import TrainingArguments

from cobra_hf.catalog_files import check_replaceable
from cobra_hf.evaluation import evaluate_split
from cobra_hf.hub import save_checkpoint
from cobra_hf.safe_io import check_not_inputs
from cobra_hf.training import CobraDataCollator, CobraTrainer, build_model, index_splits


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True, help="catalog folder made by `cobra-hf prepare`")
    parser.add_argument("--data", required=True, help="dataset folder (sequences.txt + items.jsonl)")
    parser.add_argument("--output", required=True, help="where to save the checkpoint")
    parser.add_argument("--max-steps", type=int, default=200, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--eval-users", type=int, default=500, help="validation users for Recall/NDCG at the end")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # the final save writes catalog/ and the tokenizer files into --output: refused now, not after the training
    check_not_inputs(args.output, {"the --catalog folder": args.catalog, "the --data folder": args.data}, "--output")
    check_replaceable(Path(args.output) / "catalog")

    # 1. A new model sized for the catalog (item codes and texts are stored inside it) and its tokenizer.
    model, tokenizer = build_model(args.catalog, hidden_size=args.hidden_size, seed=args.seed)
    # 2. Leave-one-out splits as catalog indices: train rows are item sequences, validation rows (history, target).
    splits = index_splits(args.data, tokenizer, max_history=model.config.max_history)
    # 3. The Trainer; the collator turns index sequences into model inputs with labels.
    training_args = TrainingArguments(
        output_dir=args.output, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.01,
        logging_steps=max(1, args.max_steps // 10), save_strategy="no", report_to="none", seed=args.seed,
        disable_tqdm=True, dataloader_pin_memory=torch.accelerator.is_available(),  # pinning only helps an accelerator
    )
    trainer = CobraTrainer(
        model=model, args=training_args, train_dataset=splits["train"], processing_class=tokenizer,
        data_collator=CobraDataCollator(tokenizer, max_items=model.config.max_history + 1),
    )
    result = trainer.train()
    # 4. Validation Recall@K / NDCG@K (full ranking), then save weights + tokenizer + code + card in one folder, with
    #    the catalog/ assets (quantizer, text vocabulary) that `cobra-hf add-items` needs: the model keeps them.
    model.eval()
    metrics = evaluate_split(model, tokenizer, splits["validation"], max_users=args.eval_users, show_progress=False)
    save_checkpoint(
        model, tokenizer, args.output,
        training_info={"steps": result.global_step, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                       "num_train_sequences": len(splits["train"]), "final_loss": result.training_loss},
        eval_results={**metrics, "split": "validation"},
        dataset_name=args.data.rstrip("/").split("/")[-1],
    )
    summary = {"output": args.output, "steps": result.global_step, "train_loss": round(result.training_loss, 4),
               **{key: value for key, value in metrics.items() if "@" in key}}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
