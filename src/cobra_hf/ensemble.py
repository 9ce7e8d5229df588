"""`CobraEnsemble`: several COBRA checkpoints of one catalog (e.g. the same configuration trained with other seeds)
decoding as one model.

Each score of coarse-to-fine decoding becomes the members' mean:
- code log-probabilities at every beam step: the mean of the members' (a product of experts), renormalised over the
  valid codes, so the beam search itself is shared;
- cosines (the ID-free prediction v_0 and each beam's vector v_k against item vectors a): every member's vector is
  L2-normalised and the E of them are concatenated and divided by sqrt(E), for predictions and catalog alike, so one
  dot product of the concatenations is the mean of the members' cosines. Nearest-item search (exact or faiss) then
  runs unchanged on Float[I, E*D].
`generate` is the single model's decoder (cobra_generation.generate: same arguments, outputs and checks) reading the
ensemble through the same `CoarseToFineDecoder` protocol as a single model, and with one member it gives the member's
recommendations exactly.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .cobra_catalog_index import CatalogIndex
from .cobra_generation import CobraGenerationOutput, generate, set_generation_defaults
from .cobra_layers import KVCacheGroup
from .modeling_cobra import CobraForSequentialRecommendation


MEMBER_ROLES = ("both", "ids", "vectors")


class CobraEnsemble(nn.Module):
    """members: CobraForSequentialRecommendation models of one catalog (same catalog_hash and semantic IDs).
    roles (one per member, default all "both"): "ids" members give only code log-probabilities (the beam search),
    "vectors" members only dense predictions (beam and ID-free vectors, the catalog's vectors), "both" members both:
    a model trained for IDs alone can drive the beams of one trained for vectors.
    The first member's `generation_config` gives the generate() defaults; its config answers questions about the
    catalog (num_items, levels, ...). Implements cobra_generation.CoarseToFineDecoder."""

    def __init__(self, members: list[CobraForSequentialRecommendation], roles: list[str] | None = None):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("An ensemble needs at least one model.")
        roles = list(roles) if roles is not None else ["both"] * len(members)
        if len(roles) != len(members) or set(roles) - set(MEMBER_ROLES):
            raise ValueError(f"roles must give one of {MEMBER_ROLES} per member ({len(members)}), got {roles}.")
        self.id_members = [n for n, role in enumerate(roles) if role != "vectors"]
        self.vector_members = [n for n, role in enumerate(roles) if role != "ids"]
        if not self.id_members or not self.vector_members:
            raise ValueError(f"roles {roles} leave no member for the IDs or none for the vectors.")
        self.roles = roles
        first = members[0]
        for number, member in enumerate(members[1:], start=2):
            ours, theirs = first.config, member.config
            if (theirs.catalog_hash, theirs.num_items, list(theirs.level_sizes)) != (
                ours.catalog_hash, ours.num_items, list(ours.level_sizes)
            ) or not torch.equal(member.item_codes.cpu(), first.item_codes.cpu()):
                raise ValueError(
                    f"Ensemble member {number} has another catalog (catalog_hash {theirs.catalog_hash!r}, "
                    f"{theirs.num_items} items) than member 1 ({ours.catalog_hash!r}, {ours.num_items} items): "
                    "members must be trained on one catalog."
                )
            if theirs.max_history != ours.max_history:  # positions past a member's table would fail mid-decoding
                raise ValueError(
                    f"Ensemble member {number} reads histories of up to {theirs.max_history} items and member 1 of "
                    f"{ours.max_history} (max_history): members must read the same history length."
                )
        needs_history_head = [n + 1 for n in self.vector_members if not members[n].config.history_dense_loss_weight]
        if needs_history_head and len(needs_history_head) != len(self.vector_members):
            raise ValueError(
                f"Ensemble members {needs_history_head} have no ID-free dense head (history_dense_loss_weight 0) "
                "and the others do: their dense predictions cannot be averaged."
            )
        self.members = nn.ModuleList(members)
        # the joined catalog; rebuilt (with its faiss index) when a member's own vectors change (see all_item_vectors)
        self.catalog_index = CatalogIndex(self._join_catalog, lambda: self.item_codes, first.config.level_sizes,
                                          unit_vectors=True)
        self._catalog_sources: list[torch.Tensor] = []

    @classmethod
    def from_pretrained(cls, paths: list[str | Path], roles: list[str] | None = None, **kwargs) -> "CobraEnsemble":
        """Loads each checkpoint folder (kwargs go to every `from_pretrained`)."""
        return cls([CobraForSequentialRecommendation.from_pretrained(str(path), **kwargs) for path in paths], roles)

    # ------------------------------------------------------------------ what generate() reads
    @property
    def config(self):
        """The first member's, but an ID-free dense head exists only if every vectors member has one."""
        first = self.members[0].config
        head = min(float(self.members[n].config.history_dense_loss_weight) for n in self.vector_members)
        if float(first.history_dense_loss_weight) == head:
            return first
        config = copy.copy(first)
        config.history_dense_loss_weight = head
        return config

    @property
    def generation_config(self):
        return self.members[0].generation_config

    @property
    def item_codes(self) -> torch.Tensor:
        return self.members[0].item_codes

    @property
    def id_index(self):
        return self.members[0].id_index

    def check_inputs(self, input_ids, attention_mask, item_index) -> torch.Tensor:
        return self.members[0].check_inputs(input_ids, attention_mask, item_index)

    def generate(self, input_ids: torch.Tensor, item_index: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 generation_config=None, **kwargs) -> CobraGenerationOutput:
        """CobraForSequentialRecommendation.generate with the members' scores averaged (see the module docstring)."""
        return generate(self, input_ids, item_index, attention_mask, generation_config, **kwargs)

    def set_generation_defaults(self, **kwargs) -> None:
        """Like CobraForSequentialRecommendation.set_generation_defaults (the first member's generation_config)."""
        set_generation_defaults(self, kwargs)

    def _widths(self) -> list[int]:
        return [member.decoder_width for member in self.members]

    def _joined(self, unit_vectors: list[torch.Tensor]) -> torch.Tensor:
        """The members' unit vectors Float[..., D_e] side by side, / sqrt(E): Float[..., sum D_e], unit rows whose dot
        products are the mean of the members' cosines (one member: its vectors, unchanged)."""
        return torch.cat(unit_vectors, -1) / math.sqrt(len(unit_vectors))

    def all_item_vectors(self, normalized: bool = True, batch_size: int = 4096) -> torch.Tensor:
        """The catalog Float[I, sum D_e] (see `_joined`), rebuilt whenever a member's own cached vectors change (new
        weights or catalog: the members invalidate theirs)."""
        if not normalized:
            raise ValueError("An ensemble's item vectors exist only normalised (each member's, joined).")
        vectors = [self.members[n].all_item_vectors() for n in self.vector_members]
        if any(new is not old for new, old in zip(vectors, self._catalog_sources)) or not self._catalog_sources:
            self.catalog_index.invalidate()
        return self.catalog_index.item_vectors()

    def _join_catalog(self) -> torch.Tensor:
        self._catalog_sources = [self.members[n].all_item_vectors() for n in self.vector_members]
        return self._joined(self._catalog_sources)

    def faiss_index(self):
        self.all_item_vectors()  # a member's new vectors invalidate the index first
        return self.catalog_index.faiss()

    def prefill(self, input_ids, item_mask, item_index):
        """Every member reads the history: (Float[B, sum D_e] the members' last outputs side by side, their caches)."""
        outputs = [member.prefill(input_ids, item_mask, item_index) for member in self.members]
        return torch.cat([hidden for hidden, _ in outputs], -1), KVCacheGroup([cache for _, cache in outputs])

    def step(self, codes, level, positions, cache: KVCacheGroup) -> torch.Tensor:
        return torch.cat([member.step(codes, level, positions, member_cache)
                          for member, member_cache in zip(self.members, cache.caches)], -1)

    def _split(self, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return hidden.split(self._widths(), dim=-1)

    def _by_role(self, hidden: torch.Tensor, members: list[int]):
        """(member, its slice of hidden) for the members of one role."""
        parts = self._split(hidden)
        return [(self.members[n], parts[n]) for n in members]

    def history_query(self, last_hidden: torch.Tensor) -> torch.Tensor:
        return self._joined([member.history_query(h) for member, h in self._by_role(last_hidden, self.vector_members)])

    def level_log_probs(self, hidden: torch.Tensor, level: int, allowed: torch.Tensor,
                        prefix: torch.Tensor | None = None) -> torch.Tensor:
        if len(self.members) == 1:
            return self.members[0].level_log_probs(hidden, level, allowed, prefix)
        pairs = self._by_role(hidden, self.id_members)
        mean = torch.stack([member.level_log_probs(h, level, allowed, prefix) for member, h in pairs]).mean(0)
        return torch.log_softmax(mean, dim=-1) if len(pairs) > 1 else mean

    def beam_vectors(self, hidden: torch.Tensor) -> torch.Tensor:
        if len(self.members) == 1:  # generate() normalises it
            return self.members[0].beam_vectors(hidden)
        return self._joined([F.normalize(member.beam_vectors(h), dim=-1)
                             for member, h in self._by_role(hidden, self.vector_members)])


# the sizes an ID trunk takes from its model's config, so a checkpoint joined as the trunk must have the same
TRUNK_SIZES = ("hidden_size", "num_attention_heads", "intermediate_size", "encoder_layers", "decoder_layers",
               "use_item_embeddings", "text_embedding_dim", "max_text_tokens", "text_vocab_size", "max_history",
               "level_sizes", "layer_norm_eps")


def join_id_trunk(vectors_model: CobraForSequentialRecommendation,
                  ids_model: CobraForSequentialRecommendation) -> CobraForSequentialRecommendation:
    """The pair `CobraEnsemble([vectors_model, ids_model], roles=["vectors", "ids"])` as one model: a copy of
    vectors_model (config, weights, generate() defaults, catalog assets) with ids_model's backbone and code heads as
    its ID trunk (config.id_trunk), which decodes as the pair does. Both must come from one catalog and have the same
    backbone sizes (TRUNK_SIZES); neither may have a trunk already. The trunk's training settings (dropout, item
    deletion) become vectors_model's: they only matter if the joined model is trained further. ids_model's per-item
    output rows (config.item_output_embeddings) become the trunk's; vectors_model's own, if any, are left out, since
    its code heads drive no beam in the joined model."""
    CobraEnsemble([vectors_model, ids_model], roles=["vectors", "ids"])  # one catalog, an ID-free head where needed
    if vectors_model.id_trunk is not None or ids_model.id_trunk is not None:
        raise ValueError("One of the two models already has an ID trunk: join two models without one.")
    for name in TRUNK_SIZES:
        ours, theirs = getattr(vectors_model.config, name), getattr(ids_model.config, name)
        if ours != theirs:
            raise ValueError(f"The ID model's {name} is {theirs!r} and the vectors model's {ours!r}: an ID trunk has "
                             "its model's sizes, so join models of the same sizes.")
    config = copy.deepcopy(vectors_model.config)
    config.id_trunk = True
    config.item_output_embeddings = ids_model.config.item_output_embeddings
    config.item_output_weight_decay = ids_model.config.item_output_weight_decay
    joined = CobraForSequentialRecommendation(config)
    joined.set_catalog(vectors_model.item_codes.cpu(), vectors_model.item_text_ids.cpu(),
                       None if vectors_model.item_text_embeddings is None else vectors_model.item_text_embeddings.cpu(),
                       vectors_model.config.catalog_hash)
    trunk = {f"id_trunk.{key}": value for key, value in ids_model.state_dict().items()
             if key.startswith(("model.", "sparse_head.", "item_output."))}
    main = {key: value for key, value in vectors_model.state_dict().items() if not key.startswith("item_output.")}
    joined.load_state_dict({**main, **trunk})
    joined.generation_config = copy.deepcopy(vectors_model.generation_config)
    joined.catalog_assets = vectors_model.catalog_assets
    return joined.to(device=vectors_model.item_codes.device, dtype=vectors_model.dtype).train(vectors_model.training)
