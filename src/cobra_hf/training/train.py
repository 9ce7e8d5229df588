"""`cobra-hf train`: build a model from a catalog, train it with the Trainer, save a self-contained checkpoint."""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from pathlib import Path

import torch
from transformers import HfArgumentParser, IntervalStrategy, TrainingArguments, set_seed

from ..configuration_cobra import GENERATION_MODES, CobraConfig, switch
from .collator import CobraDataCollator
from ..evaluation.sampling import sample_split
from .datasets import index_splits, item_slot_counts
from .decoding_selection import plan_decoding, recipe_generation, select_decoding, skip_reason
from .id_trunk_phase import (PHASE_DIR, check_phase, check_phase_not_over, default_phase, finished_main_phase,
                             phase_arguments, phase_settings, resume_points, train_id_trunk_phase)
from .final_files import final_files
from .model_builder import build_model, read_prepare_args
from .recipes import load_recipe, model_settings, recipe_record, training_flags
from .resume import (CHECKPOINT_COMPLETE_FILES, check_not_finished, check_same_catalog, reached_budget,
                     resolve_resume_checkpoint)
from .trainer import CobraTrainer

logger = logging.getLogger(__name__)
__all__ = ["CHECKPOINT_COMPLETE_FILES", "main", "parse_args", "resolve_resume_checkpoint", "run_training"]


@dataclass
class CobraTrainingArguments:
    """What to train on and how to validate (the model's own flags come from CobraConfig, see `model_arguments`;
    every other flag is a transformers TrainingArguments flag)."""

    catalog: str = field(metadata={"help": "catalog folder made by `cobra-hf prepare`"})
    data: str | None = field(default=None, metadata={"help": "dataset folder (default: the one the catalog was prepared from)"})
    init_from: str | None = field(default=None, metadata={"help": "start from this checkpoint instead of a new model (fine-tuning)"})
    train_only: str | None = field(default=None, metadata={"help": "with --init_from: train only this part and freeze the rest. id_trunk: the ID trunk of a checkpoint built with --id_trunk True, by its sparse loss alone (the main backbone is not run), to give the IDs more epochs than the dense half"})
    id_trunk_epochs: float | None = field(default=None, metadata={"help": "epochs of the last phase that trains the ID trunk alone (default: the recipe's, 16 for --recipe trunk, none for the others; 0 = no such phase; without it, a --max_steps or --num_train_epochs that changes the recipe's sets the phase's length too); the same as a second run with --train_only id_trunk"})
    model_config: str | None = field(default=None, metadata={"help": "JSON object (or a .json file) of CobraConfig fields for a new model; the model flags given on the command line override it"})
    init_text_embeddings: bool = field(default=True, metadata={"help": "start text token embeddings from the sentence encoder's"})
    generation: str | None = field(default=None, metadata={"help": 'JSON of generate() defaults, e.g. \'{"beam_fusion": "joint", "dense_guided_ids": 50}\': every validation uses them and the checkpoint saves them (generation_config.json)'})
    eval_modes: str = field(default="", metadata={"help": 'comma-separated generate() modes also evaluated at each validation (e.g. "dense,sparse"), logged as eval_<mode>_recall@10 etc.'})
    eval_users: int | None = field(default=2000, metadata={"help": "validation users (the same seeded random sample each time, see cobra_hf.evaluation.sample_users) for the loss and Recall/NDCG at each evaluation (0 = none: no validation at all, -1 = all)"})
    max_train_sequences: int | None = field(default=None, metadata={"help": "use only this many training sequences (quick runs)"})
    overwrite: bool = field(default=False, metadata={"help": "allow writing into a non-empty output_dir"})
    drop_unknown: bool = field(default=False, metadata={"help": "train on the items the catalog knows when more than 1%% of --data's item ids are not in it (they are dropped from the sequences; without the flag that is refused)"})
    recipe: str | None = field(default=None, metadata={"help": "training recipe (training/recipes.py): trunk (the default: joint plus an ID trunk, trained in two phases: the cascade that beats its own dense path; measured on unique IDs, `prepare --codebook-size 256 --dedup-level --quantizer rq-kmeans`), joint (one decoder, half the decoding cost), paper (the paper's setup and decoding), none (bare defaults) or a .json file; other flags override it"})
    select_decoding: bool = field(default=True, metadata={"help": "after training, evaluate the recipe's decoding_grid on the validation users and save the best by Recall@10 as the generate() defaults (not with --generation)"})
    # the CobraConfig fields set by --model_config and the model flags (filled in by parse_args)
    model_overrides: dict = field(default_factory=dict, init=False)


