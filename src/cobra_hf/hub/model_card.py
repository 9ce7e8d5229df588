"""Model cards (README.md) for COBRA checkpoints.

`render_model_card` fills `model_cards/cobra_model_card.md` (top level of the repository):
`{{ name }}` placeholders are replaced by values computed here; the YAML front matter is built
with `huggingface_hub.ModelCardData`, so it is what the Hub expects (library_name, license,
tags, datasets and, when evaluation results are known, a `model-index` with Recall@K / NDCG@K
of task type "recommendation").

`write_model_card` writes README.md into a checkpoint folder, but never replaces a README.md
that the user wrote: cards made here carry the marker comment `MARKER`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

# what a card written without a repo id (`cobra-hf train`) says instead; `fill_repo_id` replaces it at push time
PLACEHOLDER_REPO, PLACEHOLDER_MODEL_NAME = "your-name/your-cobra-model", "cobra-model"
MARKER = "<!-- cobra-hf:model-card"
# Cards that libraries write on their own (transformers' Trainer, push_to_hub's default card):
# replacing them loses nothing the user wrote.
_GENERATED_MARKERS = (
    MARKER,
    "<!-- This model card has been generated automatically according to the information the Trainer had access to.",
    "This is the model card of a 🤗 transformers model that has been pushed on the Hub. This model card has been"
    " automatically generated.",
)
TAGS = ["recommendation", "generative-retrieval", "semantic-ids", "cobra"]
# cobra-hf is not on the Python package index: the command line comes from its source repository.
INSTALL_NOTE = ("with cobra-hf installed from its source repository (`pip install -e .` in a checkout; it is not "
                "published on the Python package index)")
TEMPLATE_NAME = "cobra_model_card.md"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_METRIC = re.compile(r"^(?:eval_|test_|valid_|validation_)?(recall|ndcg|hr|hit_rate|mrr)@(\d+)$", re.IGNORECASE)
_METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "hr": "HR", "hit_rate": "HitRate", "mrr": "MRR"}

# config.json keys worth showing, with their labels (others are left out of the card).
_CONFIG_ROWS = [
    ("num_items", "catalog items"),
    ("level_sizes", "semantic ID codebook sizes (per level)"),
    ("hidden_size", "hidden size"),
    ("num_attention_heads", "attention heads"),
    ("intermediate_size", "MLP size"),
    ("encoder_layers", "item-text encoder layers"),
    ("decoder_layers", "decoder layers"),
    ("max_history", "max history length (items)"),
    ("max_text_tokens", "item text tokens"),
    ("text_embedding_dim", "sentence embedding size"),
    ("contrastive_temperature", "contrastive temperature"),
    ("num_dense_negatives", "InfoNCE negatives (0 in-batch, -1 catalog, n sampled + in-batch)"),
    ("dense_logq_correction", "InfoNCE popularity (log Q) correction"),
    ("id_trunk", "ID trunk (a second backbone for the semantic IDs)"),
    ("catalog_hash", "catalog hash"),
]
# training_info keys with their labels and formatting.
_TRAINING_ROWS = [
    ("dataset", "data"),
    ("recipe", "recipe (`cobra-hf train --recipe`)"),
    ("num_train_sequences", "training sequences"),
    ("num_users", "users"),
    ("epochs", "epochs"),
    ("steps", "optimizer steps"),
    ("batch_size", "batch size"),
    ("learning_rate", "learning rate"),
    ("train_runtime", "training time"),
    ("device", "hardware"),
    ("final_loss", "final training loss"),
    ("seed", "seed"),
]


def template_path() -> Path:
    """Where the card template lives. The source of truth is `model_cards/cobra_model_card.md` at the top of the
    source tree; `cobra_hf/hub/cobra_model_card.md` links to it and is copied as a plain file into wheels
    (package data), so installed copies find it next to this module."""
    packaged = Path(__file__).resolve().with_name(TEMPLATE_NAME)  # resolve() follows the link in a source tree
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[3] / "model_cards" / TEMPLATE_NAME


def _fill(template: str, values: dict[str, str]) -> str:
    """Replace every `{{ name }}`; a placeholder without a value is a ValueError."""
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)} - set(values))
    if missing:
        raise ValueError(f"The model card template uses placeholders with no value: {', '.join(missing)}.")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def _format_value(key: str, value) -> str:
    if key == "train_runtime" and isinstance(value, (int, float)):
        minutes, seconds = divmod(float(value), 60)
        return f"{int(minutes)} min {seconds:.0f} s" if minutes else f"{seconds:.1f} s"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return " x ".join(str(v) for v in value) if key == "level_sizes" else ", ".join(str(v) for v in value)
    return str(value)


def _table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"| {label} | {value} |" for label, value in rows)


def _metrics(eval_results: dict | None) -> list[tuple[str, str, int, float]]:
    """(metric type, pretty name, k, value) for every Recall@K / NDCG@K / ... in `eval_results`, sorted."""
    out, seen = [], set()
    for key, value in (eval_results or {}).items():
        match = _METRIC.match(str(key))
        if match is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        kind, k = match.group(1).lower(), int(match.group(2))
        if (kind, k) in seen:  # "test_recall@5" and "recall@5": the first one wins
            continue
        seen.add((kind, k))
        out.append((f"{kind}@{k}", f"{_METRIC_NAMES[kind]}@{k}", k, float(value)))
    order = list(_METRIC_NAMES)
    return sorted(out, key=lambda m: (order.index(m[0].split("@")[0]), m[2]))


def _card_data(eval_results, dataset_name, repo_id, license):
    from huggingface_hub import EvalResult, ModelCardData

    model_name = (repo_id or PLACEHOLDER_MODEL_NAME).split("/")[-1]
    metrics = _metrics(eval_results)
    eval_list = None
    if metrics:
        split = str((eval_results or {}).get("split", "test"))
        eval_list = [
            EvalResult(
                task_type="recommendation",
                task_name="Sequential recommendation",
                dataset_type=dataset_name or "custom",
                dataset_name=dataset_name or "custom",
                dataset_split=split,
                metric_type=metric_type,
                metric_name=f"{pretty} (full ranking, leave-one-out)",
                metric_value=round(value, 6),
            )
            for metric_type, pretty, _, value in metrics
        ]
    data = ModelCardData(
        library_name="transformers",
        license=license,
        tags=list(TAGS),
        datasets=[dataset_name] if dataset_name else None,
        model_name=model_name if eval_list else None,
        eval_results=eval_list,
    )
    return data.to_yaml()


def render_model_card(
    config_dict: dict,
    training_info: dict | None = None,
    eval_results: dict | None = None,
    dataset_name: str | None = None,
    repo_id: str | None = None,
    *,
    license: str = "apache-2.0",
    example_history: list[str] | None = None,
    template: str | os.PathLike | None = None,
) -> str:
    """The README.md text of a COBRA checkpoint.

    Args:
        config_dict: the model's config (`model.config.to_dict()` or config.json).
        training_info: what the training run did, e.g. `{"steps": 5000, "epochs": 10,
            "train_runtime": 812.5, "batch_size": 256, "learning_rate": 1e-3, "device": "1x H100",
            "num_train_sequences": 22363}`; unknown keys are listed as they are.
        eval_results: metrics such as `{"recall@5": 0.051, "ndcg@10": 0.033}` (a `test_`/`eval_`
            prefix is allowed); an optional `"split"` names the split. Metrics go in the table and
            in the YAML `model-index`.
        dataset_name: the training data (e.g. "amazon-beauty"), for `datasets:` and the text.
        repo_id: the Hub repo the card is for; used in the code examples.
        license: SPDX-like id the Hub knows (default "apache-2.0").
        example_history: item ids shown in the usage example.
        template: another template file (default: `model_cards/cobra_model_card.md`).
    """
    path = Path(template) if template is not None else template_path()
    if not path.is_file():
        raise FileNotFoundError(f"The model card template {path} does not exist.")
    training_info = dict(training_info or {})
    repo = repo_id or PLACEHOLDER_REPO
    history = list(example_history or ["ITEM_ID_1", "ITEM_ID_2", "ITEM_ID_3"])

    config_rows = [(label, _format_value(key, config_dict[key])) for key, label in _CONFIG_ROWS
                   if config_dict.get(key) not in (None, "", [])]
    if not config_rows:
        config_rows = [("model_type", str(config_dict.get("model_type", "cobra")))]

    if training_info:
        known = [(label, _format_value(key, training_info[key])) for key, label in _TRAINING_ROWS
                 if key in training_info]
        known_keys = {key for key, _ in _TRAINING_ROWS}
        extra = [(key.replace("_", " "), _format_value(key, value)) for key, value in training_info.items()
                 if key not in known_keys]
        training_section = (
            "Trained with the `transformers` Trainer (`cobra-hf train`) on next-item prediction: the\n"
            "sparse loss is cross-entropy over semantic ID codes, the dense loss is an in-batch\n"
            "contrastive loss between predicted and encoded item vectors.\n\n"
            "| | |\n|---|---|\n" + _table(known + extra)
        )
    else:
        training_section = "No training details were recorded for this checkpoint."

    metrics = _metrics(eval_results)
    if metrics:
        split = (eval_results or {}).get("split", "test")
        evaluation_section = (
            f"Full-ranking evaluation over the whole catalog on the leave-one-out **{split}** split"
            f"{' of ' + dataset_name if dataset_name else ''} (`cobra-hf evaluate`):\n\n"
            "| metric | value |\n|---|---|\n" + _table([(pretty, f"{value:.4f}") for _, pretty, _, value in metrics])
        )
    else:
        evaluation_section = "Not evaluated yet: run `cobra-hf evaluate` to get Recall@K and NDCG@K."

    values = {
        "card_data": _card_data(eval_results, dataset_name, repo_id, license),
        "title": repo.split("/")[-1],
        "repo_id": repo,
        "dataset_sentence": f" It was trained on **{dataset_name}**." if dataset_name else "",
        "example_history": ", ".join(json.dumps(str(item)) for item in history),
        "example_history_cli": " ".join(history),
        "config_table": _table(config_rows),
        "training_section": training_section,
        "evaluation_section": evaluation_section,
        "num_items": config_dict.get("num_items", "?"),
        "max_history": config_dict.get("max_history", "?"),
        "install_note": INSTALL_NOTE,
    }
    return _fill(path.read_text(encoding="utf-8"), values)


def is_cobra_model_card(text: str) -> bool:
    """Whether a README.md was written by cobra-hf (it carries our marker comment)."""
    return MARKER in text


def fill_repo_id(text: str, repo_id: str) -> str:
    """A cobra-hf card written without a repo id, naming `repo_id` instead of the placeholder: its title, usage code,
    command line and model-index name (what `push` uploads). Any other text is returned unchanged."""
    if MARKER not in text or PLACEHOLDER_REPO not in text:
        return text
    name = repo_id.split("/")[-1]
    text = text.replace(PLACEHOLDER_REPO, repo_id)
    text = re.sub(rf"^# {re.escape(PLACEHOLDER_REPO.split('/')[-1])}$", f"# {name}", text, flags=re.M)
    return re.sub(rf"^(\s*-?\s*name: ){re.escape(PLACEHOLDER_MODEL_NAME)}$", rf"\g<1>{name}", text, flags=re.M)


def is_generated_model_card(text: str) -> bool:
    """Whether a README.md was written by a program (cobra-hf, the Trainer, push_to_hub), not by a person."""
    return any(marker in text for marker in _GENERATED_MARKERS)


def write_model_card(save_directory: str | os.PathLike, *args, overwrite_user_card: bool = False, **kwargs) -> bool:
    """Write README.md into `save_directory` (arguments as `render_model_card`).

    A README.md that the user wrote is left as it is and False is returned, unless
    `overwrite_user_card=True`; cards written by cobra-hf (marker comment) or generated by
    transformers (the Trainer's or push_to_hub's default card) are replaced. Returns True when
    the card was written.
    """
    folder = Path(save_directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"The checkpoint folder {folder} does not exist.")
    readme = folder / "README.md"
    if readme.exists() and not overwrite_user_card:
        if not is_generated_model_card(readme.read_text(encoding="utf-8", errors="replace")):
            return False
    write_card_text(readme, render_model_card(*args, **kwargs))
    return True


def write_card_text(readme: Path, text: str) -> None:
    """Writes a card aside (`.README.md.tmp`, which push never uploads) and renames it in: the old card or the new."""
    tmp = readme.with_name(".README.md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, readme)
