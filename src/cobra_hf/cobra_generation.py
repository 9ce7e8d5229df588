"""Coarse-to-fine generation (COBRA, Sec. 3.3): a beam search over the catalog's semantic IDs, a dense vector per beam,
the nearest items under each beam's ID, ranked by BeamFusion.

`generate(decoder, ...)` is the one decoder for a single model and an ensemble alike: it reads them only through
`CoarseToFineDecoder`, a small protocol. The decoding mode and the fusion are table look-ups of small functions
(`CANDIDATES`, `FUSIONS`), and dense-guided IDs ride through the same beam search as extra rows ("forced" IDs).

Arguments: `top_k` is the number of recommendations K (there is no sampling, so it has no other meaning here; do_sample
is refused). generation_config.json stores it as `recommend_top_k` and the mode as `recommend_mode`, because
transformers' GenerationConfig already has a `top_k` (its sampling filter).

Shapes: B users, H history items, L levels, M beams, G guided IDs, P items per ID (padded), N candidates per beam,
D vector width, I catalog items, K recommendations.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from transformers import GenerationConfig
from transformers.utils import ModelOutput

from .cobra_catalog_index import SemanticIdIndex, prefix_keys  # noqa: F401  (re-exported: tests and scripts use them)
from .cobra_fusion import (beam_fusion, joint_fusion, mask_items, nearest_items, top_k_items,  # noqa: F401
                           warn_short_rows)
from .configuration_cobra import BEAM_FUSION_METHODS, GENERATION_MODES, switch

# beam_fusion: "paper" (Eq. 7, per-beam softmax over cosines) or "joint" (one softmax over all beams' candidates,
# see cobra_fusion.joint_fusion); beam_fusion_dense_psi (psi_h) weighs the ID-free prediction in "joint".
DEFAULT_GENERATION = dict(
    num_beams=20,
    num_candidates=10,
    dense_guided_ids=0,
    recommend_top_k=10,
    beam_fusion_tau=0.9,
    beam_fusion_psi=16.0,
    beam_fusion="paper",
    beam_fusion_dense_psi=0.0,
    recommend_mode="cobra",
    exclude_history=False,
    use_faiss=False,
    do_sample=False,
)
# BeamFusion weights above this are refused: the paper's are 0.9 and 16, and 1e38 already overflows fp32 scores
MAX_FUSION_WEIGHT = 1e4
GENERATION_FILE = "generation_config.json"  # transformers' name for it
# generate() argument -> its name in DEFAULT_GENERATION / generation_config.json (see the module docstring)
ARGUMENT_ALIASES = {"top_k": "recommend_top_k", "mode": "recommend_mode"}
SETTING_NAMES = {stored: given for given, stored in ARGUMENT_ALIASES.items()}
# transformers generate() arguments that would do nothing here: refused, so that nobody relies on them
NOT_APPLICABLE = {
    "tokenizer": "histories come as CobraTokenizer output and decoding needs no tokenizer",
    "return_dict_in_generate": "generate always returns a CobraGenerationOutput",
    "max_new_tokens": "exactly one item (its num_levels codes) is decoded",
}


@dataclass
class CobraGenerationOutput(ModelOutput):
    """item_indices: Long[B, K] recommended catalog items, best first (-1 only if the catalog has too few items);
    scores: Float[B, K] their ranking scores (BeamFusion Phi in "cobra" mode);
    semantic_ids: Long[B, M, L] the beams' IDs (codes), best first; beam_scores: Float[B, M] their log-probs;
    beam_vectors: Float[B, M, D] the dense vector predicted for each beam."""

    item_indices: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    semantic_ids: torch.Tensor | None = None
    beam_scores: torch.Tensor | None = None
    beam_vectors: torch.Tensor | None = None


class CoarseToFineDecoder(Protocol):
    """What `generate` reads from a model: CobraForSequentialRecommendation and CobraEnsemble implement it."""

    config: object  # a CobraConfig: num_levels, level_sizes, num_items, max_history, history_dense_loss_weight
    generation_config: GenerationConfig
    training: bool
    item_codes: torch.Tensor  # Long[I, L]

    @property
    def id_index(self) -> SemanticIdIndex: ...

    def check_inputs(self, input_ids, attention_mask, item_index) -> torch.Tensor:
        """Validates tokenizer output; returns the item mask Bool[B, H]."""

    def all_item_vectors(self, normalized: bool = True) -> torch.Tensor:
        """The catalog's L2-normalised vectors Float[I, D]."""

    def faiss_index(self):
        """A faiss inner-product index over all_item_vectors()."""

    def prefill(self, input_ids, item_mask, item_index) -> tuple[torch.Tensor, object]:
        """Reads the histories: (the last position's output Float[B, D], a cache for `step`)."""

    def step(self, codes: torch.Tensor, level: int, positions: torch.Tensor, cache) -> torch.Tensor:
        """Feeds code tokens Long[R] of `level` at item positions Long[R]; returns outputs Float[R, D]."""

    def history_query(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """The ID-free dense prediction v_0, L2-normalised, Float[B, D]."""

    def level_log_probs(self, hidden: torch.Tensor, level: int, allowed: torch.Tensor,
                        prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities Float[..., K_l] of level `level`'s codes over the allowed ones Bool[..., K_l], after the
        codes prefix Long[..., level] (None at level 0)."""

    def beam_vectors(self, hidden: torch.Tensor) -> torch.Tensor:
        """The dense vector Float[..., D] predicted for a completed ID from the output at its last code."""


# ---------------------------------------------------------------------------------------------------- settings
def resolve_settings(config, base: GenerationConfig, kwargs: dict) -> dict:
    """generate() keyword arguments over the generation config `base`, checked against the model's `config`: a
    ValueError names the first wrong argument. Returns a dict keyed like DEFAULT_GENERATION."""
    settings = {name: getattr(base, name, default) for name, default in DEFAULT_GENERATION.items()}
    kwargs = {ARGUMENT_ALIASES.get(name, name): value for name, value in kwargs.items()}
    refused = sorted(set(kwargs) & set(NOT_APPLICABLE))
    if refused:
        raise ValueError(f"generate() does not take {refused[0]}: {NOT_APPLICABLE[refused[0]]}.")
    unknown = set(kwargs) - set(settings)
    if unknown:
        takes = sorted(SETTING_NAMES.get(name, name) for name in settings)
        raise ValueError(f"generate() got unknown arguments {sorted(unknown)}; it takes {takes}.")
    settings.update(kwargs)
    if settings["do_sample"]:
        raise ValueError("do_sample=True is not supported: COBRA decoding is deterministic beam search.")
    if settings["recommend_mode"] not in GENERATION_MODES:
        raise ValueError(f"mode must be one of {GENERATION_MODES}, got {settings['recommend_mode']!r}.")
    for name in ("num_beams", "num_candidates", "recommend_top_k", "dense_guided_ids"):
        settings[name] = _whole_number(SETTING_NAMES.get(name, name), settings[name])
    for name in ("exclude_history", "use_faiss"):
        settings[name] = switch(name, settings[name])  # "false" from JSON would count as True
    for name in ("num_beams", "num_candidates", "recommend_top_k"):
        if int(settings[name]) < 1:
            raise ValueError(f"{SETTING_NAMES.get(name, name)} must be at least 1, got {settings[name]}.")
    if int(settings["dense_guided_ids"]) < 0:
        raise ValueError(f"dense_guided_ids must be >= 0, got {settings['dense_guided_ids']}.")
    if settings["beam_fusion"] not in BEAM_FUSION_METHODS:
        raise ValueError(f"beam_fusion must be one of {BEAM_FUSION_METHODS}, got {settings['beam_fusion']!r}.")
    for name in ("beam_fusion_tau", "beam_fusion_psi", "beam_fusion_dense_psi"):
        try:
            settings[name] = float(settings[name])
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {settings[name]!r}.") from None
        if not math.isfinite(settings[name]):
            raise ValueError(f"{name} must be finite, got {settings[name]}.")
        if settings[name] < 0:  # a negative weight ranks the least likely beams and least similar items first
            raise ValueError(f"{name} must be >= 0, got {settings[name]}.")
        if settings[name] > MAX_FUSION_WEIGHT:  # finite in Python, inf in fp32: the fused scores would be NaN
            raise ValueError(f"{name} must be at most {MAX_FUSION_WEIGHT:g}, got {settings[name]:g}.")
    if not config.history_dense_loss_weight:
        _refuse_history_head_settings(settings)
    if int(settings["recommend_top_k"]) > config.num_items:
        raise ValueError(
            f"top_k={settings['recommend_top_k']} asks for more items than the catalog holds ({config.num_items})."
        )
    return settings


def _whole_number(name: str, value) -> int:
    """A count setting as an int; a bool, a string or a fraction is refused (int() would read True as 1, 2.9 as 2)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def _refuse_history_head_settings(settings: dict) -> None:
    """The settings that read the ID-free dense head, refused for a model trained without it."""
    if int(settings["dense_guided_ids"]):
        raise ValueError("dense_guided_ids needs the ID-free dense head: train with history_dense_loss_weight > 0.")
    if settings["recommend_mode"] == "dense":
        raise ValueError("mode='dense' needs the ID-free dense head, which this model was trained without: "
                         "train with history_dense_loss_weight > 0 (--history_dense_loss_weight).")
    if settings["beam_fusion_dense_psi"]:
        raise ValueError("beam_fusion_dense_psi needs the ID-free dense head: train with history_dense_loss_weight > 0.")


def merged_generation_config(decoder, generation_config: GenerationConfig | None) -> GenerationConfig:
    """generate(generation_config=...) as transformers 5 reads it: the settings it leaves unset (None or absent) come
    from the model's own generation_config (its saved, validated decoding), not from DEFAULT_GENERATION. Its `top_k`
    is transformers' sampling field, not the number of recommendations: refused, naming recommend_top_k."""
    if generation_config is None or generation_config is decoder.generation_config:
        return decoder.generation_config
    if getattr(generation_config, "top_k", None) is not None and "top_k" in generation_config.to_diff_dict():
        raise ValueError("generation_config.top_k is transformers' sampling setting; set recommend_top_k in the "
                         "generation config (or pass top_k=K to generate()) for the number of recommendations.")
    merged = copy.deepcopy(decoder.generation_config)
    for name in DEFAULT_GENERATION:
        value = getattr(generation_config, name, None)
        if value is not None:
            setattr(merged, name, value)
    return merged


def set_generation_defaults(decoder, kwargs: dict) -> None:
    """Checks `kwargs` like generate() does and writes every resolved setting into decoder.generation_config."""
    for name, value in resolve_settings(decoder.config, decoder.generation_config, kwargs).items():
        setattr(decoder.generation_config, name, value)


def restore_generation_defaults(decoder, generation_config, source, kwargs: dict) -> None:
    """from_pretrained's generation hook (adjust_generation_fn): the generate() defaults saved in source's
    generation_config.json, or from_pretrained(generation_config=...), checked and installed; a checkpoint without the
    file keeps DEFAULT_GENERATION, a file with a wrong setting is a ValueError naming it."""
    if generation_config is None:
        download = {key: kwargs[key] for key in ("cache_dir", "force_download", "proxies", "local_files_only",
                                                 "token", "revision", "subfolder") if key in kwargs}
        try:
            generation_config = GenerationConfig.from_pretrained(source, **download)
        except OSError as err:
            local = Path(str(source), download.get("subfolder") or "", GENERATION_FILE)
            if local.is_file():  # there, but unreadable: say so rather than silently use other defaults
                raise ValueError(f"{local} is not a valid generation config: {err}") from None
            return
    # a field left unset (None: transformers 5's GenerationConfig() leaves num_beams so) takes the default
    saved = {name: default if getattr(generation_config, name, None) is None else getattr(generation_config, name)
             for name, default in DEFAULT_GENERATION.items()}
    try:
        set_generation_defaults(decoder, saved)
    except ValueError as err:
        raise ValueError(f"The generation config of {source} ({GENERATION_FILE}): {err}") from None


def settings_read(settings: dict) -> set[str]:
    """The beam and fusion settings (keys of DEFAULT_GENERATION) that decoding with these settings reads: "dense"
    reads none; "no_fusion" none (one beam, all its items, cosine); "sparse" num_beams; "cobra" every one, psi_h only
    with the joint fusion. What the command line refuses to take silently (cli/generation_flags.py)."""
    mode = settings["recommend_mode"]
    if mode == "sparse":
        return {"num_beams"}
    if mode != "cobra":
        return set()
    read = {"num_beams", "num_candidates", "dense_guided_ids", "beam_fusion", "beam_fusion_tau", "beam_fusion_psi"}
    return read | ({"beam_fusion_dense_psi"} if settings["beam_fusion"] == "joint" else set())


def reads_history_query(settings: dict) -> bool:
    """Whether these settings read v_0, the ID-free dense prediction."""
    if settings["recommend_mode"] == "dense":
        return True
    joint_psi_h = settings["beam_fusion"] == "joint" and bool(settings["beam_fusion_dense_psi"])
    return settings["recommend_mode"] == "cobra" and (int(settings["dense_guided_ids"]) > 0 or joint_psi_h)


# ---------------------------------------------------------------------------------------------------- generate
@torch.no_grad()
def generate(decoder: CoarseToFineDecoder, input_ids: torch.Tensor, item_index: torch.Tensor,
             attention_mask: torch.Tensor | None = None, generation_config: GenerationConfig | None = None,
             **kwargs) -> CobraGenerationOutput:
    """Coarse-to-fine recommendation for a batch of histories; see CobraForSequentialRecommendation.generate."""
    kwargs = dict(kwargs)
    history_items = kwargs.pop("history_items", None)
    settings = resolve_settings(decoder.config, merged_generation_config(decoder, generation_config), kwargs)
    if decoder.training:
        raise RuntimeError("Call model.eval() before generate(): dropout would make recommendations random.")
    item_mask = decoder.check_inputs(input_ids, attention_mask, item_index)
    if not bool(item_mask.any(1).all()):
        raise ValueError("A history in this batch is empty: a recommendation needs at least one item.")
    # the +1 slot of check_inputs is the training target's: a history that fills it would give the next item the
    # position of the last history item, a layout the model never saw
    lengths = item_mask.sum(1)  # Long[B]: history items per row; the next item's position
    longest = int(lengths.max())
    if longest > decoder.config.max_history:
        raise ValueError(f"A history of {longest} items is longer than this model reads (max_history="
                         f"{decoder.config.max_history}): encode it with the checkpoint's tokenizer, which keeps the "
                         "newest items.")
    # decoding starts from the last position: padding after an item would be read as the history's end
    padded_after = (item_mask[:, :-1] & ~item_mask[:, 1:]).any(1)  # Bool[B]: an item, then padding
    if bool(padded_after.any()):
        rows = padded_after.nonzero().flatten().tolist()
        raise ValueError(f"attention_mask rows {rows[:5]} have padding after an item: histories must be left-padded "
                         "(padding first, the newest item last), as CobraTokenizer encodes them.")
    k, mode = int(settings["recommend_top_k"]), settings["recommend_mode"]
    catalog = decoder.all_item_vectors()
    faiss_index = decoder.faiss_index() if settings["use_faiss"] else None
    last_hidden, cache = decoder.prefill(input_ids, item_mask, item_index)
    banned = None
    if settings["exclude_history"]:
        banned = history_ban(item_index, item_mask, history_items, decoder.config.num_items)
    query = decoder.history_query(last_hidden) if reads_history_query(settings) else None
    if mode == "dense":
        items, scores = nearest(query, k, catalog, faiss_index, *(banned or ()))
        warn_short_rows(items, k, banned is not None)
        return CobraGenerationOutput(item_indices=items, scores=scores)

    forced = guided_ids(decoder, query, catalog, faiss_index, settings)
    positions = lengths  # at most max_history (checked above)
    num_beams = 1 if mode == "no_fusion" else int(settings["num_beams"])
    codes, beam_scores, beam_vectors = beam_search(decoder, last_hidden, cache, positions, num_beams, forced)
    beam_vectors_n = F.normalize(beam_vectors, dim=-1)
    members, member_valid = decoder.id_index.items_of(codes)  # [B, M, P]
    member_valid &= (beam_scores > float("-inf"))[..., None]
    candidates, scores = CANDIDATES[mode](settings, beam_scores, beam_vectors_n, members, member_valid, catalog, query)
    batch = codes.shape[0]
    candidates, scores = candidates.reshape(batch, -1), scores.reshape(batch, -1)
    if banned is not None:
        scores = mask_items(scores, candidates, *banned)
    items, best = top_k_items(scores, candidates, k)
    items, best = top_up(items, best, beam_vectors_n[:, 0], k, catalog, faiss_index, banned)
    warn_short_rows(items, k, banned is not None)
    return CobraGenerationOutput(
        item_indices=items, scores=best, semantic_ids=codes, beam_scores=beam_scores, beam_vectors=beam_vectors
    )


def history_ban(item_index, item_mask, history_items, num_items: int):
    """What exclude_history leaves out: the items item_index Long[B, H] holds where item_mask Bool[B, H], and, when
    given, history_items Long[B, E] (each whole history's catalog rows, -1 as padding; `CobraTokenizer.history_items`),
    which holds the items a history longer than max_history had before the tokenizer kept its newest ones (read only
    with exclude_history). -> (banned Long[B, H + E], banned_valid Bool[B, H + E])."""
    if history_items is None:
        return item_index, item_mask
    history_items = torch.as_tensor(history_items, device=item_index.device)
    if history_items.dim() != 2 or history_items.shape[0] != item_index.shape[0] or history_items.is_floating_point():
        raise ValueError(f"history_items must be Long[B, E] with the batch's {item_index.shape[0]} rows (-1 as "
                         f"padding), got {history_items.dtype} of shape {tuple(history_items.shape)}.")
    history_items = history_items.long()
    if history_items.numel() and (int(history_items.max()) >= num_items or int(history_items.min()) < -1):
        raise ValueError(f"history_items holds rows outside this catalog (0 to {num_items - 1}, or -1 as padding).")
    return torch.cat([item_index, history_items], 1), torch.cat([item_mask, history_items >= 0], 1)


def nearest(query, k, catalog, faiss_index, banned=None, banned_valid=None):
    """Top-k catalog items (items Long[R, k], cosines Float[R, k]) by cosine with query Float[R, D], skipping
    banned Long[R, H] where banned_valid Bool[R, H]."""
    extra = 0 if banned is None else banned.shape[1]
    items, cos = nearest_items(query, catalog, k + extra, faiss_index)
    if banned is not None:
        cos = mask_items(cos, items, banned, banned_valid)
    return top_k_items(cos, items, k)


def guided_ids(decoder, query, catalog, faiss_index, settings) -> torch.Tensor | None:
    """dense_guided_ids ("cobra" mode): the IDs Long[B, G, L] of the G items nearest to the ID-free prediction v_0.
    They join the beam search as forced rows (scored by the sparse heads, ranked by BeamFusion like any beam), so
    the dense path proposes IDs that the beam search pruned. None when G = 0 or in another mode."""
    count = int(settings["dense_guided_ids"])
    if settings["recommend_mode"] != "cobra" or count == 0:
        return None
    guided, _ = nearest(query, min(count, decoder.config.num_items), catalog, faiss_index)
    return decoder.item_codes[guided.clamp(min=0)]


def top_up(items, best, query, k, catalog, faiss_index, banned):
    """Rows of items Long[B, K] / best Float[B, K] with empty slots (-1: the beams held fewer than K items) get the
    catalog items nearest to query Float[B, D] (the best beam's vector), scored below every beam candidate:
    (cos - 1) / 2 - 1, in [-2, -1]. banned: (Long[B, H], Bool[B, H]) history items to skip, or None."""
    short = (items < 0).any(1)
    if not bool(short.any()):
        return items, best
    rows = short.nonzero().squeeze(1)
    exclude = items[rows]
    exclude_valid = exclude >= 0
    if banned is not None:
        exclude = torch.cat([exclude, banned[0][rows]], 1)
        exclude_valid = torch.cat([exclude_valid, banned[1][rows]], 1)
    extra, extra_scores = nearest(query[rows], k, catalog, faiss_index, exclude, exclude_valid)
    extra_scores = (extra_scores - 1.0) / 2.0 - 1.0
    merged_items = torch.cat([items[rows], extra], 1)
    merged_scores = torch.cat([best[rows], extra_scores.masked_fill(extra < 0, float("-inf"))], 1)
    items[rows], best[rows] = top_k_items(merged_scores, merged_items, k)
    return items, best


# ---------------------------------------------------------------------------------------------------- candidates
def fused_candidates(settings, beam_scores, beam_vectors_n, members, member_valid, catalog, query):
    """"cobra" and "no_fusion": each beam's N items nearest to its vector (all of its items in "no_fusion"), scored
    by the fusion FUSIONS[fusion_of(settings)]. members Long[B, M, P], member_valid Bool[B, M, P] ->
    (candidates Long[B, M, N], scores Float[B, M, N], -inf where invalid)."""
    # most IDs hold 1-2 items while P is the largest group: score only the real (beam, item) pairs
    pair = member_valid.nonzero(as_tuple=True)
    cos = torch.full(members.shape, float("-inf"), device=members.device)
    cos[pair] = (beam_vectors_n[pair[0], pair[1]] * catalog[members[pair]]).sum(-1)
    width = cos.shape[-1]
    n = min(int(settings["num_candidates"]), width) if settings["recommend_mode"] == "cobra" else width
    top_cos, top = torch.topk(cos, n, dim=-1)
    candidates = members.gather(-1, top)
    valid = member_valid.gather(-1, top)
    phi = FUSIONS[fusion_of(settings)](settings, beam_scores, top_cos, valid, candidates, catalog, query)
    return candidates, phi.masked_fill(~valid, float("-inf"))


def sparse_candidates(settings, beam_scores, beam_vectors_n, members, member_valid, catalog, query):
    """"sparse": every item of every beam's ID, scored by the ID's probability (catalog order inside an ID)."""
    scores = beam_scores[..., None].exp().expand_as(members).masked_fill(~member_valid, float("-inf"))
    return members, scores


CANDIDATES = {"cobra": fused_candidates, "no_fusion": fused_candidates, "sparse": sparse_candidates}


def fusion_of(settings: dict) -> str:
    """"no_fusion" ranks the top-1 ID's items by cosine alone; "cobra" uses the beam_fusion setting."""
    return "cosine" if settings["recommend_mode"] == "no_fusion" else settings["beam_fusion"]


def paper_fusion(settings, beam_scores, top_cos, valid, candidates, catalog, query):
    """BeamFusion, Eq. 7: Phi = softmax_M(tau * phi) * softmax_N(psi * cos), normalised inside each beam."""
    return beam_fusion(beam_scores, top_cos, valid, settings["beam_fusion_tau"], settings["beam_fusion_psi"])


def joint_fusion_weights(settings, beam_scores, top_cos, valid, candidates, catalog, query):
    """One softmax over all (beam, candidate) pairs of tau * phi_k + psi * cos(v_k, a) + psi_h * cos(v_0, a)."""
    psi_h = settings["beam_fusion_dense_psi"]
    history_cos = torch.zeros_like(top_cos)
    if psi_h:  # cos(v_0, a) only for the real (beam, item) pairs, like cos(v_k, a)
        pair = valid.nonzero(as_tuple=True)
        history_cos[pair] = (query[pair[0]] * catalog[candidates[pair]]).sum(-1)
    return joint_fusion(beam_scores, top_cos, history_cos, valid, settings["beam_fusion_tau"],
                        settings["beam_fusion_psi"], psi_h)


def cosine_only(settings, beam_scores, top_cos, valid, candidates, catalog, query):
    return (top_cos + 1.0) / 2.0


FUSIONS = {"paper": paper_fusion, "joint": joint_fusion_weights, "cosine": cosine_only}


# ---------------------------------------------------------------------------------------------------- beam search
def beam_search(decoder: CoarseToFineDecoder, last_hidden, cache, positions, num_beams: int,
                forced: torch.Tensor | None = None):
    """Beam search over valid semantic IDs, with forced IDs decoded alongside as extra rows.

    last_hidden Float[B, D] (output at the last history position); positions Long[B] (the next item's position);
    forced Long[B, G, L] or None (G = 0): catalog IDs scored level by level with the beams but never pruned.
    Returns codes Long[B, M+G, L] (beams best first, then the forced IDs), scores Float[B, M+G] (summed log-probs;
    -inf = no such beam, or a forced ID already among the beams or earlier forced IDs) and the dense vector
    predicted for each Float[B, M+G, D]."""
    index = decoder.id_index
    batch = last_hidden.shape[0]
    levels = decoder.config.num_levels
    if forced is None:
        forced = torch.zeros(batch, 0, levels, dtype=torch.long, device=last_hidden.device)
    extra = forced.shape[1]
    log_probs = decoder.level_log_probs(last_hidden, 0, index.first_mask)
    beams = min(num_beams, index.num_ids)
    scores, first = torch.topk(log_probs, min(beams, log_probs.shape[-1]), dim=-1)  # [B, M]
    if scores.shape[1] < beams:  # fewer first codes than beams: the extra beams start dead (-inf)
        scores = F.pad(scores, (0, beams - scores.shape[1]), value=float("-inf"))
        first = F.pad(first, (0, beams - first.shape[1]))
    codes = first[..., None]
    forced_scores = log_probs.gather(1, forced[..., 0])  # [B, G]
    rows = beams + extra
    cache.start_beams(rows)  # beams share the history's keys; only their own tokens are cached per beam
    positions = positions.repeat_interleave(rows)
    forced_stay = torch.arange(beams, rows, device=last_hidden.device).expand(batch, -1)
    for level in range(1, levels):
        step_codes = torch.cat([codes[..., -1], forced[..., level - 1]], 1)  # [B, M+G]
        hidden = decoder.step(step_codes.reshape(-1), level - 1, positions, cache).view(batch, rows, -1)
        prefixes = torch.cat([codes, forced[..., :level]], 1)
        log_probs = decoder.level_log_probs(hidden, level, index.allowed_next(prefixes), prefixes)  # [B, M+G, K_l]
        total = scores[..., None] + log_probs[:, :beams]
        width = total.shape[-1]
        scores, flat = torch.topk(total.view(batch, -1), beams, dim=-1)
        origin = torch.div(flat, width, rounding_mode="floor")
        codes = torch.cat([codes.gather(1, origin[..., None].expand(-1, -1, codes.shape[-1])), (flat % width)[..., None]], -1)
        forced_scores = forced_scores + log_probs[:, beams:].gather(-1, forced[..., level : level + 1]).squeeze(-1)
        cache.reorder_beams(torch.cat([origin, forced_stay], 1))  # forced rows keep their own cache
    hidden = decoder.step(torch.cat([codes[..., -1], forced[..., -1]], 1).reshape(-1), levels - 1, positions, cache)
    vectors = decoder.beam_vectors(hidden).view(batch, rows, -1)
    # a forced ID already decoded (a live beam, or an earlier forced row) would count its items twice
    seen = torch.cat([codes, forced], 1)
    same = (forced[:, :, None] == seen[:, None]).all(-1)  # [B, G, M+G]
    earlier = torch.ones(extra, rows, dtype=torch.bool, device=same.device).tril(beams - 1)
    live = torch.cat([scores > float("-inf"), torch.ones_like(forced_scores, dtype=torch.bool)], 1)
    forced_scores = forced_scores.masked_fill((same & earlier & live[:, None]).any(-1), float("-inf"))
    if beams < num_beams:  # fewer distinct IDs in the catalog than beams asked for
        pad = num_beams - beams
        codes = F.pad(codes, (0, 0, 0, pad))
        scores = F.pad(scores, (0, pad), value=float("-inf"))
        vectors = torch.cat([vectors[:, :beams], vectors.new_zeros(batch, pad, vectors.shape[-1]), vectors[:, beams:]], 1)
    return torch.cat([codes, forced], 1), torch.cat([scores, forced_scores], 1), vectors
