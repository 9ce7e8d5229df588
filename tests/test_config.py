"""CobraConfig: validation with ValueErrors naming the field, dict/JSON round trips, future formats refused."""

from __future__ import annotations

import pytest

from cobra_hf import CobraConfig
from cobra_hf.configuration_cobra import CONFIG_FORMAT_VERSION

BAD_VALUES = [
    ("level_sizes", []),
    ("level_sizes", [4, 0]),
    ("hidden_size", 0),
    ("num_attention_heads", 0),
    ("intermediate_size", 0),
    ("decoder_layers", 0),
    ("max_history", 0),
    ("max_text_tokens", 0),
    ("text_vocab_size", 0),
    ("num_items", -1),
    ("encoder_layers", -1),
    ("text_embedding_dim", -3),
    ("dropout", 1.0),
    ("dropout", -0.1),
    ("attention_dropout", 1.5),
    ("contrastive_temperature", 0.0),
    ("contrastive_temperature", -0.2),
    ("sparse_loss_weight", -1.0),
    ("dense_loss_weight", -1.0),
    ("history_dense_loss_weight", -0.5),
    ("catalog_dense_loss_weight", -1.0),
    ("length_buckets", 0),
    ("item_deletion", 1.0),
    ("item_deletion", -0.2),
    ("sparse_label_smoothing", 1.0),
    ("sparse_label_smoothing", -0.1),
    # switches: a JSON string "false" (from --model_config or a recipe file) used to count as True through bool()
    ("use_item_embeddings", "false"),
    ("dense_logq_correction", "no"),
    ("id_trunk", 2),
]


@pytest.mark.parametrize("field,value", BAD_VALUES)
def test_bad_value_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        CobraConfig(**{field: value})


def test_heads_must_divide_hidden():
    with pytest.raises(ValueError, match="num_attention_heads"):
        CobraConfig(hidden_size=30, num_attention_heads=4)


def test_defaults_and_derived_sizes():
    config = CobraConfig()
    assert config.model_type == "cobra"
    assert config.level_sizes == [32, 32, 32] and config.num_levels == 3
    assert config.code_vocab_size == 2 + 96
    assert config.pad_token_id == 0
    assert config.format_version == CONFIG_FORMAT_VERSION
    assert CobraConfig(level_sizes=(8, 4)).code_vocab_size == 14


def test_round_trip_dict_and_json(tmp_path):
    config = CobraConfig(
        level_sizes=[5, 6, 7], num_items=11, hidden_size=24, num_attention_heads=3, intermediate_size=40,
        contrastive_temperature=0.07, history_dense_loss_weight=0.3, text_embedding_dim=9, catalog_hash="abc123",
    )
    again = CobraConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert again.level_sizes == [5, 6, 7] and again.contrastive_temperature == 0.07 and again.catalog_hash == "abc123"
    config.save_pretrained(tmp_path)
    loaded = CobraConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


def test_future_format_version_refused(tmp_path):
    data = CobraConfig().to_dict()
    data["format_version"] = CONFIG_FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="format_version"):
        CobraConfig.from_dict(data)
    CobraConfig(format_version=CONFIG_FORMAT_VERSION).save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text().replace(
        f'"format_version": {CONFIG_FORMAT_VERSION}', f'"format_version": {CONFIG_FORMAT_VERSION + 1}'
    )
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match="format_version"):
        CobraConfig.from_pretrained(tmp_path)


def test_switches_take_true_false_and_one_zero():
    config = CobraConfig(use_item_embeddings=0, dense_logq_correction=True, id_trunk=False)
    assert config.use_item_embeddings is False and config.dense_logq_correction is True and config.id_trunk is False


def test_model_config_json_and_recipe_switches_refuse_strings(tmp_path):
    from cobra_hf.training.recipes import model_settings, recipe_from_dict
    from cobra_hf.training.train import read_model_config

    with pytest.raises(ValueError, match="use_text_embeddings must be true or false, got 'false'"):
        read_model_config('{"use_text_embeddings": "false"}')
    assert read_model_config('{"use_text_embeddings": false}') == {"text_embedding_dim": 0}
    recipe = recipe_from_dict({"model": {"use_text_embeddings": "false"}}, "r.json")
    with pytest.raises(ValueError, match="use_text_embeddings must be true or false"):
        model_settings(recipe, {})
