"""Named training recipes: `cobra-hf train --recipe NAME` (or --recipe path/to/recipe.json).

A recipe is a bundle of settings that go together: CobraConfig fields (`model`), TrainingArguments flags
(`training`), generate() defaults (`generation`), a small grid of generate() settings (`decoding_grid`) that
`decoding_selection` evaluates on validation at the end of training, and, for a model with an ID trunk, the
TrainingArguments of a last phase that trains the trunk alone (`id_trunk_phase`, see `id_trunk_phase.py`). Each
layer is only a starting point: on the command line, `--model_config` and the model flags override `model`,
TrainingArguments flags override `training`, and `--generation` overrides `generation` (see
`cobra_hf.training.train.parse_args`).

Adding a recipe is one entry in RECIPES; a JSON file with the same keys is a user-defined recipe.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from ..configuration_cobra import CobraConfig, switch

DEFAULT_RECIPE = "trunk"  # `cobra-hf train` without --recipe (the Python API, build_model/CobraConfig, keeps the paper's)
NO_RECIPE = "none"  # --recipe none: CobraConfig and TRAINING_DEFAULTS as they are, no generation defaults, no grid
# generate() arguments a recipe may set: generate()'s own names (top_k and mode for recommend_top_k/recommend_mode)
GENERATION_KEYS = ("num_beams", "num_candidates", "dense_guided_ids", "top_k", "beam_fusion_tau", "beam_fusion_psi",
                   "beam_fusion", "beam_fusion_dense_psi", "mode", "exclude_history", "use_faiss")


@dataclass(frozen=True)
class Recipe:
    """name: str; description: str (one line); model: dict of CobraConfig fields; training: dict of TrainingArguments
    fields; generation: dict of generate() defaults; decoding_grid: tuple of dicts of generate() settings, each
    applied over `generation` and evaluated on validation after training (empty: the decoding is fixed);
    id_trunk_phase: dict of TrainingArguments fields for a phase after the main run that trains the ID trunk alone
    (empty: no such phase)."""

    name: str
    description: str = ""
    model: dict = dataclasses.field(default_factory=dict)
    training: dict = dataclasses.field(default_factory=dict)
    generation: dict = dataclasses.field(default_factory=dict)
    decoding_grid: tuple = ()
    id_trunk_phase: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """The recipe as JSON-ready data (what a recipe file holds)."""
        return {"name": self.name, "description": self.description, "model": dict(self.model),
                "training": dict(self.training), "generation": dict(self.generation),
                "decoding_grid": [dict(point) for point in self.decoding_grid],
                "id_trunk_phase": dict(self.id_trunk_phase)}


_JOINT_POINT = {"beam_fusion": "joint", "dense_guided_ids": 50, "beam_fusion_tau": 0.1, "beam_fusion_psi": 2.0,
                "beam_fusion_dense_psi": 16.0}
# the paper's BeamFusion (Eq. 7) with nothing of the ID-free head: guided IDs and psi_h are switched off explicitly,
# since a grid point is applied over the recipe's generation defaults
_PAPER_POINT = {"beam_fusion": "paper", "beam_fusion_tau": 0.9, "beam_fusion_psi": 16.0, "dense_guided_ids": 0,
                "beam_fusion_dense_psi": 0.0}

_JOINT_MODEL = {"use_item_embeddings": True, "text_embedding_dim": -1, "history_dense_loss_weight": 2.0,
                "contrastive_temperature": 0.07, "dense_logq_correction": True, "item_deletion": 0.2}
# the trunk's fusion point, fixed on Beauty validation before its seeds ran (research/fusion/trunk_hd2_rqk3x256d_e16_s1.json)
_TRUNK_POINT = {**_JOINT_POINT, "beam_fusion_tau": 0.3}

# the ID-only model of the README's row against TIGER (ids_only_rqktext3x256d_itemout_drop02_wd1_e32 and its seeds):
# the code loss alone, no dense head; its beams are what `cobra-hf join` makes the cascade's ID half
_IDS_MODEL = {"use_item_embeddings": True, "text_embedding_dim": -1, "dense_loss_weight": 0.0,
              "history_dense_loss_weight": 0.0, "item_deletion": 0.2, "dropout": 0.2, "item_output_embeddings": True,
              "item_output_weight_decay": 1.0}

RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        name="paper",
        description="COBRA as the paper states it: L_sparse + L_dense, text-encoder dense vectors, the paper's "
                    "BeamFusion (tau 0.9, psi 16); nothing tuned",
        # The paper is silent on hidden size, heads, MLP width, dropout and the InfoNCE temperature: CobraConfig's
        # defaults (128, 4, 512, 0.1, 0.2) apply. Levels x codes (3 x 32) are the catalog's (`cobra-hf prepare`).
        model={"encoder_layers": 1, "decoder_layers": 2, "max_history": 20, "sparse_loss_weight": 1.0,
               "dense_loss_weight": 1.0, "use_item_embeddings": False, "text_embedding_dim": 0,
               "history_dense_loss_weight": 0.0, "num_dense_negatives": 0, "dense_logq_correction": False,
               "item_deletion": 0.0},
        # the paper gives no optimizer, learning rate, batch size or epochs: TRAINING_DEFAULTS apply
        training={},
        # the paper gives no beam count M or candidates per beam N for the public data: generate()'s defaults
        # (M = 20, N = 10) are written out so that the recipe states every decoding setting
        generation={**_PAPER_POINT, "num_beams": 20, "num_candidates": 10, "mode": "cobra"},
        decoding_grid=(),  # the paper's decoding is fixed, not tuned
    ),
    "joint": Recipe(
        name="joint",
        description="item and sentence embeddings, the ID-free dense head, log Q correction, item deletion; joint "
                    "BeamFusion picked on validation; one decoder, so half the trunk's decoding cost, but its "
                    "cascade adds little over its own dense path",
        model=dict(_JOINT_MODEL),
        # the README's recipe rows (beauty_cpu_logq_del02_hd2 and its seeds) trained 32 epochs; the research runs 16
        training={"num_train_epochs": 32, "learning_rate": 2e-3},
        generation=dict(_JOINT_POINT),
        # the recipe's own generation is always the first candidate; these are the points around it
        decoding_grid=(
            {**_JOINT_POINT, "beam_fusion_tau": 0.3},
            {**_JOINT_POINT, "beam_fusion_tau": 0.6},
            {**_JOINT_POINT, "beam_fusion_dense_psi": 8.0},
            dict(_PAPER_POINT),
        ),
    ),
    "trunk": Recipe(
        name="trunk",
        description="the default: joint's model plus an ID trunk (a second decoder for the IDs), 16 epochs, then "
                    "16 more for the trunk alone: the recipe where COBRA's cascade beats its own dense path "
                    "(Recall@10 +5.2% on Beauty, +7.5% on Scientific, validation, 3 seeds each); measured on 3x256 "
                    "RQ-KMeans IDs with a dedup code; decodes at 2x joint's cost",
        model={**_JOINT_MODEL, "id_trunk": True},
        # session 24's runs (trunk2ph_hd2_rqk3x256d_e16p16*): phase 1's schedule again for phase 2, not tuned
        training={"num_train_epochs": 16, "learning_rate": 2e-3},
        id_trunk_phase={"num_train_epochs": 16, "learning_rate": 2e-3},
        generation=dict(_TRUNK_POINT),
        # points around it (the Beauty trunk's re-pick found none better than tau 0.3 by 1%) and the paper's point
        decoding_grid=(
            {**_TRUNK_POINT, "beam_fusion_tau": 0.45},
            {**_TRUNK_POINT, "beam_fusion_tau": 0.6},
            {**_TRUNK_POINT, "beam_fusion_dense_psi": 8.0},
            dict(_PAPER_POINT),
        ),
    ),
    "ids": Recipe(
        name="ids",
        description="an ID-only model (the code loss alone, TIGER's task): per-item output rows with their own "
                    "weight decay, dropout 0.2, 32 epochs; Beauty test Recall@10 .0659 against TIGER's .0648 (3 "
                    "seeds) on 3x256 RQ-KMeans IDs of the item text with a dedup code; decodes IDs only (sparse "
                    "mode); `cobra-hf join` makes it the beams of a cascade",
        model=dict(_IDS_MODEL),
        training={"num_train_epochs": 32, "learning_rate": 2e-3},
        # no dense vector is trained: the other modes would rank by untrained vectors
        generation={"mode": "sparse", "num_beams": 20},
        decoding_grid=(),  # beam search over IDs has nothing to fuse; M = 20 as in every comparison
    ),
}


def known_names() -> str:
    return ", ".join([*RECIPES, NO_RECIPE]) + " (or a path to a .json recipe)"


def _error(source: str, what: str) -> ValueError:
    return ValueError(f"--recipe {source}: {what}; known recipes: {known_names()}.")


def settable_model_fields() -> set[str]:
    """CobraConfig fields a training run may set (the catalog decides the others), plus the use_text_embeddings alias."""
    from .train import CATALOG_FIELDS, TEXT_EMBEDDINGS_ALIAS  # here: train imports this module

    names = set(inspect.signature(CobraConfig.__init__).parameters) - {"self", "kwargs"} - set(CATALOG_FIELDS)
    return names | {TEXT_EMBEDDINGS_ALIAS}


def training_fields() -> set[str]:
    from transformers import TrainingArguments

    return {item.name for item in dataclasses.fields(TrainingArguments) if item.init}


def load_recipe(text: str | None) -> Recipe | None:
    """--recipe: a name in RECIPES, "none" (-> None), or a .json file of Recipe's fields. A bad one is a one-line
    ValueError naming the flag, what was wrong and the known names."""
    text = DEFAULT_RECIPE if text is None else str(text).strip()
    if text.lower() == NO_RECIPE:
        return None
    if text in RECIPES:
        return RECIPES[text]
    if not text.endswith(".json"):
        raise _error(text, "unknown recipe")
    path = Path(text)
    if not path.is_file():
        raise _error(text, "no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _error(text, f"not JSON ({err})") from None
    return recipe_from_dict(data, source=text, default_name=path.stem)


def recipe_from_dict(data, source: str, default_name: str = "custom") -> Recipe:
    """A Recipe from JSON data {name?, description?, model?, training?, generation?, decoding_grid?}, every key
    checked (the values are checked where they are used: CobraConfig, TrainingArguments, generate())."""
    if not isinstance(data, dict):
        raise _error(source, "a recipe file must hold a JSON object")
    keys = [item.name for item in dataclasses.fields(Recipe)]
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise _error(source, f"unknown key {unknown[0]!r} (a recipe has {keys})")
    for name in ("model", "training", "generation", "id_trunk_phase"):
        if not isinstance(data.get(name, {}), dict):
            raise _error(source, f"{name} must be a JSON object")
    grid = data.get("decoding_grid", [])
    if not isinstance(grid, list) or not all(isinstance(point, dict) for point in grid):
        raise _error(source, "decoding_grid must be a list of JSON objects")
    recipe = Recipe(name=str(data.get("name") or default_name), description=str(data.get("description", "")),
                    model=dict(data.get("model", {})), training=dict(data.get("training", {})),
                    generation=dict(data.get("generation", {})), decoding_grid=tuple(dict(p) for p in grid),
                    id_trunk_phase=dict(data.get("id_trunk_phase", {})))
    check_recipe(recipe, source)
    return recipe


def check_recipe(recipe: Recipe, source: str | None = None) -> None:
    """Every key of a recipe is a field its layer knows (model: CobraConfig fields a run may set; training:
    TrainingArguments; generation and grid points: generate() arguments)."""
    source = source or recipe.name
    bad_model = sorted(set(recipe.model) - settable_model_fields())
    if bad_model:
        raise _error(source, f"model key {bad_model[0]!r} is not a CobraConfig field a training run sets")
    for where, keys in (("training", recipe.training), ("id_trunk_phase", recipe.id_trunk_phase)):
        bad_training = sorted(set(keys) - training_fields())
        if bad_training:
            raise _error(source, f"{where} key {bad_training[0]!r} is not a TrainingArguments field")
    for where, point in [("generation", recipe.generation),
                         *((f"decoding_grid[{i}]", p) for i, p in enumerate(recipe.decoding_grid))]:
        bad = sorted(set(point) - set(GENERATION_KEYS))
        if bad:
            raise _error(source, f"{where} key {bad[0]!r} is not a generate() argument (they are {list(GENERATION_KEYS)})")


def training_flags(recipe: Recipe | None) -> list[str]:
    """recipe.training as command-line flags, to be placed between TRAINING_DEFAULTS and the user's flags (so the
    user's win): {"num_train_epochs": 16} -> ["--num_train_epochs", "16"]."""
    flags = []
    for name, value in (recipe.training if recipe else {}).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        flags += [f"--{name}", *(str(v) for v in values)]
    return flags


