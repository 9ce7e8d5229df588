"""Leave-one-out splits for sequential recommendation (the TIGER / S3-Rec protocol)."""

from __future__ import annotations

import logging

import datasets

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


def _windows(items: list[str], size: int, step: int) -> list[list[str]]:
    """Cut `items` into windows of `size` items ending at the end, each starting `step` earlier.

    With `step = size - 1` consecutive windows share one item, so every transition `a -> b` of the
    sequence lies inside exactly one window. Returned oldest window first.
    """
    if len(items) <= size:
        return [items]
    out = []
    end = len(items)
    while True:
        start = max(0, end - size)
        out.append(items[start:end])
        if start == 0:
            break
        end -= step
    return out[::-1]


def leave_one_out(sequences: datasets.Dataset, max_history: int = 20) -> datasets.DatasetDict:
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
    """
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    train = {"user_id": [], "item_ids": []}
    valid = {"user_id": [], "history": [], "target": []}
    test = {"user_id": [], "history": [], "target": []}
    short = 0
    for user, items in zip(sequences["user_id"], sequences["item_ids"]):
        if len(items) < 3:
            short += 1
            continue
        head = items[:-2]
        if len(head) >= 2:
            for window in _windows(head, max_history + 1, max_history):
                train["user_id"].append(user)
                train["item_ids"].append(window)
        valid["user_id"].append(user)
        valid["history"].append(head[-max_history:])
        valid["target"].append(items[-2])
        test["user_id"].append(user)
        test["history"].append(items[:-1][-max_history:])
        test["target"].append(items[-1])
    if short:
        logger.warning("leave_one_out: %d user(s) with fewer than 3 items left out of all splits", short)
    result = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(train, features=TRAIN_FEATURES),
            "validation": datasets.Dataset.from_dict(valid, features=EVAL_FEATURES),
            "test": datasets.Dataset.from_dict(test, features=EVAL_FEATURES),
        }
    )
    result.num_short_users = short
    return result
