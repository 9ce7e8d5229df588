"""What the model knows about its catalog beyond the saved buffers: which semantic IDs exist (`SemanticIdIndex`) and
the catalog's dense vectors with their faiss index, owned by one `CatalogIndex` with one invalidation rule.

Shapes: I items, L levels, D vector width, P items per ID (padded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F


def prefix_keys(codes: torch.Tensor, level_sizes: list[int]) -> torch.Tensor:
    """codes Long[..., l] (the first l levels of IDs) -> one mixed-radix int64 key per prefix, Long[...]."""
    key = torch.zeros(codes.shape[:-1], dtype=torch.long, device=codes.device)
    for level in range(codes.shape[-1]):
        key = key * int(level_sizes[level]) + codes[..., level]
    return key


class SemanticIdIndex:
    """Valid-prefix masks and an items-per-ID lookup built from the catalog's codes Long[I, L].

    A prefix of codes is turned into one int64 key in mixed radix (level sizes), so membership and ranges are
    `searchsorted` calls on sorted key tensors: a tensorised trie.
    """

    def __init__(self, item_codes: torch.Tensor, level_sizes: list[int]):
        codes = item_codes.long().cpu()
        self.level_sizes = [int(size) for size in level_sizes]
        self.num_levels = len(self.level_sizes)
        self.num_items = codes.shape[0]
        # prefix_keys[l]: sorted unique keys of the ID prefixes of length l + 1
        self.prefix_keys: list[torch.Tensor] = []
        # next_masks[l] for l >= 1: Bool[len(prefix_keys[l - 1]), level_sizes[l]], which code may follow a prefix
        self.next_masks: list[torch.Tensor | None] = [None]
        self.first_mask = torch.zeros(self.level_sizes[0], dtype=torch.bool)
        self.first_mask[codes[:, 0].unique()] = True
        for level in range(self.num_levels):
            self.prefix_keys.append(self.keys(codes[:, : level + 1]).unique())
            if level:
                parent = torch.searchsorted(self.prefix_keys[level - 1], self.keys(codes[:, :level]))
                mask = torch.zeros(len(self.prefix_keys[level - 1]), self.level_sizes[level], dtype=torch.bool)
                mask[parent, codes[:, level]] = True
                self.next_masks.append(mask)
        # item_rows[l] for l >= 1: Long[I], the row of each item's prefix of length l + 1 in prefix_keys[l]; with
        # max_children[l], the most codes that follow one prefix of length l (children())
        self.item_rows: list[torch.Tensor | None] = [None]
        self.max_children: list[int] = [0]
        for level in range(1, self.num_levels):
            self.item_rows.append(torch.searchsorted(self.prefix_keys[level], self.keys(codes[:, : level + 1])))
            self.max_children.append(int(self.next_masks[level].sum(-1).max()) if len(codes) else 0)
        item_keys = self.keys(codes)
        self.item_order = torch.sort(item_keys, stable=True).indices  # items grouped by ID, catalog order inside
        self.sorted_item_keys = item_keys[self.item_order]
        _, counts = torch.unique_consecutive(self.sorted_item_keys, return_counts=True)
        self.max_items_per_id = int(counts.max()) if len(counts) else 0
        self.num_ids = len(counts)

    def keys(self, codes: torch.Tensor) -> torch.Tensor:
        """codes Long[..., l] (the first l levels) -> mixed-radix keys Long[...]."""
        return prefix_keys(codes, self.level_sizes)

    def to(self, device) -> "SemanticIdIndex":
        for name in ("first_mask", "item_order", "sorted_item_keys"):
            setattr(self, name, getattr(self, name).to(device))
        self.prefix_keys = [keys.to(device) for keys in self.prefix_keys]
        self.next_masks = [None if mask is None else mask.to(device) for mask in self.next_masks]
        self.item_rows = [None if rows is None else rows.to(device) for rows in self.item_rows]
        return self

    def allowed_next(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix Long[..., l] (valid ID prefixes of length l >= 1) -> Bool[..., level_sizes[l]]."""
        level = prefix.shape[-1]
        row = torch.searchsorted(self.prefix_keys[level - 1], self.keys(prefix))
        row = row.clamp(max=len(self.prefix_keys[level - 1]) - 1)
        return self.next_masks[level][row]

    def children(self, prefix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """prefix Long[..., l] (ID prefixes of length l >= 1) -> the prefixes of length l + 1 that extend each one:
        (rows Long[..., C] in prefix_keys[l], valid Bool[..., C], their last codes Long[..., C]), C = max_children[l].
        In mixed radix a prefix's extensions are one contiguous run of prefix_keys[l]."""
        level = prefix.shape[-1]
        table, size = self.prefix_keys[level], self.level_sizes[level]
        first = self.keys(prefix) * size
        start = torch.searchsorted(table, first)
        end = torch.searchsorted(table, first + size)
        rows = start[..., None] + torch.arange(self.max_children[level], device=prefix.device)
        valid = rows < end[..., None]
        rows = torch.where(valid, rows, torch.zeros_like(rows))
        return rows, valid, torch.where(valid, table[rows] % size, torch.zeros_like(rows))

    def is_valid(self, codes: torch.Tensor) -> torch.Tensor:
        """codes Long[..., L] -> Bool[...]: the ID belongs to at least one catalog item."""
        keys = self.keys(codes)
        table = self.prefix_keys[-1]
        row = torch.searchsorted(table, keys).clamp(max=len(table) - 1)
        return table[row] == keys

    def items_of(self, codes: torch.Tensor, max_items: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """codes Long[..., L] -> (item_index Long[..., P], valid Bool[..., P]): the items carrying each ID, in
        catalog order, padded to P = max_items (default: the largest number of items under one ID)."""
        width = self.max_items_per_id if max_items is None else int(max_items)
        keys = self.keys(codes)
        start = torch.searchsorted(self.sorted_item_keys, keys, side="left")
        end = torch.searchsorted(self.sorted_item_keys, keys, side="right")
        slot = start[..., None] + torch.arange(width, device=codes.device)
        valid = slot < end[..., None]
        items = self.item_order[slot.clamp(max=max(self.num_items - 1, 0))]
        return torch.where(valid, items, torch.full_like(items, -1)), valid


def tensor_state(tensors) -> tuple:
    """What says whether tensors still hold what they held, without reading them: each one's storage address,
    in-place version counter (copy_ and most in-place ops bump it, a fused optimizer step does not), dtype, device
    and shape. Inference tensors carry no version counter: their address alone counts."""
    state = []
    for tensor in tensors:
        try:
            version = tensor._version
        except RuntimeError:  # an inference-mode tensor
            version = None
        state.append((tensor.data_ptr(), version, tensor.dtype, tensor.device, tuple(tensor.shape)))
    return tuple(state)


class CatalogIndex:
    """The catalog's derived data: item vectors (raw and L2-normalised) Float[I, D], the `SemanticIdIndex` of the
    item codes Long[I, L] and a faiss inner-product index over the normalised vectors.

    Each part is built on first use from the callables it was given and kept until `invalidate()` drops them all
    (whoever changes the weights or the catalog calls it: the model does on load_state_dict and set_catalog, and
    train() drops all but the ID index), so an eval-mode model builds them once for any number of generate() calls
    and evaluations. Besides, a part is rebuilt when what it was built from no longer has the `tensor_state` it
    had: the vectors (and faiss) when a tensor of `weights()` moved (`.to(device)`, `.to(torch.bfloat16)`: cached
    CPU vectors are never served to a model on the GPU) or was edited in place (most in-place ops bump the version
    counter; fused optimizer steps and edits through `.data` do not, hence the explicit rule), the ID index when the
    item codes did.

    encode: () -> Float[I, D], every catalog item's dense vector under the current weights (no gradients);
    item_codes: () -> Long[I, L]; level_sizes: codes per level; unit_vectors: encode already gives unit rows (an
    ensemble's joined vectors), used as they are; weights: () -> the tensors `encode` reads (None: the vectors are
    kept until `invalidate()`).
    """

    def __init__(self, encode: Callable[[], torch.Tensor], item_codes: Callable[[], torch.Tensor], level_sizes,
                 unit_vectors: bool = False, weights: Callable[[], Iterable[torch.Tensor]] | None = None):
        self._encode = encode
        self._unit = unit_vectors
        self._item_codes = item_codes
        self._weights = weights
        self.level_sizes = [int(size) for size in level_sizes]
        self.builds = {"vectors": 0, "ids": 0, "faiss": 0}  # how often each part was built (tests, benchmarks)
        self.invalidate()

    def invalidate(self, keep_ids: bool = False) -> None:
        """Drops the vectors and faiss, and the ID index unless keep_ids (new weights leave the codes as they are)."""
        self._vectors: tuple[torch.Tensor, torch.Tensor] | None = None
        self._vectors_state: tuple | None = None
        self._faiss = None
        if not keep_ids:
            self._ids: SemanticIdIndex | None = None
            self._ids_state: tuple | None = None

    def _weights_state(self) -> tuple | None:
        return None if self._weights is None else tensor_state(self._weights())

    def item_vectors(self, normalized: bool = True) -> torch.Tensor:
        """Float[I, D]: the catalog's dense vectors, L2-normalised unless normalized=False."""
        state = self._weights_state()
        if self._vectors is None or state != self._vectors_state:
            raw = self._encode()
            self._vectors = (raw, raw if self._unit else F.normalize(raw, dim=-1))
            self._vectors_state, self._faiss = state, None
            self.builds["vectors"] += 1
        return self._vectors[1 if normalized else 0]

    def set_item_vectors(self, raw: torch.Tensor) -> None:
        """Installs precomputed vectors Float[I, D] (e.g. a benchmark's stand-ins), kept until the weights change;
        the faiss index follows them."""
        self._vectors, self._faiss = (raw, F.normalize(raw, dim=-1)), None
        self._vectors_state = self._weights_state()

    @property
    def ids(self) -> SemanticIdIndex:
        codes = self._item_codes()
        state = tensor_state([codes])
        if self._ids is None or state != self._ids_state:
            self._ids = SemanticIdIndex(codes, self.level_sizes).to(codes.device)
            self._ids_state = state
            self.builds["ids"] += 1
        return self._ids

    def faiss(self):
        """A faiss IndexFlatIP over the normalised item vectors (exact inner-product search on the CPU)."""
        vectors = self.item_vectors()  # new weights drop the index built from the old vectors
        if self._faiss is None:
            try:
                import faiss
            except ImportError:
                raise ImportError("use_faiss=True needs faiss: pip install faiss-cpu (or, in a cobra-hf checkout, "
                                  "pip install -e '.[faiss]').") from None
            vectors = vectors.float().cpu().contiguous().numpy()
            self._faiss = faiss.IndexFlatIP(vectors.shape[1])
            self._faiss.add(vectors)
            self.builds["faiss"] += 1
        return self._faiss
