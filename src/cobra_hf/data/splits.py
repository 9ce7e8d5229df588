"""Leave-one-out splits for sequential recommendation (the TIGER / S3-Rec protocol)."""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pyarrow as pa

from .columnar import gather_ranges, list_chunks, list_column
from .loading import arrow_dataset

logger = logging.getLogger(__name__)

EVAL_FEATURES = datasets.Features(
    {
        "user_id": datasets.Value("string"),
        "history": datasets.Sequence(datasets.Value("string")),
        "target": datasets.Value("string"),
    }
)
TRAIN_FEATURES = datasets.Features(
    {"user_id": datasets.Value("string"), "item_ids": datasets.Sequence(datasets.Value("string"))}
)


def _dataset(columns: dict[str, pa.ChunkedArray], features: datasets.Features) -> datasets.Dataset:
    return arrow_dataset(pa.table(columns), features)


def _window_ranges(heads: np.ndarray, max_history: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training windows of each user's train part (`heads[u]` items): (user, start, length) per window.

    Windows hold `max_history + 1` items, the newest ends at the end and each earlier one ends `max_history`
    items before the next, the oldest starting at 0: consecutive windows share one item, so every transition
    `a -> b` lies inside exactly one window. Users come in order, each user's windows oldest first.
    """
    size = max_history + 1
    count = np.where(heads > size, -(-(heads - size) // max_history) + 1, 1)  # ceil((h - size) / step) + 1
    user = np.repeat(np.arange(len(heads)), count)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    back = count[user] - 1 - (np.arange(len(user)) - first[user])  # windows after this one: oldest first
    end = heads[user] - back * max_history
    start = np.maximum(end - size, 0)
    return user, start, end - start


def leave_one_out(sequences: datasets.Dataset | pa.Table, max_history: int = 20) -> datasets.DatasetDict:
    """Split each user's sequence: last item = test, second to last = validation, the rest = train.

    Splits:
        * `train`: `{user_id, item_ids}` = `items[:-2]`, kept only with >= 2 items (one transition).
          Sequences longer than `max_history + 1` are cut into windows of `max_history + 1` items
          ending at the end and stepping back `max_history`, so no transition is lost and a model
          with a `max_history` context sees every training target with a full history.
        * `validation`: `{user_id, history, target}` = (`items[:-2][-max_history:]`, `items[-2]`).
        * `test`: `{user_id, history, target}` = (`items[:-1][-max_history:]`, `items[-1]`).

    Users with fewer than 3 items cannot give a train/validation/test triple: they are left out of
    all three splits; their number is logged and stored in `result.num_short_users`.
    Computed on the Arrow columns (offsets arithmetic and one `take` per split), not row by row.
    """
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    table = sequences if isinstance(sequences, pa.Table) else sequences.with_format("arrow")[:]
    users = table.column("user_id").combine_chunks()
    values, offsets = list_column(table.column("item_ids"))
    lengths = np.diff(offsets)
    full = np.flatnonzero(lengths >= 3)
    short = len(lengths) - len(full)
    begin, end = offsets[:-1][full], offsets[1:][full]
    eval_users = users.take(pa.array(full))

    def histories(stop: np.ndarray) -> pa.ChunkedArray:  # the last max_history items before `stop`
        start = np.maximum(begin, stop - max_history)
        take, cut = gather_ranges(start, stop - start)
        return pa.chunked_array([lists for _, lists in list_chunks(values, take, cut)], pa.list_(pa.string()))

    def targets(at: np.ndarray) -> pa.Array:
        return values.take(pa.array(at)).cast(pa.string())

    valid = {"user_id": eval_users, "history": histories(end - 2), "target": targets(end - 2)}
    test = {"user_id": eval_users, "history": histories(end - 1), "target": targets(end - 1)}
    heads = (end - 2) - begin
    trained = np.flatnonzero(heads >= 2)
    user, start, size = _window_ranges(heads[trained], max_history)
    take, cut = gather_ranges(begin[trained][user] + start, size)
    windows = [lists for _, lists in list_chunks(values, take, cut)]
    train = {"user_id": eval_users.take(pa.array(trained[user])),
             "item_ids": pa.chunked_array(windows, pa.list_(pa.string()))}
    if short:
        logger.warning("leave_one_out: %d user(s) with fewer than 3 items left out of all splits", short)
    result = datasets.DatasetDict(
        {
            "train": _dataset(train, TRAIN_FEATURES),
            "validation": _dataset(valid, EVAL_FEATURES),
            "test": _dataset(test, EVAL_FEATURES),
        }
    )
    result.num_short_users = short
    return result
