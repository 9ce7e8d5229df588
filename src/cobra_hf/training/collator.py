"""Batches of `datasets` rows -> COBRA model inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..tokenization_cobra import CobraTokenizer


@dataclass
class CobraDataCollator:
    """Pads rows of catalog indices into model inputs.

    Training rows carry `item_index: list[int]` (a whole sequence, oldest first): the model predicts every item
    from the ones before it, so `labels` is a copy of `input_ids`. Evaluation rows carry `history_index` and
    `target_index`: history + target form one sequence (the loss then covers the target and the history items).
    Output: input_ids Long[B, H*L], attention_mask Long[B, H*L], item_index Long[B, H], labels Long[B, H*L].
    """

    tokenizer: CobraTokenizer
    max_items: int = 21

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "item_index" in rows[0]:
            sequences = [row["item_index"] for row in rows]
        elif "history_index" in rows[0]:
            sequences = [list(row["history_index"]) + [row["target_index"]] for row in rows]
        else:
            raise ValueError(f"Rows need 'item_index' or 'history_index' + 'target_index'; got {sorted(rows[0])}.")
        batch = self.tokenizer.encode_indices(sequences, max_history=self.max_items, return_tensors="pt")
        batch["labels"] = batch["input_ids"].clone()
        return dict(batch)
