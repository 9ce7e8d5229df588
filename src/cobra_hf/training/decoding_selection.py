"""Decoding defaults picked on validation at the end of `cobra-hf train`.

A recipe's generation settings are the model's generate() defaults while it trains; its `decoding_grid` lists other
settings worth trying. After training, `select_decoding` evaluates the recipe's own point and every grid point on
the validation users the Trainer already validates on (full-ranking Recall/NDCG through `evaluate_split`, the
numbers CobraTrainer logs) and makes the best by Recall@10 the model's defaults before the final save, so that
`generate()` without arguments uses the validated best. Test data is never read.

Plan first, evaluate later: `plan_decoding` checks every point against the model before training (a wrong value in a
recipe file fails in seconds, not after hours), `select_decoding` evaluates the plan after training.
"""

from __future__ import annotations

import logging
import time

from ..cobra_generation import ARGUMENT_ALIASES, DEFAULT_GENERATION, resolve_settings
from ..evaluation import evaluate_split
from ..evaluation.metrics import recommendation_ks
from .recipes import Recipe

logger = logging.getLogger(__name__)
NEEDS_HEAD = "needs the ID-free dense head (history_dense_loss_weight > 0), which this model was trained without"


def has_dense_head(model) -> bool:
    return bool(float(model.config.history_dense_loss_weight))


def needs_dense_head(model, point: dict) -> bool:
    """Whether generate() settings `point` (over the model's current defaults) read the ID-free dense head:
    dense_guided_ids > 0, beam_fusion_dense_psi != 0 or mode "dense" (what resolve_settings refuses without it)."""
    settings = {name: getattr(model.generation_config, name, default) for name, default in DEFAULT_GENERATION.items()}
    settings.update({ARGUMENT_ALIASES.get(name, name): value for name, value in point.items()})
    try:
        return (int(settings["dense_guided_ids"]) > 0 or float(settings["beam_fusion_dense_psi"]) != 0.0
                or settings["recommend_mode"] == "dense")
    except (TypeError, ValueError):  # a wrong value: resolve_settings names it
        return False


def recipe_generation(model, recipe: Recipe | None) -> tuple[dict, str | None]:
    """(recipe.generation, None), to become the model's generate() defaults under --generation's settings. Settings
    that read the ID-free dense head are not used for a model without it (e.g. --recipe joint
    --history_dense_loss_weight 0): ({}, a note saying why, also logged), and the model keeps its own defaults."""
    if recipe is None or not recipe.generation:
        return {}, None
    if not has_dense_head(model) and needs_dense_head(model, recipe.generation):
        note = f"--recipe {recipe.name}: its generation defaults are not used: they {NEEDS_HEAD}"
        logger.warning(note)
        return {}, note
    return dict(recipe.generation), None


def skip_reason(recipe: Recipe | None, enabled: bool, user_generation: bool, users: int | None) -> str | None:
    """Why no decoding is selected in this run (None: select). users: validation users (None = all, 0 = none)."""
    if recipe is None:
        return "no recipe (--recipe none)"
    if not recipe.decoding_grid:
        return f"the recipe {recipe.name!r} has no decoding_grid (its decoding is fixed)"
    if not enabled:
        return "turned off (--select_decoding False)"
    if user_generation:
        return "--generation was given: the user's decoding is kept"
    if users == 0:
        return "no validation users (--eval_users 0)"
    return None


def plan_decoding(model, recipe: Recipe, generation_note: str | None) -> list[dict]:
    """The candidates, in order: the recipe's own generation ("recipe"; the model's defaults when generation_note
    says it was not applied), then each grid point ("grid[i]"). Returns [{"name", "settings", "skipped"?}]:
    a point that needs the missing dense head, or that decodes exactly as an earlier one, is skipped with the
    reason. A wrong setting is a ValueError naming the recipe and the point."""
    candidates = [("recipe", {} if generation_note else dict(recipe.generation))]
    candidates += [(f"grid[{index}]", dict(point)) for index, point in enumerate(recipe.decoding_grid)]
    plan, seen = [], []
    for name, point in candidates:
        entry = {"name": name, "settings": point}
        plan.append(entry)
        if not has_dense_head(model) and needs_dense_head(model, point):
            entry["skipped"] = NEEDS_HEAD
            continue
        try:
            resolved = resolve_settings(model.config, model.generation_config, point)
        except ValueError as err:
            raise ValueError(f"--recipe {recipe.name}: decoding_grid point {name}: {err}") from None
        same = next((earlier for earlier, settings in seen if settings == resolved), None)
        if same is not None:
            entry["skipped"] = f"decodes exactly as {same}"
        else:
            seen.append((name, resolved))
    return plan


def select_decoding(model, tokenizer, validation, plan: list[dict]) -> dict:
    """Evaluates every point of `plan` (see plan_decoding) that is not skipped on the validation rows (a split from
    `index_splits`, already sampled: rows history_index, target_index), sets the best by Recall@10 (the earlier
    point on a tie) as the model's generate() defaults, and returns the record for training_summary.json:
    {"metric", "users", "points": [{"name", "settings", "recall@5", ..., or "skipped"}], "chosen",
    "chosen_settings", "seconds"}."""
    ks = recommendation_ks(int(model.config.num_items))
    metric = f"recall@{max(ks)}"
    start = time.perf_counter()
    points = [dict(entry) for entry in plan]
    best = None
    # in eval mode throughout: every point decodes with the one set of catalog vectors built for the first (a model
    # put back in training mode between points would drop them, see CobraForSequentialRecommendation.train)
    was_training = model.training
    model.eval()
    try:
        for entry in points:
            if "skipped" in entry:
                continue
            # scored at top_k = max(ks) whatever the point's top_k: that one is only the saved default (a top_k
            # under 10 cannot give Recall@10, and failing here would lose the trained model before its save)
            scored = {key: value for key, value in entry["settings"].items()
                      if ARGUMENT_ALIASES.get(key, key) != "recommend_top_k"}
            result = evaluate_split(model, tokenizer, validation, show_progress=False, ks=ks, **scored)
            entry.update({key: value for key, value in result.items() if "@" in key})
            logger.info("decoding %s %s: validation %s %.4f", entry["name"], entry["settings"], metric, entry[metric])
            if best is None or entry[metric] > best[metric]:  # strictly better: a tie keeps the earlier point
                best = entry
    finally:
        model.train(was_training)
    if best is None:
        return {"skipped": "no point of the decoding grid fits this model", "points": points}
    model.set_generation_defaults(**best["settings"])
    logger.info("decoding picked on %d validation users: %s %s", len(validation), best["name"], best["settings"])
    return {"metric": metric, "users": len(validation), "points": points, "chosen": best["name"],
            "chosen_settings": best["settings"], "seconds": round(time.perf_counter() - start, 1)}
