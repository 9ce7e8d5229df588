"""`CobraTrainer`: the transformers Trainer, plus loss components in the logs and recommendation metrics
(full-ranking Recall/NDCG through generate) in every evaluation."""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import Trainer

from ..evaluation import evaluate_split
from ..evaluation.metrics import recommendation_ks


class CobraTrainer(Trainer):
    """Trainer for COBRA. Extra arguments:
    recommendation_split: a validation split from `index_splits` (rows history_index, target_index); when given,
        each evaluation also reports `eval_recall@5/10`, `eval_ndcg@5/10` from `generate`.
    recommendation_users: evaluate on at most this many users of that split (None = all).
    generate_kwargs: passed to generate during those evaluations (over the model's generation_config).
    extra_modes: generate() modes (e.g. ("dense", "sparse")) evaluated too, on the same users, and reported as
        `eval_<mode>_recall@10` etc.: the curves of the model's two halves beside the one it is deployed with.

    `save_model(folder)` (the final model; not the Trainer's checkpoint-N) appears atomically: it is written into a
    staging folder beside `folder`, `final_extras` (callables taking that folder: catalog assets, summary, card)
    add their files, and `safe_io.swap_into_place` moves them in; files it did not write stay.
    """

    def __init__(self, *args, recommendation_split=None, recommendation_users=None, generate_kwargs=None,
                 extra_modes=(), **kwargs):
        super().__init__(*args, **kwargs)
        # validation rows carry columns the model's forward does not take; the collator needs them
        self.args.remove_unused_columns = False
        self.recommendation_split = recommendation_split
        self.recommendation_users = recommendation_users
        self.generate_kwargs = dict(generate_kwargs or {})
        self.extra_modes = tuple(extra_modes)
        self._component_sums: dict[str, float] = {}
        self._component_count = 0
        self.final_extras: list = []

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The Trainer's save, staged and swapped in (a kill leaves the previous files or, once the next command
        repaired it, nothing new: never a 0-byte config.json). The Trainer's own checkpoint-N folders, and
        DeepSpeed (whose fallback save writes from every process), are saved in place as the Trainer does."""
        target = Path(output_dir or self.args.output_dir)
        is_checkpoint = target.name.startswith("checkpoint-") and target.parent.resolve() == Path(self.args.output_dir).resolve()
        if is_checkpoint or self.is_deepspeed_enabled:
            super().save_model(output_dir, _internal_call=_internal_call)
            return
        from ..safe_io import checkpoint_entries, staging_dir, swap_into_place

        # one fixed staging name: every process of a distributed run calls save_model with the same folder
        stage = staging_dir(target, suffix="final") if self.args.should_save else target.parent / f".{target.name}.partial-final"
        try:
            super().save_model(str(stage), _internal_call=True)
            if self.args.should_save:
                for extra in self.final_extras:
                    extra(stage)
                swap_into_place(stage, target, checkpoint_entries(stage, target))
        finally:
            if self.args.should_save and stage.exists():
                shutil.rmtree(stage, ignore_errors=True)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def create_optimizer(self, model=None):
        """The Trainer's optimizer; with config.item_output_weight_decay >= 0 the per-item output rows move to a group
        of their own with that weight decay (the Trainer gives one value to every weight matrix). An optimizer the
        Trainer already holds (given by the user, or made by an earlier call) is returned as it is."""
        made_here = self.optimizer is None
        optimizer = super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = float(getattr(opt_model.config, "item_output_weight_decay", -1.0))
        table = getattr(opt_model, "item_output_table", None)
        if not made_here or decay < 0 or table is None or not table.weight.requires_grad:
            return optimizer
        if not hasattr(optimizer, "param_groups") or not hasattr(optimizer, "add_param_group"):
            raise ValueError(f"item_output_weight_decay needs a torch optimizer with parameter groups, got "
                             f"{type(optimizer).__name__}: leave it at -1 with --optim {self.args.optim}.")
        rows = table.weight
        for group in optimizer.param_groups:
            group["params"] = [param for param in group["params"] if param is not rows]
        optimizer.add_param_group({"params": [rows], "weight_decay": decay})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training:
            for name in ("sparse_loss", "backbone_sparse_loss", "dense_loss", "history_dense_loss"):
                value = getattr(outputs, name, None)
                if value is not None:
                    self._component_sums[name] = self._component_sums.get(name, 0.0) + float(value.detach())
            self._component_count += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._component_count:
            for name, total in self._component_sums.items():
                logs[name] = round(total / self._component_count, 4)
            self._component_sums, self._component_count = {}, 0
        super().log(logs, *args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.recommendation_split is not None and self.is_world_process_zero():
            model = self.accelerator.unwrap_model(self.model)
            extra = {}
            ks = recommendation_ks(int(model.config.num_items))
            for mode in (None, *self.extra_modes):
                settings = dict(self.generate_kwargs) if mode is None else {**self.generate_kwargs, "mode": mode}
                settings.setdefault("ks", ks)
                result = evaluate_split(
                    model, self.processing_class, self.recommendation_split, max_users=self.recommendation_users,
                    show_progress=False, **settings,
                )
                prefix = metric_key_prefix if mode is None else f"{metric_key_prefix}_{mode}"
                extra.update({f"{prefix}_{key}": value for key, value in result.items() if "@" in key})
            metrics.update(extra)
            self.log(extra)
        return metrics

    def create_model_card(self, model_name=None, dataset=None, license=None, **kwargs) -> None:
        """`push_to_hub` writes the cobra-hf model card (config, training run, latest Recall/NDCG) instead of the
        generic Trainer card; a README.md that the user wrote in output_dir is kept."""
        if not self.is_world_process_zero():
            return
        from ..hub.model_card import write_model_card

        model = self.accelerator.unwrap_model(self.model)
        state = self.state
        training_info = {"steps": state.global_step, "epochs": round(float(state.epoch or 0), 2),
                         "batch_size": self.args.per_device_train_batch_size, "learning_rate": self.args.learning_rate,
                         "seed": self.args.seed}
        if self.train_dataset is not None and hasattr(self.train_dataset, "__len__"):
            training_info["num_train_sequences"] = len(self.train_dataset)
        losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
        if losses:
            training_info["final_loss"] = losses[-1]
        evals = [entry for entry in state.log_history if any("@" in key for key in entry)]
        eval_results = {key: value for key, value in evals[-1].items() if "@" in key} if evals else None
        if eval_results:
            eval_results["split"] = "validation"
        dataset_name = dataset if isinstance(dataset, str) else (dataset[0] if dataset else None)
        write_model_card(self.args.output_dir, config_dict=model.config.to_dict(), training_info=training_info,
                         eval_results=eval_results, dataset_name=dataset_name, repo_id=self.hub_model_id,
                         **({"license": license} if license else {}))
