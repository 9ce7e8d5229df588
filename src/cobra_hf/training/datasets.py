"""Leave-one-out splits of a dataset folder, turned into catalog indices for the model."""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..data import leave_one_out, load_dataset_folder
from ..data.columnar import list_column
from ..data.loading import arrow_dataset
from ..tokenization_cobra import CobraTokenizer


TRAIN_FEATURES = datasets.Features({"item_index": datasets.List(datasets.Value("int64"))})
EVAL_FEATURES = datasets.Features({
    "user_id": datasets.Value("string"),
    "history_index": datasets.List(datasets.Value("int64")),
    "target_index": datasets.Value("int64"),
})


class _Catalog:
    """Item id -> catalog index for whole Arrow columns at once (pyarrow's hash lookup instead of a dict per id)."""

    def __init__(self, lookup: dict[str, int]):
        self.ids = pa.array(list(lookup), pa.string())
        self.index = np.fromiter(lookup.values(), dtype=np.int64, count=len(lookup))

    def __call__(self, values: pa.Array) -> np.ndarray:
        """Catalog index of each id, -1 where the catalog does not know it."""
        position = pc.index_in(values, value_set=self.ids).fill_null(-1).to_numpy(zero_copy_only=False)
        return np.where(position >= 0, self.index[position], -1) if len(self.index) else np.full(len(values), -1)


