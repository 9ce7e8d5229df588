"""CobraTokenizer: item id <-> semantic ID <-> token ids.

Saved with every checkpoint and loaded through `AutoTokenizer` (auto_map + trust_remote_code), so this
file imports nothing from the rest of cobra_hf (only the flat `.integrity`, saved beside it).

Token layout: 0 = [PAD], 1 = [UNK], then one token per (level, code): code `c` of level `l` is token
`2 + sum(level_sizes[:l]) + c`, written `<l{l}_{c}>`. An item of a history becomes its `L` code tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np
import torch
from transformers import BatchEncoding, PreTrainedTokenizer

from .configuration_cobra import NUM_SPECIAL_TOKENS, level_offsets

VOCAB_FILES_NAMES = {"catalog_file": "item_catalog.json"}
CATALOG_FORMAT_VERSION = 1


def catalog_fingerprint(item_ids: Sequence[str], codes: np.ndarray) -> str:
    """A short hash of (item ids, semantic IDs): two catalogs with the same hash are interchangeable."""
    digest = hashlib.sha256()
    digest.update("\n".join(item_ids).encode("utf-8"))
    digest.update(np.ascontiguousarray(codes, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def codes_matrix(codes, count: int, levels: int, what: str) -> np.ndarray:
    """codes as Long[count, levels]; any other shape is refused (a reshape would scramble an array given as
    [levels, items] without a word). No items may come as an empty array of any shape."""
    array = np.asarray(codes, dtype=np.int64)
    if count == 0 and array.size == 0:
        return array.reshape(0, levels)
    if array.shape != (count, levels):
        raise ValueError(f"{what}: codes must be [{count}, {levels}] (items x levels), got {list(array.shape)}.")
    return array


class CobraTokenizer(PreTrainedTokenizer):
    """Maps histories of item ids to semantic-ID tokens and generated items back to item ids.

    `tok(histories)` takes a list of histories (each a list of item id strings, oldest first) and returns
    `input_ids` Long[B, H*L] (each item's L code tokens), `attention_mask` Long[B, H*L] and
    `item_index` Long[B, H] (catalog rows, used for the items' dense vectors). Histories are cut to their
    newest `max_history` items and left-padded, so the newest item is always last.
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask", "item_index"]
    padding_side = "left"
    truncation_side = "left"

    def __init__(self, catalog_file: str, max_history: int = 20, unknown_items: str = "error", **kwargs):
        if catalog_file is None or not os.path.isfile(catalog_file):
            # from_pretrained passes None when the folder lacks the file; a ValueError, because transformers
            # replaces any OSError raised here by a generic "Unable to load vocabulary" message
            raise ValueError(
                f"The tokenizer needs its catalog file {VOCAB_FILES_NAMES['catalog_file']}"
                + (f" ({catalog_file} does not exist)" if catalog_file else "")
                + ": copy it from the checkpoint or catalog folder the model was saved with."
            )
        with open(catalog_file, encoding="utf-8") as handle:
            try:
                catalog = json.load(handle)
            except json.JSONDecodeError as err:
                raise ValueError(f"Tokenizer catalog file {catalog_file} is not valid JSON ({err}).") from None
        self._load_catalog(catalog, catalog_file)
        if unknown_items not in ("error", "drop"):
            raise ValueError(f"unknown_items must be 'error' or 'drop', got {unknown_items!r}.")
        self.max_history = int(max_history)
        self.unknown_items = unknown_items
        kwargs.setdefault("pad_token", "[PAD]")
        kwargs.setdefault("unk_token", "[UNK]")
        kwargs["padding_side"] = "left"
        kwargs["truncation_side"] = "left"
        super().__init__(max_history=max_history, unknown_items=unknown_items, **kwargs)

    # ------------------------------------------------------------------ catalog
    def _load_catalog(self, catalog: dict, source: str) -> None:
        missing = [key for key in ("item_ids", "codes", "level_sizes") if key not in catalog]
        if missing:
            raise ValueError(f"Tokenizer catalog file {source} lacks the fields {missing}.")
        version = catalog.get("format_version", 1)
        if version > CATALOG_FORMAT_VERSION:
            raise ValueError(
                f"Tokenizer catalog file {source} has format_version {version}; this code reads up to "
                f"{CATALOG_FORMAT_VERSION}. Upgrade cobra-hf."
            )
        self.item_ids: list[str] = [str(item) for item in catalog["item_ids"]]
        self.level_sizes: list[int] = [int(size) for size in catalog["level_sizes"]]
        codes = codes_matrix(catalog["codes"], len(self.item_ids), len(self.level_sizes), f"Tokenizer catalog file {source}")
        if codes.size and ((codes < 0).any() or (codes >= np.asarray(self.level_sizes)).any()):
            raise ValueError(f"Tokenizer catalog file {source} holds codes outside the level sizes {self.level_sizes}.")
        self.item_codes = codes
        self.titles: list[str] = list(catalog.get("titles") or [""] * len(self.item_ids))
        if len(self.titles) != len(self.item_ids):
            raise ValueError(f"Tokenizer catalog file {source}: {len(self.titles)} titles for {len(self.item_ids)} items.")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise ValueError(f"Tokenizer catalog file {source} lists an item id twice.")
        self.item_to_index = {item: index for index, item in enumerate(self.item_ids)}
        self.level_offsets = np.asarray(level_offsets(self.level_sizes), dtype=np.int64)
        self.catalog_hash = catalog_fingerprint(self.item_ids, self.item_codes)
        stored = catalog.get("catalog_hash")
        if stored is not None and stored != self.catalog_hash:
            raise ValueError(
                f"Tokenizer catalog file {source} is corrupted: its content hash {self.catalog_hash} differs from "
                f"the recorded {stored}."
            )
        self._id_to_items: dict[tuple[int, ...], list[int]] | None = None

    @classmethod
    def from_items(
        cls,
        item_ids: Sequence[str],
        codes,
        titles: Sequence[str] | None = None,
        level_sizes: Sequence[int] | None = None,
        max_history: int = 20,
        **kwargs,
    ) -> "CobraTokenizer":
        """Builds a tokenizer from arrays. codes: Long[N, L] (tensor, array or nested lists)."""
        import tempfile

        codes = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] != len(item_ids):
            raise ValueError(f"from_items: codes must be [{len(item_ids)}, levels] (items x levels), got "
                             f"{list(codes.shape)}.")
        if level_sizes is None:
            level_sizes = (codes.max(axis=0) + 1).tolist()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, VOCAB_FILES_NAMES["catalog_file"])
            cls._write_catalog(path, list(item_ids), codes, list(titles) if titles is not None else None, list(level_sizes))
            return cls(catalog_file=path, max_history=max_history, **kwargs)

    @staticmethod
    def _write_catalog(path, item_ids, codes, titles, level_sizes) -> None:
        payload = {
            "format_version": CATALOG_FORMAT_VERSION,
            "level_sizes": [int(size) for size in level_sizes],
            "catalog_hash": catalog_fingerprint([str(i) for i in item_ids], np.asarray(codes, dtype=np.int64)),
            "item_ids": [str(i) for i in item_ids],
            "codes": np.asarray(codes, dtype=np.int64).tolist(),
            "titles": titles if titles is not None else [""] * len(item_ids),
        }
        tmp_path = path + ".tmp"
        with open(tmp_path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, ensure_ascii=False)
        os.replace(tmp_path, path)

    def add_items(self, item_ids: Sequence[str], codes, titles: Sequence[str] | None = None) -> list[int]:
        """Appends new items (codes Long[n, L]) to the catalog; returns their catalog indices."""
        codes = codes_matrix(codes.cpu() if isinstance(codes, torch.Tensor) else codes, len(item_ids), self.num_levels,
                             "add_items")
        clash = [item for item in item_ids if item in self.item_to_index]
        if clash:
            raise ValueError(f"Items already in the catalog: {clash[:5]} ({len(clash)} in all).")
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("The new items list an item id twice.")
        if codes.size and ((codes < 0).any() or (codes >= np.asarray(self.level_sizes)).any()):
            raise ValueError(f"New items' codes fall outside the level sizes {self.level_sizes}.")
        start = len(self.item_ids)
        catalog = {
            "item_ids": self.item_ids + [str(i) for i in item_ids],
            "codes": np.concatenate([self.item_codes, codes]).tolist(),
            "titles": self.titles + (list(titles) if titles is not None else [""] * len(item_ids)),
            "level_sizes": self.level_sizes,
        }
        self._load_catalog(catalog, "<added items>")
        return list(range(start, len(self.item_ids)))

    # ------------------------------------------------------------------ vocabulary (transformers API)
    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL_TOKENS + int(sum(self.level_sizes))

    def get_vocab(self) -> dict[str, int]:
        vocab = {"[PAD]": 0, "[UNK]": 1}
        for level, (offset, size) in enumerate(zip(self.level_offsets, self.level_sizes)):
            for code in range(size):
                vocab[f"<l{level}_{code}>"] = int(offset) + code
        return vocab

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        """A whitespace-separated string of item ids -> their code tokens (unknown items -> [UNK])."""
        tokens: list[str] = []
        for item in text.split():
            index = self.item_to_index.get(item)
            if index is None:
                tokens.extend([self.unk_token] * self.num_levels)
            else:
                tokens.extend(f"<l{level}_{code}>" for level, code in enumerate(self.item_codes[index]))
        return tokens

    def _convert_token_to_id(self, token: str) -> int:
        if token in ("[PAD]", "[UNK]"):
            return 0 if token == "[PAD]" else 1
        try:
            level, code = token[2:-1].split("_")
            return int(self.level_offsets[int(level)]) + int(code)
        except (ValueError, IndexError):
            return 1

    def _convert_id_to_token(self, index: int) -> str:
        if index < NUM_SPECIAL_TOKENS:
            return "[PAD]" if index == 0 else "[UNK]"
        level = int(np.searchsorted(self.level_offsets, index, side="right") - 1)
        return f"<l{level}_{index - int(self.level_offsets[level])}>"

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save_pretrained; into a folder where the model recorded checksums.json (model first, as
        save_checkpoint and the Trainer do), the sha256 of each file written joins it (the model's from_pretrained
        checks them; see integrity.py). It never starts one: `tokenizer.push_to_hub` would replace the model's record
        on the Hub with one that lists only the tokenizer's files."""
        from .integrity import CHECKSUMS_FILE, changed_files, file_states, record_checksums

        before = file_states(save_directory)
        files = super().save_pretrained(save_directory, *args, **kwargs)
        if CHECKSUMS_FILE in before:
            record_checksums(save_directory, changed_files(save_directory, before))
        return files

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        name = (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILES_NAMES["catalog_file"]
        path = os.path.join(save_directory, name)
        self._write_catalog(path, self.item_ids, self.item_codes, self.titles, self.level_sizes)
        return (path,)

    # ------------------------------------------------------------------ encoding histories
    def items_to_indices(self, items: Sequence[str], unknown_items: str | None = None) -> list[int]:
        """Item ids -> catalog indices. Unknown ids raise a KeyError naming them, or are dropped."""
        policy = unknown_items or self.unknown_items
        if policy not in ("error", "drop"):  # any other word would drop unknown ids silently
            raise ValueError(f"unknown_items must be 'error' or 'drop', got {policy!r}.")
        indices = [self.item_to_index.get(str(item), -1) for item in items]
        if -1 in indices:
            unknown = [str(item) for item, index in zip(items, indices) if index < 0]
            if policy == "error":
                raise KeyError(
                    f"Unknown item ids not in this catalog: {unknown[:5]}"
                    + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                    + " (pass unknown_items='drop' to skip them)."
                )
            indices = [index for index in indices if index >= 0]
        return indices

    def encode_indices(
        self,
        histories: Sequence[Sequence[int]],
        max_history: int | None = None,
        return_tensors: str | None = "pt",
        allow_empty: bool = False,
    ) -> BatchEncoding:
        """Catalog-index histories -> model inputs (vectorised; see the class docstring for shapes)."""
        cap = self.max_history if max_history is None else int(max_history)
        if cap < 1:
            raise ValueError(f"max_history must be at least 1, got {cap}.")
        lengths = [min(len(history), cap) for history in histories]
        if not allow_empty and lengths and min(lengths) == 0:
            empty = [row for row, length in enumerate(lengths) if length == 0]
            raise ValueError(f"Empty history at batch rows {empty[:5]}: a recommendation needs at least one known item.")
        width = max(lengths, default=0)
        index = np.zeros((len(histories), width), dtype=np.int64)
        mask = np.zeros((len(histories), width), dtype=np.int64)
        for row, (history, length) in enumerate(zip(histories, lengths)):
            if length:
                index[row, width - length :] = history[len(history) - length :]
                mask[row, width - length :] = 1
        if index.size and index.max() >= self.num_items:
            raise ValueError(f"Item index {int(index.max())} is outside this catalog of {self.num_items} items.")
        tokens = (self.item_codes[index] + self.level_offsets) * mask[..., None]  # [B, H, L]; pad -> 0
        data = {
            "input_ids": tokens.reshape(len(histories), -1),
            "attention_mask": np.repeat(mask, self.num_levels, axis=1),
            "item_index": index,
        }
        if return_tensors == "pt":
            data = {key: torch.from_numpy(value) for key, value in data.items()}
        elif return_tensors is None:
            data = {key: value.tolist() for key, value in data.items()}
        elif return_tensors != "np":
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}.")
        return BatchEncoding(data)

    def __call__(
        self,
        histories,
        return_tensors: str | None = "pt",
        max_history: int | None = None,
        unknown_items: str | None = None,
        **kwargs,
    ) -> BatchEncoding:
        """Histories of item ids -> model inputs.

        histories: a batch (a list of histories, or a 2-D array / tensor), or ONE history. One history is a string
        of whitespace-separated ids (`tok("B01 B02")`, as `tok("some text")` is one sequence in transformers) or a
        flat list (or 1-D array / tensor) of item ids (`tok(["B01", "B02"])`, `tok([1490, 2177])`). Item ids are
        strings or ints (an int is its decimal string: 1490 is item "1490"). Inside a batch, a row that is a string
        is read like `tok(string)`: whitespace-separated ids, so a bare id is one item, never its characters; a row
        that is a single id is a one-item history. Anything else (floats, bools, dicts) is a ValueError naming it.
        Unknown ids raise (or are dropped with unknown_items="drop"); a history with no known item raises a ValueError.
        Rows are always left-padded to the longest one (padding=True or "longest" is accepted and changes nothing);
        other text-tokenizer arguments (truncation, max_length, padding="max_length", ...) are refused, since they
        would do nothing here: max_history is the length cap.
        """
        padding = kwargs.pop("padding", True)
        if padding not in (True, "longest") or kwargs:
            given = sorted(kwargs) + ([] if padding in (True, "longest") else [f"padding={padding!r}"])
            raise ValueError(f"CobraTokenizer does not take {', '.join(given)}: histories are left-padded to the "
                             "longest row and cut to max_history (pass max_history=N).")
        indices = [self.items_to_indices(history, unknown_items) for history in self._as_histories(histories)]
        return self.encode_indices(indices, max_history=max_history, return_tensors=return_tensors)

    @staticmethod
    def _item_id(value, where: str) -> str:
        """One item id (a string, or an int meaning its decimal string) -> str; a ValueError for anything else."""
        if isinstance(value, str):
            if value.split() != [value]:
                # ["i1 i2", "i3 i4"] would otherwise be one history of two unknown ids, and unknown_items="drop"
                # would turn two histories into one
                raise ValueError(f"{value!r} is not an item id ({where}): item ids are non-empty and hold no "
                                 "whitespace. A batch of string histories is a list of lists: "
                                 "[history.split() for history in histories].")
            return value
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return str(int(value))
        raise ValueError(f"{value!r} is not an item id ({where}): item ids are strings or ints.")

    def _as_histories(self, histories) -> list[list[str]]:
        """Every input shape `__call__` accepts -> a list of histories of item id strings."""
        if isinstance(histories, (torch.Tensor, np.ndarray)):
            histories = histories.tolist()
        if isinstance(histories, str):
            return [histories.split()]
        if not isinstance(histories, (list, tuple)):
            return [[self._item_id(histories, "the whole input")]]
        if not histories:
            raise ValueError("No histories given.")
        if not any(isinstance(row, (list, tuple)) for row in histories):  # a flat list of ids: one history
            return [[self._item_id(item, f"position {n} of the history") for n, item in enumerate(histories)]]
        rows = []
        for row, history in enumerate(histories):
            if isinstance(history, str):
                rows.append(history.split())
            elif isinstance(history, (list, tuple)):
                rows.append([self._item_id(item, f"row {row}, position {n}") for n, item in enumerate(history)])
            elif isinstance(history, (int, np.integer)) and not isinstance(history, (bool, np.bool_)):
                rows.append([str(int(history))])
            else:
                raise ValueError(f"Batch row {row} is {history!r} ({type(history).__name__}): a history is a list of "
                                 "item ids (strings or ints) or one string of whitespace-separated ids.")
        return rows

    def history_items(self, histories, unknown_items: str | None = None) -> torch.Tensor:
        """Each whole history's catalog rows, Long[B, E] (E: the longest history; -1 as padding), for
        `generate(history_items=...)`: with exclude_history it then also leaves out the items of a history longer
        than max_history that encoding cut. Takes what `__call__` takes; unknown ids as `unknown_items` says."""
        rows = [self.items_to_indices(history, unknown_items) for history in self._as_histories(histories)]
        table = torch.full((len(rows), max(1, max(map(len, rows)))), -1, dtype=torch.long)
        for row, indices in enumerate(rows):
            table[row, : len(indices)] = torch.tensor(indices, dtype=torch.long)
        return table

    # ------------------------------------------------------------------ decoding
    def semantic_id(self, item: str) -> tuple[int, ...]:
        """The semantic ID (codes) of an item id."""
        return tuple(int(code) for code in self.item_codes[self.items_to_indices([item])[0]])

    def items_with_id(self, codes: Sequence[int]) -> list[str]:
        """All item ids carrying a semantic ID; [] if the ID maps to no item (it is not invented)."""
        if self._id_to_items is None:
            table: dict[tuple[int, ...], list[int]] = {}
            for index, row in enumerate(self.item_codes.tolist()):
                table.setdefault(tuple(row), []).append(index)
            self._id_to_items = table
        return [self.item_ids[index] for index in self._id_to_items.get(tuple(int(c) for c in codes), [])]

    def decode_semantic_ids(self, token_ids) -> list[tuple[int, ...]]:
        """Token ids Long[..., L] (with level offsets) -> semantic IDs as code tuples."""
        array = np.asarray(token_ids.cpu() if isinstance(token_ids, torch.Tensor) else token_ids, dtype=np.int64)
        codes = array.reshape(-1, self.num_levels) - self.level_offsets
        if (codes < 0).any() or (codes >= np.asarray(self.level_sizes)).any():
            raise ValueError("These token ids are not semantic-ID tokens of this tokenizer.")
        return [tuple(row) for row in codes.tolist()]

    def batch_decode_items(self, outputs, with_scores: bool = False):
        """Generated recommendations -> item ids, best first.

        outputs: the object `model.generate` returns (with `.item_indices` Long[B, K] and `.scores`), or an
        index tensor/array Long[B, K]. Padding entries (-1, fewer candidates than K) are left out.
        Returns list[list[str]], or list[list[(item_id, score)]] with with_scores=True.
        """
        indices = getattr(outputs, "item_indices", outputs)
        scores = getattr(outputs, "scores", None)
        indices = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
        if indices.ndim == 1:
            indices = indices[None]
        if indices.size and indices.max() >= self.num_items:
            raise ValueError(
                f"Item index {int(indices.max())} is outside this tokenizer's catalog of {self.num_items} items: "
                "were the model and tokenizer made from the same catalog?"
            )
        if with_scores and scores is None:
            raise ValueError("with_scores=True needs the generate output object, which carries the scores.")
        score_rows = np.asarray(scores.float().cpu()).reshape(indices.shape).tolist() if with_scores else None
        decoded = []
        for row, index_row in enumerate(indices.tolist()):
            if with_scores:
                decoded.append([(self.item_ids[i], s) for i, s in zip(index_row, score_rows[row]) if i >= 0])
            else:
                decoded.append([self.item_ids[i] for i in index_row if i >= 0])
        return decoded

    def decode(self, token_ids, skip_special_tokens: bool = False, **kwargs):
        """Item indices (what `model.generate` returns in `item_indices`, catalog rows best first) -> item ids:
        one row (Long[K], a list of ints, or one int) -> a string of space-separated item ids (`tok(text)` reads it
        back); a batch (Long[B, K], the generate output itself, or a tokenizer encoding) -> a list of such strings,
        as transformers' decode does. Padding (-1) is left out. COBRA's model input ids are semantic-ID codes, not
        items: see `convert_ids_to_tokens` / `decode_semantic_ids` for those. `batch_decode_items` gives lists."""
        rows, batched = self._index_rows(token_ids)
        texts = [" ".join(items) for items in self._items_of_rows(rows)]
        return texts if batched else texts[0]

    def batch_decode(self, sequences, skip_special_tokens: bool = False, **kwargs) -> list[str]:
        """Item indices Long[B, K] (generate's `item_indices`, or the generate output) -> one string of
        space-separated item ids per row, best first (see `decode`)."""
        rows, batched = self._index_rows(sequences)
        return [" ".join(items) for items in self._items_of_rows(rows if batched else rows[:1])]

    @staticmethod
    def _index_rows(ids) -> tuple[list[list[int]], bool]:
        """generate output / encoding / tensor / array / (nested) list of item indices -> (rows, was it a batch)."""
        if hasattr(ids, "item_indices"):
            ids = ids.item_indices
        elif isinstance(ids, (dict, BatchEncoding)) and "item_index" in ids:  # an encoding: its histories
            index = np.asarray(ids["item_index"], dtype=np.int64)
            mask = np.asarray(ids["attention_mask"], dtype=np.int64).reshape(index.shape[0], index.shape[1], -1)[..., 0]
            ids = np.where(mask > 0, index, -1)
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            ids = ids.tolist()
        if not isinstance(ids, (list, tuple)):
            return [[int(ids)]], False
        if ids and isinstance(ids[0], (list, tuple)):
            return [[int(i) for i in row] for row in ids], True
        return [[int(i) for i in ids]], False

    def _items_of_rows(self, rows: list[list[int]]) -> list[list[str]]:
        """Rows of item indices -> rows of item ids, -1 (padding) left out; a ValueError for any other index
        outside the catalog."""
        for row in rows:
            bad = [i for i in row if i < -1 or i >= self.num_items]
            if bad:
                raise ValueError(
                    f"Item index {bad[0]} is outside this tokenizer's catalog of {self.num_items} items (rows 0 to "
                    f"{self.num_items - 1}, -1 = padding): decode() reads the item indices generate returns."
                )
        return [[self.item_ids[i] for i in row if i >= 0] for row in rows]

    def title(self, item: str) -> str:
        return self.titles[self.items_to_indices([item])[0]]