# CobraConfig fields that the catalog decides (or that describe the file format): never training flags
CATALOG_FIELDS = ("level_sizes", "num_items", "text_vocab_size", "max_text_tokens", "catalog_hash", "format_version")
# the parts `--train_only` can train alone (the rest of the --init_from checkpoint frozen)
TRAIN_ONLY_PARTS = ("id_trunk",)
# --use_text_embeddings True|False, the flag before text_embedding_dim became one, still spells -1 | 0
TEXT_EMBEDDINGS_ALIAS = "use_text_embeddings"
BOOL_TRUE, BOOL_FALSE = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")  # transformers' string_to_bool


def model_field_help() -> dict[str, str]:
    """Each CobraConfig field's description, from CobraConfig's docstring (`name (`type`...): text` entries): the
    help of the model flags, written once, where the fields are defined."""
    doc = re.sub(r"\s+", " ", CobraConfig.__doc__ or "")
    # an entry starts at a field's own name: a word before "(`" inside a text (e.g. "completes (`file.py`)") does not
    names = "|".join(n for n in inspect.signature(CobraConfig.__init__).parameters if n not in ("self", "kwargs"))
    entries = re.split(rf" (?=(?:{names})(?:, [a-z_]+)* \(`)", doc)
    help_text = {}
    for entry in entries:
        match = re.match(r"([a-z_]+) \(`[^`]*`(?:, defaults to [^)]*)?\):? ?(.*)", entry.strip())
        if match:
            help_text[match.group(1)] = match.group(2).strip()
    return help_text


def model_arguments() -> type:
    """A dataclass of every CobraConfig field a training run may set (CATALOG_FIELDS aside), typed and named as in
    CobraConfig, default None = not given (CobraConfig's own default applies)."""
    help_text = model_field_help()
    fields = []
    for name, parameter in inspect.signature(CobraConfig.__init__).parameters.items():
        if name in ("self", "kwargs") or name in CATALOG_FIELDS:
            continue
        kind = type(parameter.default)
        default = parameter.default
        note = help_text.get(name, "")
        if name == "text_embedding_dim":
            note = ("width of the frozen sentence embedding added to each dense vector: 0 = none (the paper), -1 = the "
                    "catalog's own (--use_text_embeddings True says the same)")
        # argparse %-formats every help text: a "%" of the docstring is written "%%" here
        help_line = f"{note} (CobraConfig default: {default})".replace("%", "%%")
        fields.append((name, kind, field(default=None, metadata={"help": help_line})))
    return make_dataclass("CobraModelArguments", fields)


def _alias_text_embeddings(argv: list[str]) -> list[str]:
    """--use_text_embeddings [True|False] -> --text_embedding_dim -1 | 0."""
    out, index = [], 0
    while index < len(argv):
        name, equals, value = argv[index].partition("=")
        index += 1
        if name != f"--{TEXT_EMBEDDINGS_ALIAS}":
            out.append(argv[index - 1])
            continue
        if not equals:  # a bare flag means True, as for any boolean flag
            given = index < len(argv) and not argv[index].startswith("--")
            value = argv[index] if given else "True"
            index += given
        spelled = value.lower()
        if spelled not in BOOL_TRUE + BOOL_FALSE:  # as transformers' own boolean flags read it
            raise ValueError(f"--{TEXT_EMBEDDINGS_ALIAS} takes True or False, got {value!r}.")
        out += ["--text_embedding_dim", "-1" if spelled in BOOL_TRUE else "0"]
    return out