def _known_lists(index: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lists of catalog indices with the unknown (-1) dropped: (flat indices, counts per row)."""
    known = index >= 0
    cum = np.concatenate([[0], np.cumsum(known, dtype=np.int64)])
    return index[known], cum[offsets[1:]] - cum[offsets[:-1]]


def _index_lists(flat: np.ndarray, counts: np.ndarray) -> pa.ListArray:
    offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int32)  # < 2**31 item slots
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.int64()))


def _first_unknown_row(index: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> int | None:
    """The first of `rows` whose list holds an id the catalog does not know."""
    cum = np.concatenate([[0], np.cumsum(index < 0, dtype=np.int64)])
    unknown = (cum[offsets[1:]] - cum[offsets[:-1]])[rows] > 0
    return int(rows[np.argmax(unknown)]) if unknown.any() else None


def index_splits(
    data_dir: str,
    tokenizer: CobraTokenizer,
    max_history: int = 20,
    unknown_items: str = "drop",
    require_train: bool = True,
) -> datasets.DatasetDict:
    """Leave-one-out splits with items as catalog indices.

    train rows: `item_index` list[int] (one training sequence of up to max_history + 1 items);
    validation/test rows: `user_id`, `history_index` list[int], `target_index` int.
    Items that are not in the catalog (e.g. items held out for a cold-start study) are dropped from histories
    (unknown_items="drop") or raise (unknown_items="error"); rows whose target is unknown, or whose history keeps no
    known item, are left out. What was left out is counted in the result's `coverage` attribute, per evaluation
    split (see `split_coverage`), so that an evaluation can say so or refuse.

    With `require_train` (training), data that gives no training sequence at all is a ValueError naming
    sequences.txt, instead of an empty training set that fails deep inside the Trainer.
    Ids become indices column by column (one hash lookup per split), not row by row.
    """
    sequences, _ = load_dataset_folder(data_dir, drop_unknown=True)
    splits = leave_one_out(sequences, max_history=max_history)
    lookup = tokenizer.item_to_index
    catalog = _Catalog(lookup)

    values, offsets = list_column(splits["train"].data.table.column("item_ids"))
    index = catalog(values)
    if unknown_items == "error":
        row = _first_unknown_row(index, offsets, np.arange(len(offsets) - 1))
        if row is not None:  # the tokenizer's own KeyError, naming the ids
            tokenizer.items_to_indices(values.slice(offsets[row], offsets[row + 1] - offsets[row]).to_pylist(), "error")
    flat, counts = _known_lists(index, offsets)
    rows = counts >= 2  # a training sequence needs one transition
    flat = flat[np.repeat(rows, counts)]
    train = arrow_dataset(pa.table({"item_index": _index_lists(flat, counts[rows])}),
                          TRAIN_FEATURES)
    if require_train and len(train) == 0:
        raise ValueError(_no_training_message(data_dir, sequences))
    result = {"train": train}
    for name in ("validation", "test"):
        table = splits[name].data.table
        values, offsets = list_column(table.column("history"))
        index = catalog(values)
        target = catalog(table.column("target").combine_chunks())
        if unknown_items == "error":
            row = _first_unknown_row(index, offsets, np.flatnonzero(target >= 0))
            if row is not None:
                tokenizer.items_to_indices(values.slice(offsets[row], offsets[row + 1] - offsets[row]).to_pylist(), "error")
        flat, counts = _known_lists(index, offsets)
        rows = (target >= 0) & (counts > 0)
        flat = flat[np.repeat(rows, counts)]
        result[name] = arrow_dataset(pa.table({
            "user_id": table.column("user_id").combine_chunks().filter(pa.array(rows)),
            "history_index": _index_lists(flat, counts[rows]),
            "target_index": target[rows],
        }), EVAL_FEATURES)
    result = datasets.DatasetDict(result)
    result.coverage = {name: split_coverage(splits[name], lookup) for name in ("validation", "test")}
    result.unknown_items, result.data_items = unknown_item_ids(sequences, lookup)
    return result


def unknown_item_ids(sequences: datasets.Dataset, lookup: dict[str, int]) -> tuple[list[str], int]:
    """The distinct item ids of the sequences (column `item_ids`) that the catalog (`lookup`) lacks, sorted, and
    how many distinct item ids the sequences hold."""
    ids = pc.unique(pc.list_flatten(sequences.data.table.column("item_ids"))).to_pylist()
    return sorted(item for item in ids if item not in lookup), len(ids)


def split_coverage(split: datasets.Dataset, lookup: dict[str, int]) -> dict[str, int]:
    """What the catalog (`lookup`: item id -> index) does not know in a leave-one-out split (rows history, target):
    {"users_in_split", "users_skipped" (unknown target, or no known item in the history: not evaluated),
    "unknown_targets", "unknown_items" (distinct item ids of the histories and targets not in the catalog)}."""
    table = split.with_format("arrow")[:]
    values, offsets = list_column(table.column("history"))
    targets = table.column("target").combine_chunks()
    catalog = _Catalog(lookup)
    index, target = catalog(values), catalog(targets)
    _, known_in_history = _known_lists(index, offsets)
    unknown = pa.chunked_array([values.filter(pa.array(index < 0)), targets.filter(pa.array(target < 0))], pa.string())
    return {"users_in_split": len(split), "users_skipped": int(((target < 0) | (known_in_history == 0)).sum()),
            "unknown_targets": int((target < 0).sum()), "unknown_items": len(pc.unique(unknown))}


def _no_training_message(data_dir: str, sequences: datasets.Dataset) -> str:
    lengths = pc.list_value_length(sequences.data.table.column("item_ids"))
    longest = pc.max(lengths).as_py() or 0
    return (
        f"{data_dir}/sequences.txt: no training sequence: leave-one-out keeps each user's last two items for "
        "validation and test, so a user needs at least 4 items (known to the catalog) to give one; "
        f"{len(sequences)} users here, the longest with {longest} items"
    )


def item_slot_counts(train_split: datasets.Dataset, num_items: int) -> torch.Tensor:
    """How many item slots of the training sequences (`item_index` rows of `index_splits`) each catalog item fills,
    Long[num_items]: the popularity that in-batch negatives are drawn by (for `dense_logq_correction`)."""
    flat = torch.from_numpy(pc.list_flatten(train_split.with_format("arrow")[:].column("item_index"))
                            .to_numpy().astype(np.int64))
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= num_items):
        raise ValueError(f"training sequences hold item indices outside the catalog of {num_items} items.")
    return torch.bincount(flat, minlength=num_items)
