"""The synthetic catalog and log of benchmarks/bench_million.py: item texts from the sentence encoder's own word pieces,
a Zipf-like log with a per-user category taste, and per-text synthetic embeddings (see bench_million's docstring for
why and how). Deterministic given the seed."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

WORD = re.compile(r"[a-z0-9]+")


def vocabulary(seed: int) -> dict[str, list[str]]:
    """Whole English words of the sentence encoder's WordPiece vocabulary, split into title words, brand and category
    names (deterministic given the encoder and the seed)."""
    import numpy as np

    from cobra_hf.semantic_ids.embeddings import load_encoder_tokenizer

    words = sorted(w for w in load_encoder_tokenizer(None).get_vocab() if re.fullmatch(r"[a-z]{3,10}", w))
    rng = np.random.default_rng(seed)
    words = [words[i] for i in rng.permutation(len(words))]
    return {"title": words[:4000], "brand": words[4000:5500], "category": words[5500:6500]}


def power_law_ranks(rng, sizes, exponent: float):
    """One draw per entry of `sizes` (int array): a rank in [0, size) with P(rank r) ~ (r + 1) ** -exponent
    (inverse CDF of the continuous power law on [1, size + 1); exponent != 1)."""
    import numpy as np

    sizes = np.asarray(sizes, dtype=np.float64)
    u = rng.random(sizes.shape)
    b = 1.0 - exponent
    x = (1.0 + u * ((sizes + 1.0) ** b - 1.0)) ** (1.0 / b)
    return np.minimum(np.floor(x).astype(np.int64) - 1, sizes.astype(np.int64) - 1).clip(min=0)


def make_items(rng, count: int, words: dict, num_leaves: int, prefix: str, start: int = 0) -> tuple[list[dict], "np.ndarray"]:
    """`count` item rows (item_id, title, brand, categories) and their leaf category index."""
    import numpy as np

    title_words, brands, names = words["title"], words["brand"], words["category"]
    leaf = rng.integers(0, num_leaves, count)
    lengths = rng.integers(3, 8, count)
    picks = power_law_ranks(rng, np.full(int(lengths.sum()), len(title_words)), 0.8)
    topical = rng.random(int(lengths.sum())) < 0.6  # most title words come from the category's 40 topic words
    leaf_of_word = np.repeat(leaf, lengths)
    topic = (leaf_of_word * 40 + rng.integers(0, 40, int(lengths.sum()))) % len(title_words)
    picks = np.where(topical, topic, picks)
    brand = (leaf * 7 + rng.integers(0, 12, count)) % len(brands)
    rows, at = [], 0
    for i in range(count):
        n = int(lengths[i])
        c = int(leaf[i])
        path = [names[(c // 48) % len(names)], names[(100 + c // 6) % len(names)], names[(300 + c) % len(names)]]
        rows.append({"item_id": f"{prefix}{start + i:07d}",
                     "title": " ".join(title_words[j] for j in picks[at:at + n]),
                     "brand": brands[int(brand[i])], "categories": path, "description": None, "attributes": None})
        at += n
    return rows, leaf


def make_log(rng, num_items: int, num_users: int, leaf, exponent: float, taste: float):
    """Users' sequences as arrays of catalog indices: (flat items, lengths). Popularity: a random order of the items,
    rank r drawn with P ~ (r + 1) ** -exponent; half of a user's items (taste) come from one category, by the same law
    over that category's items in popularity order."""
    import numpy as np

    popularity = rng.permutation(num_items)  # rank -> item
    rank_of = np.empty(num_items, dtype=np.int64)
    rank_of[popularity] = np.arange(num_items)
    by_leaf = np.lexsort((rank_of, leaf))  # items grouped by category, most popular first
    leaf_sizes = np.bincount(leaf, minlength=int(leaf.max()) + 1)
    leaf_start = np.concatenate([[0], np.cumsum(leaf_sizes)[:-1]])
    lengths = np.minimum(4 + rng.geometric(1 / 6, num_users), 50)  # 5..50, mean about 10
    total = int(lengths.sum())
    user_leaf = leaf[popularity[power_law_ranks(rng, np.full(num_users, num_items), exponent)]]  # taste: a popular category
    event_leaf = np.repeat(user_leaf, lengths)
    from_taste = rng.random(total) < taste
    global_items = popularity[power_law_ranks(rng, np.full(total, num_items), exponent)]
    within = power_law_ranks(rng, leaf_sizes[event_leaf], exponent)
    taste_items = by_leaf[leaf_start[event_leaf] + within]
    return np.where(from_taste, taste_items, global_items), lengths


def synthetic_vectors(texts: list[str], dim: int, chunk: int = 8192):
    """Float[N, dim]: per text, the L2-normalised sum of one N(0, 1) vector per word (seeded by the word's CRC32):
    a deterministic function of the text alone."""
    import numpy as np
    import torch

    from array import array

    columns: dict[str, int] = {}
    rows, cols = array("q"), array("q")  # 8 bytes per word, not a Python int each
    for i, text in enumerate(texts):
        for word in WORD.findall(text.lower()):
            rows.append(i)
            cols.append(columns.setdefault(word, len(columns)))
    basis = torch.empty(len(columns), dim)
    for word, j in columns.items():
        basis[j] = torch.randn(dim, generator=torch.Generator().manual_seed(zlib.crc32(word.encode("utf-8"))))
    rows_t, cols_t = torch.from_numpy(np.frombuffer(rows, np.int64).copy()), torch.from_numpy(np.frombuffer(cols, np.int64).copy())
    del rows, cols
    out = torch.zeros(len(texts), dim)
    bounds = np.searchsorted(rows_t.numpy(), np.arange(0, len(texts) + chunk, chunk))
    for k, begin in enumerate(range(0, len(texts), chunk)):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        out[begin:begin + chunk].index_add_(0, rows_t[lo:hi] - begin, basis[cols_t[lo:hi]])
    return torch.nn.functional.normalize(out, dim=-1)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