def read_model_config(text: str | None) -> dict:
    """--model_config: a JSON object of CobraConfig fields, or the path of a .json file holding one."""
    if not text:
        return {}
    source = Path(text)
    try:
        settings = json.loads(source.read_text() if text.endswith(".json") and source.is_file() else text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--model_config is not JSON ({err}): {text!r}") from None
    if not isinstance(settings, dict):
        raise ValueError(f"--model_config must be a JSON object of CobraConfig fields, got {text!r}.")
    if TEXT_EMBEDDINGS_ALIAS in settings:
        settings["text_embedding_dim"] = -1 if switch(TEXT_EMBEDDINGS_ALIAS, settings.pop(TEXT_EMBEDDINGS_ALIAS)) else 0
    allowed = {item.name for item in fields(model_arguments())}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(f"--model_config: {unknown[0]} is not a CobraConfig field a training run sets "
                         f"(the catalog decides {list(CATALOG_FIELDS)}).")
    return settings


# our defaults for TrainingArguments; any of them can be given again on the command line
TRAINING_DEFAULTS = [
    "--per_device_train_batch_size", "256", "--per_device_eval_batch_size", "256", "--learning_rate", "1e-3",
    "--num_train_epochs", "10", "--warmup_steps", "0.05", "--weight_decay", "0.01", "--lr_scheduler_type", "cosine",
    "--logging_steps", "50", "--eval_strategy", "epoch", "--save_strategy", "epoch", "--save_total_limit", "2",
    "--report_to", "none", "--dataloader_num_workers", "0", "--seed", "0", "--disable_tqdm", "False",
]


PRECISION_FLAGS = ("--bf16", "--fp16")


def gives_precision(flags: list[str]) -> bool:
    """Whether these command-line flags choose the training precision (--bf16 / --fp16, with or without a value)."""
    return any(flag.split("=", 1)[0] in PRECISION_FLAGS for flag in flags)


def cuda_bf16_default(flags: list[str], use_cpu: bool) -> list[str]:
    """["--bf16", "True"] when a CUDA GPU that supports bf16 will train (not `use_cpu`) and `flags` (the recipe's
    and the command line's) choose no precision; else []. bf16 autocast is the default on such GPUs: the weights,
    the optimizer and the saved checkpoint stay fp32, and the scores that rank items and the losses' softmaxes are
    computed in fp32 (modeling_cobra, cobra_losses); `--bf16 False` trains in fp32."""
    if use_cpu or gives_precision(flags) or not torch.cuda.is_available() or not torch.cuda.is_bf16_supported():
        return []
    return ["--bf16", "True"]


def parse_args(argv: list[str]) -> tuple[CobraTrainingArguments, TrainingArguments]:
    """The command line -> (run arguments with the model's CobraConfig fields in `model_overrides`, TrainingArguments)."""
    parser = HfArgumentParser((CobraTrainingArguments, model_arguments(), TrainingArguments))
    parser.prog = "cobra-hf train"
    parser.description = (
        "Train COBRA on a catalog made by `cobra-hf prepare` with the transformers Trainer; every "
        "TrainingArguments flag works. Example: cobra-hf train --catalog runs/beauty/catalog "
        "--output_dir runs/beauty/model --num_train_epochs 5"
    )
    argv = _alias_text_embeddings(list(argv))
    if any(flag in argv for flag in ("-h", "--help")):
        parser.parse_args_into_dataclasses(args=argv)
    defaults = list(TRAINING_DEFAULTS)
    if not torch.accelerator.is_available():  # pinned memory only helps copies to an accelerator (and warns without)
        defaults += ["--dataloader_pin_memory", "False"]
    cobra_args, model_args, training_args = parser.parse_args_into_dataclasses(args=defaults + argv)
    recipe_flags = training_flags(load_recipe(cobra_args.recipe))
    precision = cuda_bf16_default(recipe_flags + argv, training_args.use_cpu)
    if precision and os.environ.get("LOCAL_RANK", "0") == "0":  # said once per machine under torchrun
        logger.warning("cobra-hf train: this CUDA GPU supports bf16: training under bf16 autocast (fp32 weights); "
                       "--bf16 False trains in fp32.")
    if recipe_flags or precision:  # TRAINING_DEFAULTS < bf16 on a GPU < the recipe's training settings < the command line
        cobra_args, model_args, training_args = parser.parse_args_into_dataclasses(
            args=defaults + precision + recipe_flags + argv)
    given = {name: value for name, value in asdict(model_args).items() if value is not None}
    cobra_args.model_overrides = {**read_model_config(cobra_args.model_config), **given}
    sampling = getattr(training_args, "train_sampling_strategy", None)  # (a TrainingArguments field since transformers 5.x)
    if str(getattr(sampling, "value", sampling)) == "group_by_length":
        # measured: length-grouped batches train a worse model on every path (docs/EXPERIMENTS.md, section 4), and
        # forward already skips most padding (decode_by_length); the training rows carry no length column for it
        raise ValueError("--train_sampling_strategy group_by_length is not supported: batches are random "
                         "(forward skips their padding itself, and grouped batches trained a worse model).")
    if cobra_args.train_only is not None:  # refused before anything loads; the checkpoint's trunk is checked once loaded
        if cobra_args.train_only not in TRAIN_ONLY_PARTS:
            raise ValueError(f"--train_only: unknown part {cobra_args.train_only!r}; choose among {list(TRAIN_ONLY_PARTS)}.")
        if not cobra_args.init_from:
            raise ValueError(f"--train_only {cobra_args.train_only} trains one part of a trained model: pass its "
                             "checkpoint with --init_from (in a new model the frozen rest would stay random).")
    if cobra_args.init_from and cobra_args.model_overrides:
        raise ValueError(f"--{sorted(cobra_args.model_overrides)[0]}: a model flag does nothing with --init_from "
                         "(the checkpoint's config is kept).")
    return cobra_args, training_args


def _check_output_dir(cobra_args: CobraTrainingArguments, training_args: TrainingArguments, resume: str | None) -> None:
    """resume: the checkpoint --resume_from_checkpoint resolved to (resolve_resume_checkpoint), or None."""
    from ..safe_io import check_not_inputs

    # the final save replaces the entries it writes (catalog/, tokenizer files, ...): an input inside the output
    # folder would be replaced, --overwrite or not
    check_not_inputs(training_args.output_dir, {"the --catalog folder": cobra_args.catalog, "the --data folder":
                                                cobra_args.data, "the --init_from checkpoint": cobra_args.init_from},
                     "--output_dir")
    out = Path(training_args.output_dir)
    from ..catalog_files import ASSETS_DIR, check_replaceable

    check_replaceable(out / ASSETS_DIR)  # a catalog/ of the user's there would be replaced by the final save
    if not (out.is_dir() and any(out.iterdir())) or cobra_args.overwrite:
        return
    if resume is None:
        raise FileExistsError(
            f"Output folder {out} already holds files; pass --overwrite to write into it, or "
            "--resume_from_checkpoint to continue a run."
        )
    # resuming continues the run of the folder it writes to: a checkpoint of another folder would end by replacing
    # whatever model this one holds
    if out.resolve() not in Path(resume).resolve().parents:
        raise FileExistsError(
            f"Output folder {out} already holds files and --resume_from_checkpoint {resume} is not one of its "
            "checkpoints; resume into the folder of that run, an empty --output_dir, or pass --overwrite."
        )


def _check_init_catalog(init_from: str, tokenizer, catalog: str) -> None:
    """--init_from keeps its checkpoint's tokenizer, while --catalog gives the data folder and the quantizer assets
    copied into the new checkpoint: a catalog of another `cobra-hf prepare` run would leave a quantizer beside the
    model that gives items other IDs (or, without assets, pass silently with IDs of its own). Refused in one line."""
    from ..cold_start import check_assets_match
    from ..semantic_ids.assets import load_catalog_assets

    try:
        assets = load_catalog_assets(catalog)
    except FileNotFoundError:  # a catalog without assets (`prepare --ids-from`): its IDs are compared instead
        assets = None
    check_assets_match(init_from, tokenizer, assets, catalog, flag="--catalog",
                       remedy="pass the catalog folder that `cobra-hf prepare` made for it.")


def _check_data_items(splits, data_dir: str, cobra_args: CobraTrainingArguments) -> None:
    """Item ids of --data that the catalog lacks are dropped from the sequences. The held-out items of a cold-start
    catalog aside, more than 1% of the data's items means it is most likely not the catalog's data: refused in one
    line unless --drop_unknown; fewer are dropped with a warning."""
    from ..evaluation.coverage import MAX_UNKNOWN_TARGET_SHARE
    from .model_builder import heldout_item_ids

    heldout = heldout_item_ids(cobra_args.catalog)
    unexpected = [item for item in splits.unknown_items if item not in heldout]
    if not unexpected:
        return
    share = len(unexpected) / max(splits.data_items, 1)
    named = ", ".join(unexpected[:5]) + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else "")
    message = (f"--data {data_dir} holds {len(unexpected)} item ids ({share:.1%} of its items) that the model's catalog "
               f"({cobra_args.init_from or cobra_args.catalog}) lacks: {named}")
    if share > MAX_UNKNOWN_TARGET_SHARE and not cobra_args.drop_unknown:
        raise ValueError(f"{message}; is it the data the catalog was prepared from? Prepare a catalog of it, or pass "
                         "--drop_unknown to train on the items the catalog knows.")
    logger.warning("%s; they are dropped from the sequences.", message)


