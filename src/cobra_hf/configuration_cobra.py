"""CobraConfig: every size and switch of the COBRA model (saved as config.json with every checkpoint)."""

from __future__ import annotations

from transformers import PreTrainedConfig

CONFIG_FORMAT_VERSION = 1
# fields of older configs that earned no measured gain and were removed: a saved config that carries one still loads
# (the field is dropped silently), unless it switched the removed behaviour on (REMOVED_BEHAVIOURS: a non-zero loss
# weight, or an option that changes what the checkpoint computes): then it is refused rather than ignored
REMOVED_FIELDS = ("catalog_dense_loss_weight", "catalog_refresh_steps", "within_id_loss_weight",
                  "id_trunk_shared_items", "id_trunk_hidden_size",
                  "id_trunk_shared_decoder", "sparse_loss_valid_codes", "tie_code_embeddings",
                  "sparse_label_smoothing", "tie_item_output_embeddings")
REMOVED_BEHAVIOURS = {"catalog_dense_loss_weight": "the whole-catalog InfoNCE against a bank of item vectors",
                      "within_id_loss_weight": "the InfoNCE of the ID-conditioned head against the items of its own ID",
                      "id_trunk_shared_items": "an ID trunk reading the main backbone's item vectors",
                      "id_trunk_hidden_size": "an ID trunk narrower than the backbone",
                      "id_trunk_shared_decoder": "an ID trunk running the main backbone's decoder",
                      "sparse_loss_valid_codes": "the semantic-ID cross-entropy over the codes valid after each prefix",
                      "tie_code_embeddings": "code heads tied to the input code embeddings",
                      "sparse_label_smoothing": "label smoothing of the code cross-entropy",
                      "tie_item_output_embeddings": "item output rows tied to the per-item input embeddings"}
NUM_SPECIAL_TOKENS = 2  # [PAD] = 0, [UNK] = 1; code tokens follow
GENERATION_MODES = ("cobra", "sparse", "dense", "no_fusion")
# generate(beam_fusion=...): "paper" (Eq. 7, the default) or "joint" (cobra_generation.joint_fusion)
BEAM_FUSION_METHODS = ("paper", "joint")


def switch(name: str, value) -> bool:
    """An on/off field as a bool: true/false (or 1/0); anything else, e.g. the JSON string "false" that bool() reads as
    True, is a one-line ValueError naming the field."""
    numpy_bool = type(value).__name__ in ("bool", "bool_")
    if isinstance(value, (bool, int)) and value in (0, 1) or numpy_bool:
        return bool(value)
    raise ValueError(f"{name} must be true or false, got {value!r}.")


