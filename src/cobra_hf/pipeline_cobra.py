"""The "cobra-recommendation" pipeline: item-id histories in, ranked recommendations out.

Saved with every checkpoint (config.json `custom_pipelines` names this file), so it also loads where cobra_hf is
not installed:

    from transformers import pipeline
    recommender = pipeline("cobra-recommendation", model="someone/cobra-beauty", trust_remote_code=True)
    recommender(["B004756YJA", "B0020YLEYK"], top_k=5)
    # [{"item_id": "...", "title": "...", "score": 0.93, "rank": 1}, ...]

This file imports only torch and transformers (it is copied flat next to the modeling code).
"""

from __future__ import annotations

import torch
from transformers import Pipeline

TASK = "cobra-recommendation"


class CobraRecommendationPipeline(Pipeline):
    """Recommends the next items for histories of item ids with COBRA's coarse-to-fine generate.

    Input: one history (a list of item ids, oldest first, or a string of whitespace-separated ids), or a list
    of histories; all histories of one call go through a single batched `model.generate`.
    Output: for one history, a list of `{"item_id", "title", "score", "rank"}` dicts, best first (rank 1 =
    best); for a list of histories, one such list per history.

    Parameters (at construction or per call): `top_k` (recommendations per history, default: the model's
    generation config), `num_beams`, `num_candidates`, `mode` ("cobra", "sparse", "dense", "no_fusion"),
    `exclude_history` (leave out items already in the history), `unknown_items` ("error", the default, or
    "drop" to skip ids that are not in the catalog).
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    _GENERATE_PARAMS = ("top_k", "num_beams", "num_candidates", "mode", "exclude_history", "use_faiss")

    def _sanitize_parameters(self, unknown_items=None, **kwargs):
        unexpected = set(kwargs) - set(self._GENERATE_PARAMS)
        if unexpected:
            raise ValueError(
                f"The cobra-recommendation pipeline got unknown parameters {sorted(unexpected)}; it takes "
                f"{sorted(self._GENERATE_PARAMS + ('unknown_items',))}."
            )
        preprocess = {} if unknown_items is None else {"unknown_items": unknown_items}
        forward = {name: value for name, value in kwargs.items() if value is not None}
        return preprocess, forward, {}

    def __call__(self, histories, **kwargs):
        single = isinstance(histories, str) or (
            isinstance(histories, (list, tuple)) and len(histories) > 0
            and all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in histories)
        )  # a flat list of ids, strings or ints (1490 is item "1490"), is one history, as the tokenizer reads it
        if not single and not (isinstance(histories, (list, tuple)) and len(histories) > 0):
            raise ValueError(
                "The cobra-recommendation pipeline takes a history (a list of item ids) or a list of histories, "
                f"got {type(histories).__name__} {histories!r:.80}."
            )
        batch = [histories] if single else [list(history) if not isinstance(history, str) else history
                                             for history in histories]
        # A dict is passed as one input, so the whole batch goes through one generate call.
        results = super().__call__({"histories": batch}, **kwargs)
        return results[0] if single else results

    def preprocess(self, inputs, unknown_items=None):
        histories = [history.split() if isinstance(history, str) else history for history in inputs["histories"]]
        inputs = dict(self.tokenizer(histories, return_tensors="pt", unknown_items=unknown_items))
        # the whole histories: exclude_history must also leave out the items that the newest max_history dropped
        inputs["history_items"] = self.tokenizer.history_items(histories, unknown_items=unknown_items)
        return inputs

    def _forward(self, model_inputs, **generate_kwargs):
        output = self.model.generate(**model_inputs, **generate_kwargs)
        return {"item_indices": output.item_indices, "scores": output.scores}

    def postprocess(self, model_outputs):
        indices = model_outputs["item_indices"].tolist()
        scores = model_outputs["scores"].float().tolist()
        results = []
        for index_row, score_row in zip(indices, scores):
            row = []
            for index, score in zip(index_row, score_row):
                if index < 0:  # fewer catalog items than top_k
                    continue
                item = self.tokenizer.item_ids[index]
                row.append({"item_id": item, "title": self.tokenizer.titles[index], "score": float(score),
                            "rank": len(row) + 1})
            results.append(row)
        return results

    def get_inference_context(self):
        return torch.no_grad