def _train_only(model, cobra_args: CobraTrainingArguments) -> None:
    """--train_only id_trunk (parse_args checked the part and --init_from): freezes all of the model but its ID
    trunk."""
    if not model.config.id_trunk:
        raise ValueError(f"--train_only id_trunk: the --init_from checkpoint {cobra_args.init_from} has no ID trunk "
                         "(config.id_trunk is false); train it with --id_trunk True or build one with `cobra-hf join`.")
    model.train_id_trunk_only()


def parse_generation(text: str) -> dict:
    """--generation: a JSON object of generate() keyword arguments (checked further by set_generation_defaults)."""
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--generation is not valid JSON ({err}): {text!r}") from None
    if not isinstance(settings, dict):
        raise ValueError(f"--generation must be a JSON object of generate() arguments, got {text!r}.")
    return settings


def parse_eval_modes(text: str) -> tuple[str, ...]:
    """--eval_modes "dense,sparse" -> ("dense", "sparse"); an unknown mode is refused before training starts."""
    modes = tuple(mode.strip() for mode in (text or "").split(",") if mode.strip())
    unknown = [mode for mode in modes if mode not in GENERATION_MODES]
    if unknown:
        raise ValueError(f"--eval_modes: unknown mode(s) {unknown}; choose among {list(GENERATION_MODES)}.")
    return modes


