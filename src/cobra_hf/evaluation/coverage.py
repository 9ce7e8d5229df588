"""How much of an evaluation split the model's catalog knows, and when that is too little to report metrics on.

Metrics on the users whose items the catalog knows are not the metrics of the test set: on another data set's
split they can even come out higher. So unknown targets beyond a small share refuse the evaluation unless the user
asks for the known part explicitly, and whatever is left out is counted where the metrics are printed.
"""

from __future__ import annotations

import sys

# more unknown targets than this share of a split: most likely the wrong data (or the wrong model) was given
MAX_UNKNOWN_TARGET_SHARE = 0.01


def check_coverage(coverage: dict[str, int], split: str, data: str, model: str, drop_unknown: bool) -> str | None:
    """`coverage` from `cobra_hf.training.datasets.split_coverage` -> a warning line when something is left out
    (None when nothing is). Raises a one-line ValueError when no user can be evaluated, or when more than
    MAX_UNKNOWN_TARGET_SHARE of the targets are unknown and `drop_unknown` (--drop-unknown) is not set."""
    users, skipped = coverage["users_in_split"], coverage["users_skipped"]
    unknown_targets, unknown_items = coverage["unknown_targets"], coverage["unknown_items"]
    if users and skipped == users:
        raise ValueError(
            f"none of the {users} {split} users of {data}/sequences.txt can be evaluated ({unknown_targets} of their "
            f"targets and {unknown_items} distinct item ids are not in the catalog of {model}): this is not the data "
            "the model was trained on, or not its catalog"
        )
    if not users:
        raise ValueError(f"{data}/sequences.txt has no user with the 3 items a {split} split needs")
    share = unknown_targets / users
    if share > MAX_UNKNOWN_TARGET_SHARE and not drop_unknown:
        raise ValueError(
            f"{unknown_targets} of {users} {split} targets ({share:.1%}) are not in the catalog of {model}, more than "
            f"the {MAX_UNKNOWN_TARGET_SHARE:.0%} allowed: is {data} the data this model was trained on? Pass "
            f"--drop-unknown to evaluate only the {users - skipped} users it knows"
        )
    if not (skipped or unknown_items):
        return None
    return (
        f"{skipped} of {users} {split} users skipped ({unknown_targets} unknown targets, "
        f"{skipped - unknown_targets} with no known history item) and {unknown_items} item ids of {data} not in the "
        f"catalog of {model} (dropped from histories); the metrics cover the other {users - skipped} users"
    )


def covered_split(splits, name: str, data: str, model: str, drop_unknown: bool = False):
    """`splits[name]` of `cobra_hf.training.index_splits` once `check_coverage` accepts it (its warning goes to
    stderr): for scripts that report metrics on a split."""
    warning = check_coverage(splits.coverage[name], name, data, model, drop_unknown)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return splits[name]
