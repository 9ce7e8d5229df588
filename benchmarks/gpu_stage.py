"""Staging for benchmarks/gpu_check.py, on the CPU machine: the data, catalog, sentence encoder's tokenizer and
token rows, and the pure-Python packages the device image lacks, gathered into one folder that a device call
carries (`gpu_check.py stage`); and a generated tiny stage for `gpu_check.py run --tiny` (the test).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE_DIR = ".gpu_check"
SITE_PACKAGES = ("datasets", "dill", "multiprocess", "_multiprocess")
ENCODER_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
TINY_WORDS = ["red", "blue", "green", "pen", "ink", "paper", "lamp", "desk", "chair", "soap", "gel", "brush", "cup",
              "box", "acme", "office", "home", "bath"]
MARKER = "stage.json"  # what `stage` writes last: a folder holding it was staged by this script
PARTIAL_MARKER = ".gpu_stage_partial"  # the first file of a folder being staged


class StageRefused(ValueError):
    """The stage folder exists and this script did not write it."""


def check_replaceable(target: Path) -> None:
    """Raises StageRefused unless `target` is absent, an empty folder, or a stage this script wrote, and the name
    the swap parks the old stage under (TARGET.old) is free or holds one of its stages too."""
    old = target.with_name(target.name + ".old")
    if old.exists() and not (old / MARKER).is_file():
        raise StageRefused(f"{old} exists and was not written by gpu_check.py stage; move it away or name another "
                           "folder with --stage-dir")
    if not target.exists():
        return
    if target.is_dir() and ((target / MARKER).is_file() or not any(target.iterdir())):
        return
    raise StageRefused(f"--stage-dir {target} exists and was not written by gpu_check.py stage (no {MARKER}); "
                       "name a new folder with --stage-dir")


def _fresh_partial(target: Path) -> Path:
    """TARGET.partial, emptied of an earlier interrupted stage's leftovers (only those: it must hold our marker)."""
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        if not (partial / PARTIAL_MARKER).is_file():
            raise StageRefused(f"{partial} exists and was not written by gpu_check.py stage; move it away or name "
                               "another folder with --stage-dir")
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    (partial / PARTIAL_MARKER).write_text("")
    return partial


def _swap_in(partial: Path, target: Path) -> None:
    """Puts the finished `partial` at `target`; the replaced stage (ours, checked before) is removed after."""
    (partial / PARTIAL_MARKER).unlink()
    old = target.with_name(target.name + ".old")
    if old.exists() and (old / MARKER).is_file():
        shutil.rmtree(old)  # a replaced stage left by an interrupted swap
    if target.exists():
        target.rename(old)
    partial.rename(target)
    if old.exists():
        shutil.rmtree(old)


def stage(data: Path, target: Path, catalog: Path | None = None, encoder: str | None = None,
          cache_dir: str | None = None, site: bool = True, catalog_settings: dict | None = None) -> dict:
    """Writes `target` (see gpu_check.py's docstring) and returns its stage.json. The folder is built aside
    (TARGET.partial) and swapped in whole, so an interrupted stage leaves the old one; an existing `target` is
    replaced only when this script wrote it (it holds stage.json) or it is empty, else StageRefused is raised."""
    check_replaceable(target)  # before the heavy imports: a refusal costs nothing
    stage_dir = _fresh_partial(target)
    import torch
    from safetensors.torch import save_file

    from cobra_hf.semantic_ids.embeddings import resolve_encoder
    from cobra_hf.training.model_builder import encoder_token_rows, load_catalog, read_prepare_args

    (stage_dir / "data").mkdir()
    for name in ("sequences.txt", "items.jsonl"):
        shutil.copy2(data / name, stage_dir / "data" / name)
    if catalog is not None:
        shutil.copytree(catalog, stage_dir / "catalog")
    else:
        from cobra_hf.semantic_ids.catalog import build_catalog

        build_catalog(stage_dir / "data", stage_dir / "catalog", encoder=encoder, cache_dir=cache_dir,
                      show_progress=False, **(catalog_settings or {}))
    prepare_args = read_prepare_args(stage_dir / "catalog")
    encoder_path = Path(resolve_encoder(encoder if encoder is not None else prepare_args.get("encoder")))
    (stage_dir / "encoder").mkdir()
    for name in ENCODER_FILES:
        if (encoder_path / name).is_file():
            shutil.copy2(encoder_path / name, stage_dir / "encoder" / name)
    tokenizer, text, _ = load_catalog(stage_dir / "catalog")
    rows = encoder_token_rows(str(encoder_path), text["source_token_ids"])
    if rows is not None:
        save_file({"rows": rows.contiguous()}, str(stage_dir / "token_rows.safetensors"))
    copied = copy_site_packages(stage_dir / "site") if site else []
    size = sum(path.stat().st_size for path in stage_dir.rglob("*") if path.is_file())
    record = {"data": str(data), "catalog_source": None if catalog is None else str(catalog),
              "catalog_hash": tokenizer.catalog_hash, "num_items": tokenizer.num_items,
              "encoder": encoder_path.name, "token_rows": rows is not None, "site_packages": copied,
              "megabytes": round(size / 2**20, 1), "torch_here": torch.__version__,
              "python_here": platform.python_version()}
    (stage_dir / "stage.json").write_text(json.dumps(record, indent=1))
    _swap_in(stage_dir, target)
    exclude_from_git(target)
    return record