def _check_eval_users(cobra_args: CobraTrainingArguments, training_args: TrainingArguments) -> None:
    """--eval_users: -1 (all), 0 (no validation at all) or a count; 0 cannot pick a best model."""
    users = cobra_args.eval_users
    if users is not None and users < -1:
        raise ValueError(f"--eval_users must be -1 (all), 0 (none) or a count of users, got {users}.")
    if users == 0 and training_args.load_best_model_at_end:
        raise ValueError("--eval_users 0 validates no user, so --load_best_model_at_end has nothing to pick by: give "
                         "--eval_users N (or -1 for all).")


def run_training(cobra_args: CobraTrainingArguments, training_args: TrainingArguments, callbacks=None) -> dict:
    """Trains and saves the checkpoint into training_args.output_dir; returns a summary dict.
    callbacks: extra transformers TrainerCallbacks (e.g. to time the validation curve)."""
    from ..safe_io import repair_interrupted

    if cobra_args.max_train_sequences is not None and cobra_args.max_train_sequences < 1:
        raise ValueError(f"--max_train_sequences must be at least 1, got {cobra_args.max_train_sequences} (leave it "
                         "out to train on every sequence).")
    _check_eval_users(cobra_args, training_args)
    repair_interrupted(training_args.output_dir)  # a final save that a kill left half-moved is undone first
    recipe = load_recipe(cobra_args.recipe)  # None: --recipe none
    phase = phase_settings(recipe, cobra_args.id_trunk_epochs, training_args.max_steps, training_args.num_train_epochs)
    phase = default_phase(phase, cobra_args.recipe is not None or cobra_args.id_trunk_epochs is not None,
                          cobra_args.train_only, cobra_args.init_from)
    phase_flag = "--id_trunk_epochs" if cobra_args.id_trunk_epochs is not None else f"--recipe {getattr(recipe, 'name', '')}"
    phase_args = phase_arguments(training_args, phase) if phase else None
    resume, phase_resume = resume_points(training_args.resume_from_checkpoint, training_args.output_dir, bool(phase))
    _check_output_dir(cobra_args, training_args, resume or phase_resume)
    # a two-phase run killed after its main phase: the main phase is not trained again
    main_done = bool(phase_resume) or bool(resume and phase and reached_budget(resume, training_args))
    if phase_resume:
        check_not_finished(phase_resume, phase_args, training_args.output_dir, cobra_args.overwrite, phase=PHASE_DIR)
    elif resume and not main_done:
        check_not_finished(resume, training_args, training_args.output_dir, cobra_args.overwrite)
    elif resume:  # the main phase is over: its phase starts afresh, unless that already happened
        check_phase_not_over(training_args.output_dir, resume, cobra_args.overwrite)
    generation = parse_generation(cobra_args.generation) if cobra_args.generation else None
    extra_modes = parse_eval_modes(cobra_args.eval_modes)
    set_seed(training_args.seed)
    if cobra_args.init_from:
        from ..modeling_cobra import CobraForSequentialRecommendation
        from ..tokenization_cobra import CobraTokenizer

        model = CobraForSequentialRecommendation.from_pretrained(cobra_args.init_from)
        tokenizer = CobraTokenizer.from_pretrained(cobra_args.init_from)
        _check_init_catalog(cobra_args.init_from, tokenizer, cobra_args.catalog)
        prepare_args = read_prepare_args(cobra_args.catalog)
        if cobra_args.recipe is not None and recipe is not None and recipe.model:  # said only when asked for
            logger.warning("--recipe %s: its model settings do not apply with --init_from (the checkpoint's config "
                           "is kept).", recipe.name)
    else:
        model, tokenizer = build_model(cobra_args.catalog, init_text_embeddings=cobra_args.init_text_embeddings,
                                       seed=training_args.seed, **model_settings(recipe, cobra_args.model_overrides))
        prepare_args = read_prepare_args(cobra_args.catalog)
    if cobra_args.train_only:
        _train_only(model, cobra_args)
    check_phase(phase, model, phase_flag, cobra_args.train_only)
    if resume or phase_resume:
        check_same_catalog(resume or phase_resume, model.config.catalog_hash, cobra_args.catalog)
    from_recipe, generation_note = recipe_generation(model, recipe)
    _apply_generation(model, generation, from_recipe, f"--recipe {recipe.name}" if recipe else "--recipe")
    if "dense" in extra_modes and not model.config.history_dense_loss_weight:
        raise ValueError("--eval_modes dense needs the ID-free dense head: train with --history_dense_loss_weight > 0.")
    data_dir = cobra_args.data or prepare_args.get("data_dir")
    if not data_dir:
        raise ValueError("No dataset folder: pass --data DATA_DIR (the catalog does not record one).")
    splits = index_splits(data_dir, tokenizer, max_history=model.config.max_history)
    _check_data_items(splits, data_dir, cobra_args)
    train_split = splits["train"]
    if cobra_args.max_train_sequences is not None:
        train_split = train_split.shuffle(seed=training_args.seed).select(range(min(cobra_args.max_train_sequences, len(train_split))))
    if model.config.dense_logq_correction:
        model.set_item_frequencies(item_slot_counts(train_split, model.config.num_items))
    eval_users = cobra_args.eval_users
    recommendation_users = None if eval_users is not None and eval_users < 0 else eval_users
    # the same random users for the validation loss and Recall/NDCG, the same ones in every run
    validation = sample_split(splits["validation"], None if recommendation_users is None else max(recommendation_users, 1))
    if recommendation_users == 0:  # none: no validation loss either (it used to come from one random user)
        training_args.eval_strategy = IntervalStrategy.NO
    skipped = skip_reason(recipe, cobra_args.select_decoding, bool(cobra_args.generation), recommendation_users)
    plan = None if skipped else plan_decoding(model, recipe, generation_note)  # checked before training
    callbacks = list(callbacks or [])

    def make_trainer(args: TrainingArguments) -> CobraTrainer:
        return CobraTrainer(
            model=model,
            args=args,
            train_dataset=train_split,
            eval_dataset=validation if args.eval_strategy != "no" else None,
            data_collator=CobraDataCollator(tokenizer, max_items=model.config.max_history + 1),
            processing_class=tokenizer,
            recommendation_split=validation if recommendation_users != 0 else None,
            extra_modes=extra_modes,
            callbacks=callbacks,
        )

    trainer = make_trainer(training_args)
    start = time.perf_counter()
    if main_done:
        main = finished_main_phase(trainer, resume, training_args.output_dir)
    else:
        result = trainer.train(resume_from_checkpoint=resume)
        main = {"global_step": result.global_step, "train_loss": round(result.training_loss, 4),
                "log_history": trainer.state.log_history}
    phase_summary = None
    if phase_args is not None:
        trainer, phase_summary = train_id_trunk_phase(model, make_trainer(phase_args), phase_args, phase_resume)
    seconds = time.perf_counter() - start
    summary = {
        "train_sequences": len(train_split),
        "global_step": main["global_step"],
        "train_seconds": round(seconds, 1),  # both phases
        "train_loss": main["train_loss"],
        # how it trained: bf16/fp16 autocast or fp32 (the weights are fp32 either way), on which device, how many processes
        "precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32",
        "device": str(training_args.device),
        "world_size": training_args.world_size,
        "data_dir": str(data_dir),
        "catalog": str(cobra_args.catalog),
        # the run's flags, model fields beside the others (the layout of summaries before model_overrides)
        "cobra_args": {**{k: v for k, v in asdict(cobra_args).items() if k != "model_overrides"},
                       **cobra_args.model_overrides},
        "log_history": main["log_history"],
    }
    if phase_summary is not None:
        summary["id_trunk_phase"] = phase_summary
        if main_done:
            summary["resumed_after_main_phase"] = resume or "the main phase's weights came with the phase's checkpoint"
    # before the final save: generate() with no arguments gives the validated best
    summary["decoding_selection"] = {"skipped": skipped} if skipped else select_decoding(model, tokenizer, validation, plan)
    summary["recipe"] = recipe_record(recipe, model, training_args, cobra_args.init_from, generation_note, phase)
    # the final model, the catalog assets (for adding items later), the summary and the card appear together
    trainer.final_extras.append(lambda stage: final_files(stage, cobra_args.catalog, model, summary))
    trainer.save_model(training_args.output_dir)
    return summary


