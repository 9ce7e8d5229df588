"""Continue training an existing COBRA checkpoint on new interaction sequences (same catalog).

    python examples/finetune.py --model runs/sci/model --data data/scientific-new --output runs/sci/model-ft

The dataset folder holds `sequences.txt` (`USER ITEM ITEM ...`, oldest first); items that the checkpoint's catalog
does not know are dropped from the sequences (add them first with `cobra-hf add-items`).
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import TrainingArguments

from cobra_hf.hub import save_checkpoint
from cobra_hf.inference import load_checkpoint
from cobra_hf.training import CobraDataCollator, CobraTrainer, index_splits


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub repo id to start from")
    parser.add_argument("--data", required=True, help="dataset folder with the new sequences")
    parser.add_argument("--output", required=True, help="where to save the fine-tuned checkpoint")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="lower than from scratch: keep what it knows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model, tokenizer = load_checkpoint(args.model)  # also checks that model and tokenizer share a catalog
    splits = index_splits(args.data, tokenizer, max_history=model.config.max_history)
    training_args = TrainingArguments(
        output_dir=args.output, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, save_strategy="no", report_to="none", seed=args.seed,
        logging_steps=max(1, args.max_steps // 10), disable_tqdm=True,
        dataloader_pin_memory=torch.accelerator.is_available(),  # pinning only helps copies to an accelerator
    )
    trainer = CobraTrainer(
        model=model, args=training_args, train_dataset=splits["train"], processing_class=tokenizer,
        data_collator=CobraDataCollator(tokenizer, max_items=model.config.max_history + 1),
    )
    result = trainer.train()
    model.eval()
    # a complete checkpoint: the model keeps the catalog/ assets (what add-items needs) of the checkpoint it came from
    save_checkpoint(model, tokenizer, args.output,
                    training_info={"finetuned_from": args.model, "steps": result.global_step,
                                   "learning_rate": args.learning_rate, "final_loss": result.training_loss})
    summary = {"output": args.output, "steps": result.global_step, "train_loss": round(result.training_loss, 4)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
