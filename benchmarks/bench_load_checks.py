"""What the load-time checks of `from_pretrained` cost (cobra_hf.integrity, issue 19 case 5).

The checks: every weight file recorded in checksums.json is streamed once through sha256 (size first). The save
checked its tensors (NaN/inf in every floating tensor, the catalog's sentence embeddings among them; catalog codes and
text ids in range) and recorded it, so a load whose sha256 match does not scan them again; a checkpoint without that
record (older, foreign) is scanned instead ("tensor_checks_alone_s"). This script builds a model with random weights of the Beauty run's layout (3 x 32 codes,
hidden 128, 32 text tokens, 384-wide sentence embeddings, learned item embeddings, the ID-free head) for two catalog
sizes: Beauty's 12,101 items and a synthetic 1,000,000 items. Each is saved with its tokenizer (model.safetensors,
item_catalog.json, checksums.json) and loaded in this one process, alternately with and without the checks
(`check_integrity=False`), after one warm-up load so that both read from the page cache. It prints, and writes as
JSON (default benchmarks/results/load_checks.json), the best time of each, their ratio, and the two checks timed
alone. safetensors maps the weights lazily, so a load without checks reads almost nothing:
"load_without_checks_then_read_every_tensor_s" (one sum per tensor after that load) shows what touching the bytes
once costs anyway, e.g. on the first catalog encoding.

    OMP_NUM_THREADS=1 python benchmarks/bench_load_checks.py           # about 2 minutes, ~8 GB of memory at the peak
    python benchmarks/bench_load_checks.py --sizes 12101 --repeats 5   # Beauty only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from cobra_hf import CobraConfig, CobraForSequentialRecommendation, CobraTokenizer
from cobra_hf.integrity import EDITABLE, check_loaded_model, verify_files

BEAUTY = dict(level_sizes=[32, 32, 32], text_vocab_size=6213, max_text_tokens=32, text_embedding_dim=384,
              hidden_size=128, num_attention_heads=4, intermediate_size=512, decoder_layers=2,
              use_item_embeddings=True, history_dense_loss_weight=2.0)


def build(num_items: int, seed: int = 0) -> tuple[CobraForSequentialRecommendation, CobraTokenizer]:
    """A random-weight model and tokenizer of the Beauty layout with num_items items (codes need not be unique)."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 32, (num_items, 3), generator=gen)
    text = torch.randint(1, BEAUTY["text_vocab_size"], (num_items, BEAUTY["max_text_tokens"]), generator=gen)
    embeddings = torch.randn(num_items, BEAUTY["text_embedding_dim"], generator=gen)
    tokenizer = CobraTokenizer.from_items([f"item{n}" for n in range(num_items)], codes, level_sizes=[32, 32, 32])
    torch.manual_seed(seed)
    model = CobraForSequentialRecommendation(CobraConfig(num_items=num_items, **BEAUTY))
    model.set_catalog(codes, text, embeddings, tokenizer.catalog_hash)
    return model.eval(), tokenizer


def timed(function) -> float:
    start = time.perf_counter()
    result = function()
    elapsed = time.perf_counter() - start
    del result
    gc.collect()
    return elapsed


def measure(num_items: int, repeats: int, workdir: Path) -> dict:
    folder = workdir / f"items_{num_items}"
    model, tokenizer = build(num_items)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model, tokenizer
    gc.collect()
    recorded = json.loads((folder / "checksums.json").read_text())["files"]
    sizes = {name: (folder / name).stat().st_size for name in ("model.safetensors", "item_catalog.json")}

    def load(check: bool):
        return lambda: CobraForSequentialRecommendation.from_pretrained(folder, check_integrity=check)

    def load_and_read():  # safetensors maps the file lazily: this is what touching every byte once costs
        model = CobraForSequentialRecommendation.from_pretrained(folder, check_integrity=False)
        return [float(t.double().sum()) if t.is_floating_point() else int(t.sum()) for t in model.state_dict().values()]

    timed(load(True))  # warm-up: page cache, imports, the first allocation of this size
    plain, checked, read = [], [], []
    for _ in range(repeats):
        plain.append(timed(load(False)))
        checked.append(timed(load(True)))
        read.append(timed(load_and_read))
    model = CobraForSequentialRecommendation.from_pretrained(folder, check_integrity=False)
    checksum_s = min(timed(lambda: verify_files(folder)) for _ in range(repeats))
    tensors_s = min(timed(lambda: check_loaded_model(model, folder)) for _ in range(repeats))
    del model
    gc.collect()
    hashed = sum(entry["size"] for name, entry in recorded.items() if name not in EDITABLE and not name.endswith(".py"))
    row = {
        "num_items": num_items,
        "model_safetensors_mb": round(sizes["model.safetensors"] / 2**20, 1),
        "item_catalog_json_mb": round(sizes["item_catalog.json"] / 2**20, 1),
        "hashed_mb": round(hashed / 2**20, 1),
        "load_without_checks_s": round(min(plain), 3),
        "load_with_checks_s": round(min(checked), 3),
        "ratio": round(min(checked) / min(plain), 3),
        "extra_s": round(min(checked) - min(plain), 3),
        "load_without_checks_then_read_every_tensor_s": round(min(read), 3),
        "checksums_alone_s": round(checksum_s, 3),
        "tensor_checks_alone_s": round(tensors_s, 3),
        "sha256_mb_per_s": round(hashed / 2**20 / checksum_s, 1),
        "repeats": repeats,
        "all_without_s": [round(t, 3) for t in plain],
        "all_with_s": [round(t, 3) for t in checked],
    }
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[12101, 1_000_000], help="catalog sizes (items)")
    parser.add_argument("--repeats", type=int, default=3, help="timed loads of each kind (the best is reported)")
    parser.add_argument("--workdir", default=None, help="where the checkpoints are written (default: a temp folder)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "load_checks.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-load-checks-", dir=args.workdir) as tmp:
        rows = [measure(size, args.repeats, Path(tmp)) for size in args.sizes]
    result = {
        "what": "from_pretrained of a random-weight model of the Beauty layout, with and without the load-time "
                "checks (sha256 of every recorded weight file; the tensor scan, done at save, is skipped when they "
                "match); best of `repeats` loads each, one process, files in the page cache. tensor_checks_alone_s: "
                "the scan a checkpoint without checksums.json gets instead",
        "layout": BEAUTY,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "results": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp_output = Path(args.output).with_suffix(".json.tmp")
    tmp_output.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp_output, args.output)
    return result


if __name__ == "__main__":
    main()