def _apply_generation(model, generation: dict | None, from_recipe: dict | None = None, recipe_flag: str = "--recipe") -> None:
    """The recipe's generation settings, then --generation's over them, become the model's generate() defaults.
    A catalog smaller than top_k would train into a checkpoint that cannot be loaded: a top_k asked for is refused
    before training, the default one is lowered to the catalog size (with a warning)."""
    num_items = int(model.config.num_items)
    for flag, settings in ((recipe_flag, from_recipe or {}), ("--generation", generation or {})):
        asked = settings.get("top_k", settings.get("recommend_top_k"))
        if asked is not None and isinstance(asked, int) and asked > num_items:
            raise ValueError(
                f"{flag} top_k={asked} asks for more items than the catalog holds ({num_items}); pass a top_k of "
                f"at most {num_items}."
            )
    merged = {**(from_recipe or {}), **(generation or {})}
    top_k = int(getattr(model.generation_config, "recommend_top_k", None) or 10)
    if "top_k" not in merged and "recommend_top_k" not in merged and top_k > num_items:
        merged["top_k"] = num_items  # lowered before the other settings are checked against the catalog
        logger.warning("The catalog holds %d items: the saved generation top_k is lowered from %d to %d "
                       "(set it with --generation '{\"top_k\": N}').", num_items, top_k, num_items)
    if merged:
        try:
            model.set_generation_defaults(**merged)
        except ValueError as err:
            flag = "--generation" if generation else recipe_flag
            if generation and from_recipe:
                flag = f"--generation (over {recipe_flag}'s generation)"
            raise ValueError(f"{flag}: {err}") from None


def main(argv: list[str]) -> int:
    cobra_args, training_args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    summary = run_training(cobra_args, training_args)
    evals = [entry for entry in summary["log_history"] if any(key.startswith("eval_recall@") for key in entry)]
    final = {"output_dir": training_args.output_dir, "global_step": summary["global_step"],
             "train_seconds": summary["train_seconds"], "train_loss": summary["train_loss"]}
    if evals:
        final.update({key: evals[-1][key] for key in evals[-1] if key.startswith("eval_")})
    selection = summary.get("decoding_selection", {})
    if training_args.process_index == 0 and "chosen" in selection:
        sys.stderr.write(f"cobra-hf train: decoding picked on {selection['users']} validation users by "
                         f"{selection['metric']}: {selection['chosen']} {json.dumps(selection['chosen_settings'])}\n")
    if training_args.process_index == 0:
        # one write, by one process: under torchrun the other ranks' output shares this stream
        sys.stdout.write(json.dumps(final) + "\n")
        sys.stdout.flush()
    return 0