def copy_site_packages(target: Path) -> list[str]:
    """The pure-Python packages the device image lacks, with their dist-info (versions for importlib.metadata)."""
    import importlib.metadata
    import importlib.util

    target.mkdir(parents=True)
    copied = []
    for name in SITE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        shutil.copytree(spec.submodule_search_locations[0], target / name,
                        ignore=shutil.ignore_patterns("__pycache__", "tests"))
        copied.append(name)
        try:
            dist = importlib.metadata.distribution(name)
            info = Path(dist._path)  # noqa: SLF001 (the installed dist-info folder)
            shutil.copytree(info, target / info.name)
            copied[-1] += f"=={dist.version}"
        except (importlib.metadata.PackageNotFoundError, AttributeError):
            pass
    return copied


def exclude_from_git(folder: Path) -> None:
    """Lists folder in .git/info/exclude when it lies in this checkout (untracked files would travel anyway; this
    keeps them out of `git status`)."""
    try:
        relative = folder.resolve().relative_to(ROOT)
        git_dir = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.strip()
    except (ValueError, OSError, subprocess.CalledProcessError):
        return
    exclude = (ROOT / git_dir / "info" / "exclude")
    line = f"/{relative.as_posix()}/"
    current = exclude.read_text() if exclude.is_file() else ""
    if line not in current.splitlines():
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text(current + ("" if current.endswith("\n") or not current else "\n") + line + "\n")


def tiny_stage(root: Path) -> Path:
    """A generated 60-item dataset, a random 2-layer BERT encoder and a catalog from them, staged under root."""
    import random

    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    rng = random.Random(0)
    data = root / "tiny_data"
    data.mkdir(parents=True)
    with open(data / "items.jsonl", "w", encoding="utf-8") as handle:
        for i in range(60):
            row = {"item_id": f"I{i:03d}", "title": " ".join(rng.sample(TINY_WORDS, 3)), "brand": "acme",
                   "categories": ["home"], "description": None, "attributes": []}
            handle.write(json.dumps(row) + "\n")
    with open(data / "sequences.txt", "w", encoding="utf-8") as handle:
        for user in range(50):
            items = [f"I{rng.randrange(60):03d}" for _ in range(rng.randint(4, 9))]
            handle.write(f"U{user:03d} " + " ".join(items) + "\n")
    encoder = root / "tiny_encoder"
    encoder.mkdir()
    (encoder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]) + "\n")
    BertTokenizer(str(encoder / "vocab.txt")).save_pretrained(str(encoder))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(TINY_WORDS) + 5, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=128)).save_pretrained(str(encoder))
    settings = {"num_levels": 2, "codebook_size": 8, "rqvae_epochs": 2, "max_text_tokens": 8,
                "rqvae_overrides": {"hidden_dims": [32], "code_dim": 8, "batch_size": 64}}
    stage(data, root / "stage", encoder=str(encoder), site=False, catalog_settings=settings)
    return root / "stage"
