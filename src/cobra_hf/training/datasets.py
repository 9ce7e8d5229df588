"""Leave-one-out splits of a dataset folder, turned into catalog indices for the model."""

from __future__ import annotations

import datasets
import torch

from ..data import leave_one_out, load_dataset_folder
from ..tokenization_cobra import CobraTokenizer


def index_splits(
    data_dir: str,
    tokenizer: CobraTokenizer,
    max_history: int = 20,
    unknown_items: str = "drop",
) -> datasets.DatasetDict:
    """Leave-one-out splits with items as catalog indices.

    train rows: `item_index` list[int] (one training sequence of up to max_history + 1 items), `length` int (its
    item count: the Trainer's `--train_sampling_strategy group_by_length` batches similar lengths together, so a batch
    is padded to about its own rows' length instead of nearly always max_history + 1);
    validation/test rows: `user_id`, `history_index` list[int], `target_index` int, `length` int (history + target).
    Items that are not in the catalog (e.g. items held out for a cold-start study) are dropped from histories
    (unknown_items="drop") or raise (unknown_items="error"); rows whose target is unknown are left out.
    """
    sequences, _ = load_dataset_folder(data_dir, drop_unknown=True)
    splits = leave_one_out(sequences, max_history=max_history)
    lookup = tokenizer.item_to_index

    def convert_train(batch):
        out = {"item_index": [], "length": []}
        for items in batch["item_ids"]:
            index = tokenizer.items_to_indices(items, unknown_items)
            out["item_index"].append(index)
            out["length"].append(len(index))
        return out

    def convert_eval(batch):
        out = {"user_id": [], "history_index": [], "target_index": [], "length": []}
        for user, history, target in zip(batch["user_id"], batch["history"], batch["target"]):
            if target not in lookup:
                continue
            index = tokenizer.items_to_indices(history, unknown_items)
            if not index:
                continue
            out["user_id"].append(user)
            out["history_index"].append(index)
            out["target_index"].append(lookup[target])
            out["length"].append(len(index) + 1)
        return out

    train = splits["train"].map(convert_train, batched=True, remove_columns=splits["train"].column_names)
    train = train.filter(lambda row: row["length"] >= 2)
    result = {"train": train}
    for name in ("validation", "test"):
        result[name] = splits[name].map(convert_eval, batched=True, remove_columns=splits[name].column_names)
    return datasets.DatasetDict(result)


def validation_sample(split: datasets.Dataset, users: int | None, seed: int = 0) -> datasets.Dataset:
    """`users` rows of a validation/test split drawn at random (seeded; kept in split order), or all of them when
    users is None or not smaller than the split. Users come in the dataset's order, which follows when they joined:
    on Beauty the first 2,000 validation users score about half the Recall@10 of a random 2,000, so a prefix is
    no estimate of the whole split."""
    if users is None or users >= len(split):
        return split
    rows = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:users].sort().values
    return split.select(rows.tolist())


def item_slot_counts(train_split: datasets.Dataset, num_items: int) -> torch.Tensor:
    """How many item slots of the training sequences (`item_index` rows of `index_splits`) each catalog item fills,
    Long[num_items]: the popularity that in-batch negatives are drawn by (for `dense_logq_correction`)."""
    rows = train_split["item_index"]
    flat = torch.tensor([item for row in rows for item in row], dtype=torch.long)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= num_items):
        raise ValueError(f"training sequences hold item indices outside the catalog of {num_items} items.")
    return torch.bincount(flat, minlength=num_items)
