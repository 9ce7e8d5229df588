"""Leave-one-out splits of a dataset folder, turned into catalog indices for the model."""

from __future__ import annotations

import datasets
import torch

from ..data import leave_one_out, load_dataset_folder
from ..tokenization_cobra import CobraTokenizer


TRAIN_FEATURES = datasets.Features({"item_index": datasets.List(datasets.Value("int64")), "length": datasets.Value("int64")})
EVAL_FEATURES = datasets.Features({
    "user_id": datasets.Value("string"),
    "history_index": datasets.List(datasets.Value("int64")),
    "target_index": datasets.Value("int64"),
    "length": datasets.Value("int64"),
})


def index_splits(
    data_dir: str,
    tokenizer: CobraTokenizer,
    max_history: int = 20,
    unknown_items: str = "drop",
    require_train: bool = True,
) -> datasets.DatasetDict:
    """Leave-one-out splits with items as catalog indices.

    train rows: `item_index` list[int] (one training sequence of up to max_history + 1 items), `length` int (its
    item count: the Trainer's `--train_sampling_strategy group_by_length` batches similar lengths together, so a batch
    is padded to about its own rows' length instead of nearly always max_history + 1);
    validation/test rows: `user_id`, `history_index` list[int], `target_index` int, `length` int (history + target).
    Items that are not in the catalog (e.g. items held out for a cold-start study) are dropped from histories
    (unknown_items="drop") or raise (unknown_items="error"); rows whose target is unknown, or whose history keeps no
    known item, are left out. What was left out is counted in the result's `coverage` attribute, per evaluation
    split (see `split_coverage`), so that an evaluation can say so or refuse.

    With `require_train` (training), data that gives no training sequence at all is a ValueError naming
    sequences.txt, instead of an empty training set that fails deep inside the Trainer.
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

    # explicit features: a split that keeps no row still has its columns (not the input's)
    train = splits["train"].map(convert_train, batched=True, remove_columns=splits["train"].column_names,
                                features=TRAIN_FEATURES)
    train = train.filter(lambda row: row["length"] >= 2)
    if require_train and len(train) == 0:
        raise ValueError(_no_training_message(data_dir, sequences["item_ids"]))
    result = {"train": train}
    for name in ("validation", "test"):
        result[name] = splits[name].map(convert_eval, batched=True, remove_columns=splits[name].column_names,
                                        features=EVAL_FEATURES)
    result = datasets.DatasetDict(result)
    result.coverage = {name: split_coverage(splits[name], lookup) for name in ("validation", "test")}
    return result


def split_coverage(split: datasets.Dataset, lookup: dict[str, int]) -> dict[str, int]:
    """What the catalog (`lookup`: item id -> index) does not know in a leave-one-out split (rows history, target):
    {"users_in_split", "users_skipped" (unknown target, or no known item in the history: not evaluated),
    "unknown_targets", "unknown_items" (distinct item ids of the histories and targets not in the catalog)}."""
    unknown: set[str] = set()
    skipped = unknown_targets = 0
    for history, target in zip(split["history"], split["target"]):
        unknown.update(item for item in (*history, target) if item not in lookup)
        target_unknown = target not in lookup
        unknown_targets += target_unknown
        skipped += target_unknown or not any(item in lookup for item in history)
    return {"users_in_split": len(split), "users_skipped": skipped, "unknown_targets": unknown_targets,
            "unknown_items": len(unknown)}


def _no_training_message(data_dir: str, sequences: list[list[str]]) -> str:
    longest = max(map(len, sequences), default=0)
    return (
        f"{data_dir}/sequences.txt: no training sequence: leave-one-out keeps each user's last two items for "
        "validation and test, so a user needs at least 4 items (known to the catalog) to give one; "
        f"{len(sequences)} users here, the longest with {longest} items"
    )


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