class CobraConfig(PreTrainedConfig):
    r"""Configuration of [`CobraForSequentialRecommendation`].

    Catalog (filled in from a prepared catalog, see `cobra_hf.training.build_model`):
        level_sizes (`list[int]`, defaults to `[32, 32, 32]`): codes per semantic-ID level; COBRA's public
            setting is 3 levels x 32 codes.
        num_items (`int`): items in the catalog; the catalog tensors saved in model.safetensors have this many rows.
        text_vocab_size (`int`): size of the compact sub-word vocabulary of the item texts (0 = pad, 1 = [CLS]).
        max_text_tokens (`int`): sub-word tokens kept per item text, [CLS] included.
        text_embedding_dim (`int`): width of the frozen sentence embedding of each item added (through a learned
            projection) to its dense vector; 0 turns that off and gives the paper's text-encoder-only vector.
        catalog_hash (`str`): fingerprint of (item ids, semantic IDs); a tokenizer must carry the same one.
    Item-text encoder (the paper: a 1-layer Transformer encoder, [CLS] output = dense vector):
        encoder_layers (`int`, defaults to 1)
    Causal decoder over interleaved sparse/dense tokens (the paper: 2 layers):
        decoder_layers (`int`, defaults to 2)
        hidden_size, num_attention_heads, intermediate_size: shared by encoder and decoder.
        dropout (`float`, defaults to 0.1), attention_dropout (`float`, defaults to 0.0: a non-zero value makes
            PyTorch's attention fall back to its slow unfused path on CPU)
        use_item_embeddings (`bool`, defaults to False): add a learned per-item embedding to the text-encoder
            vector (collaborative signal beyond the text; not in the paper; new items start at zero).
        max_history (`int`, defaults to 20): items of history the model reads (the paper's protocol caps at 20).
        length_buckets (`int`, defaults to 8): `forward` sorts a batch's rows by history length and runs the decoder
            on this many groups of rows, each cut to its own longest row: the same numbers with far less padding
            (a random Beauty batch of 256 holds 6.2 items per row on average but is padded to 21). 1 = one padded
            batch.
    Losses (L = sparse_loss_weight * CE + dense_loss_weight * InfoNCE; the paper weights both 1):
        contrastive_temperature (`float`, defaults to 0.2): InfoNCE temperature over cosine similarities; the paper gives none,
            open reimplementations use 0.2.
        history_dense_loss_weight (`float`): weight of an extra InfoNCE head that predicts the next item's dense
            vector *before* its ID (from the last history position); it powers the "dense" (no ID) ablation mode,
            dense_guided_ids and beam_fusion_dense_psi. At 0 the model has no such head (nothing would train it),
            and generate refuses those settings.
        num_dense_negatives (`int`, defaults to 0): negatives of both InfoNCE losses in training. 0: the other
            distinct items of the batch (the paper). n > 0: also n catalog items drawn uniformly per step. -1: the
            whole catalog (a full softmax; every step encodes every item, for small catalogs or accelerators).
            Extra negatives go through the item encoder with the batch's items. Evaluation scores the whole
            catalog when this is non-zero.
        dense_logq_correction (`bool`, defaults to False): subtract log Q(item) from every InfoNCE logit in training,
            Q the probability that the item is among a batch's columns, from the items' training frequencies
            (`model.set_item_frequencies`). In-batch negatives are drawn by popularity, so without it the dense
            scores learn popularity out (sampling-bias correction of Yi et al., RecSys 2019; not in the paper).
        item_deletion (`float`, defaults to 0.0): in training only, each item of a sequence is deleted with this
            chance in every forward (the rest close ranks, so the model sees a random subsequence and its skip
            transitions; a row keeps all items when fewer than 2 would stay). Data augmentation against
            memorising the training sequences (not in the paper).
    The ID path (not in the paper):
        id_trunk (`bool`, defaults to False): a second backbone of the same sizes, with its own item encoder and code
            heads, trained by the sparse loss alone, whose code probabilities drive the beam search; the main
            backbone keeps every loss and gives every dense vector. Beside the dense losses one backbone predicts
            the IDs about a fifth worse than alone, and its beams then add nothing to its dense mode; twice the
            parameters and decoding work (docs/EXPERIMENTS.md, role pairs; `cobra_id_trunk.py`).
        item_output_embeddings (`bool`, defaults to False): a learned output row per item; each code of level 2..L
            gets the dot product of the decoder output with the mean row of the items under the prefix it completes
            (`cobra_item_output.py`). Not in the paper. Measured on the ID-only model (issue 21, validation):
            +7.6% / +4.5% Recall@10 / NDCG@10 on text RQ-KMeans IDs (3 seeds), +2.8% / +1.0% on collaborative IDs
            (2 seeds); with dropout 0.2 a further +4.1% / +3.9% on text IDs (3 seeds; test .0645 / .0380, TIGER
            .0648 / .0384); training 18% and 20-beam generation 12% slower, 24 MB more training state on Beauty
            (`benchmarks/bench_option_cost.py`). With id_trunk the rows are the trunk's (its heads drive the beams).
        item_output_weight_decay (`float`, defaults to -1.0): the decoupled weight decay of those rows alone (their own
            optimizer group in `CobraTrainer`); -1 = the run's `--weight_decay`, as every other weight. Not in the
            paper: a regulariser for rows that memorise (held-out code loss lowest at epoch 5 of 32). 1.0 with dropout
            0.2 on text RQ-KMeans IDs: +2.7% / +2.7% Recall@10 / NDCG@10 over dropout 0.2 alone (3 seeds each,
            validation); test .0659 / .0383 (3 seeds) against TIGER's .0648 / .0384.
    """

    model_type = "cobra"

    def __init__(
        self,
        level_sizes: list[int] | None = None,
        num_items: int = 0,
        text_vocab_size: int = 3,
        max_text_tokens: int = 32,
        text_embedding_dim: int = 0,
        catalog_hash: str = "",
        hidden_size: int = 128,
        num_attention_heads: int = 4,
        intermediate_size: int = 512,
        encoder_layers: int = 1,
        decoder_layers: int = 2,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        use_item_embeddings: bool = False,
        max_history: int = 20,
        length_buckets: int = 8,
        contrastive_temperature: float = 0.2,
        sparse_loss_weight: float = 1.0,
        dense_loss_weight: float = 1.0,
        history_dense_loss_weight: float = 0.0,
        num_dense_negatives: int = 0,
        dense_logq_correction: bool = False,
        item_deletion: float = 0.0,
        id_trunk: bool = False,
        item_output_embeddings: bool = False,
        item_output_weight_decay: float = -1.0,
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        format_version: int = CONFIG_FORMAT_VERSION,
        **kwargs,
    ):
        self.level_sizes = list(level_sizes) if level_sizes is not None else [32, 32, 32]
        self.num_items = num_items
        self.text_vocab_size = text_vocab_size
        self.max_text_tokens = max_text_tokens
        self.text_embedding_dim = text_embedding_dim
        self.catalog_hash = catalog_hash
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.use_item_embeddings = switch("use_item_embeddings", use_item_embeddings)
        self.max_history = max_history
        self.length_buckets = int(length_buckets)
        self.contrastive_temperature = contrastive_temperature
        self.sparse_loss_weight = sparse_loss_weight
        self.dense_loss_weight = dense_loss_weight
        self.history_dense_loss_weight = history_dense_loss_weight
        self.num_dense_negatives = int(num_dense_negatives)
        self.dense_logq_correction = switch("dense_logq_correction", dense_logq_correction)
        self.item_deletion = float(item_deletion)
        self.id_trunk = switch("id_trunk", id_trunk)
        self.item_output_embeddings = switch("item_output_embeddings", item_output_embeddings)
        self.item_output_weight_decay = float(item_output_weight_decay)
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.format_version = format_version
        _drop_removed_fields(kwargs)
        kwargs.setdefault("pad_token_id", 0)
        super().__init__(**kwargs)
        self.validate_cobra()

    def validate_cobra(self) -> None:
        """Raises a ValueError naming the first field with a bad value."""
        if self.format_version > CONFIG_FORMAT_VERSION:
            raise ValueError(
                f"format_version {self.format_version} comes from a newer cobra-hf (this code reads up to "
                f"{CONFIG_FORMAT_VERSION}): upgrade cobra-hf to load this checkpoint."
            )
        if not self.level_sizes or any(int(size) < 1 for size in self.level_sizes):
            raise ValueError(f"level_sizes must be a non-empty list of positive ints, got {self.level_sizes}.")
        for name in ("hidden_size", "num_attention_heads", "intermediate_size", "decoder_layers", "max_history",
                     "max_text_tokens", "text_vocab_size", "length_buckets"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("num_items", "encoder_layers", "text_embedding_dim"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})."
            )
        for name in ("dropout", "attention_dropout", "item_deletion"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}.")
        if not float(self.contrastive_temperature) > 0.0:
            raise ValueError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature}.")
        for name in ("sparse_loss_weight", "dense_loss_weight", "history_dense_loss_weight"):
            if float(getattr(self, name)) < 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not (self.item_output_weight_decay >= 0.0 or self.item_output_weight_decay == -1.0):
            raise ValueError(f"item_output_weight_decay must be >= 0, or -1 for the run's --weight_decay, got "
                             f"{self.item_output_weight_decay}.")
        if self.item_output_weight_decay != -1.0 and not self.item_output_embeddings:
            raise ValueError("item_output_weight_decay is the weight decay of the per-item output rows: set "
                             "item_output_embeddings to true, or leave it at -1.")
        if self.num_dense_negatives < -1:
            raise ValueError(
                f"num_dense_negatives must be -1 (whole catalog), 0 (in-batch) or a positive count, got {self.num_dense_negatives}."
            )

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def level_offsets(self) -> list[int]:
        """Token id of code 0 of each level (see `level_offsets`)."""
        return level_offsets(self.level_sizes)

    @property
    def code_vocab_size(self) -> int:
        """[PAD], [UNK] and one token per (level, code): the same layout as CobraTokenizer."""
        return 2 + int(sum(self.level_sizes))


def level_offsets(level_sizes) -> list[int]:
    """Token id of code 0 of each level: [PAD] and [UNK] first, then each level's codes in turn. The one definition
    of the token layout that CobraTokenizer and the model share: code c of level l is token level_offsets[l] + c."""
    offsets, start = [], NUM_SPECIAL_TOKENS
    for size in level_sizes:
        offsets.append(start)
        start += int(size)
    return offsets


def _drop_removed_fields(kwargs: dict) -> None:
    """Drops REMOVED_FIELDS from a config's keyword arguments; a removed behaviour that was switched on is refused in
    one line (the checkpoint was trained with an objective or option this version no longer has)."""
    for name in REMOVED_FIELDS:
        value = kwargs.pop(name, None)
        if name in REMOVED_BEHAVIOURS and value:
            raise ValueError(
                f"{name}={value}: {REMOVED_BEHAVIOURS[name]} was removed from cobra-hf (it earned no measured gain); "
                "set it to 0 (off)."
            )