def model_settings(recipe: Recipe | None, overrides: dict) -> dict:
    """The CobraConfig fields a new model gets: recipe.model, then `overrides` (--model_config, then the model
    flags) on top; use_text_embeddings becomes text_embedding_dim -1 | 0."""
    from .train import TEXT_EMBEDDINGS_ALIAS

    settings = dict(recipe.model if recipe else {})
    if TEXT_EMBEDDINGS_ALIAS in settings:
        settings["text_embedding_dim"] = -1 if switch(TEXT_EMBEDDINGS_ALIAS, settings.pop(TEXT_EMBEDDINGS_ALIAS)) else 0
    return {**settings, **overrides}



# TrainingArguments recorded with every recipe (besides the recipe's own training keys): what shaped the model
RECORDED_TRAINING = ("num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size", "weight_decay",
                     "warmup_steps", "lr_scheduler_type", "seed")


def recipe_record(recipe: Recipe | None, model, training_args, init_from: str | None = None,
                  generation_note: str | None = None, id_trunk_phase: dict | None = None) -> dict | None:
    """training_summary.json's "recipe": the recipe as it was resolved in this run (None for --recipe none):
    model = every CobraConfig field a run sets, as the trained model has it; training = the recipe's training keys
    and RECORDED_TRAINING as the Trainer used them; generation = the generate() defaults saved with the checkpoint
    (after decoding selection); decoding_grid as given."""
    from ..cobra_generation import DEFAULT_GENERATION, SETTING_NAMES
    from .train import TEXT_EMBEDDINGS_ALIAS

    if recipe is None:
        return None
    config = model.config
    fields = sorted(settable_model_fields() - {TEXT_EMBEDDINGS_ALIAS})
    training = {}
    for name in [*recipe.training, *RECORDED_TRAINING]:
        value = getattr(training_args, name)
        training[name] = getattr(value, "value", value)  # enums (lr_scheduler_type) as their strings
    record = {
        "name": recipe.name,
        "description": recipe.description,
        "model": {name: getattr(config, name) for name in fields if hasattr(config, name)},
        "training": training,
        "generation": {SETTING_NAMES.get(name, name): getattr(model.generation_config, name, default)
                       for name, default in DEFAULT_GENERATION.items()},
        "decoding_grid": [dict(point) for point in recipe.decoding_grid],
        "id_trunk_phase": dict(id_trunk_phase or {}),  # as applied (the recipe's, or --id_trunk_epochs over it)
    }
    if init_from:
        record["model_note"] = f"--init_from {init_from}: the checkpoint's config, not the recipe's model settings"
    if generation_note:
        record["generation_note"] = generation_note
    return record
