"""The paths a GPU user takes, tested on the CPU: where and in which precision `prepare` / `add-items` embed
(--device, --embed-dtype, --embed-batch-size), training and generate() under bf16 (the Trainer's CPU autocast with
`--use_cpu True --bf16 True`, and a model cast to bf16), bf16 by default on a CUDA GPU that has it (mocked), the
catalog index built once per weights, and benchmarks/gpu_check.py in its --tiny form."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cobra_hf.cli.main import main as cli_main
from cobra_hf.semantic_ids import embeddings as emb

sys.path.insert(0, os.path.dirname(__file__))
from conftest import COLD_FAST, COLD_MODEL, data_make_folder, make_cold_start  # noqa: E402
from tiny import random_histories, tiny_model  # noqa: E402

sys.path.pop(0)

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["red pen", "blue ink and paper", "lamp desk chair soap gel red blue", "soap", "green cup box", "bath brush"]
ALL_MODES = [dict(mode="cobra"), dict(mode="sparse"), dict(mode="dense"), dict(mode="no_fusion"),
             dict(mode="cobra", beam_fusion="joint", dense_guided_ids=3, beam_fusion_dense_psi=4.0),
             dict(mode="cobra", exclude_history=True)]


def no_cuda(monkeypatch):
    """This machine has no CUDA GPU, whatever the one running the tests has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ------------------------------------------------------------------------------------------------ 1. embeddings
def test_bf16_embeddings_on_cpu_are_fp32_unit_vectors_close_to_fp32(data_tiny_encoder, one_torch_thread):
    full = emb.embed_texts(TEXTS, data_tiny_encoder, device="cpu", dtype="fp32", show_progress=False)
    half = emb.embed_texts(TEXTS, data_tiny_encoder, device="cpu", dtype="bf16", batch_size=4, show_progress=False)
    assert half.dtype == torch.float32 and half.device.type == "cpu" and half.shape == full.shape
    assert torch.allclose(half.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)
    assert (half * full).sum(-1).min() > 0.995  # the same direction within bf16's rounding
    assert not torch.equal(half, full)  # the encoder did run in bf16


def test_embedding_cache_keys_the_dtype(data_tiny_encoder, tmp_path, monkeypatch, one_torch_thread):
    path = str(data_tiny_encoder)
    key = emb.embedding_cache_key(TEXTS, path, 64)
    assert key == emb.embedding_cache_key(TEXTS, path, 64, "fp32")  # caches made before the dtype stay valid
    assert len({key, emb.embedding_cache_key(TEXTS, path, 64, "fp16"), emb.embedding_cache_key(TEXTS, path, 64, "bf16")}) == 3
    full = emb.embed_texts(TEXTS, data_tiny_encoder, cache_dir=tmp_path, device="cpu", dtype="fp32", show_progress=False)

    def no_model(*args, **kwargs):
        raise AssertionError("the encoder was loaded")

    monkeypatch.setattr(emb, "load_encoder", no_model)
    assert torch.equal(emb.embed_texts(TEXTS, data_tiny_encoder, cache_dir=tmp_path, device="cpu", dtype="fp32",
                                       show_progress=False), full)
    with pytest.raises(AssertionError, match="loaded"):  # an fp32 cache is never served for a bf16 request
        emb.embed_texts(TEXTS, data_tiny_encoder, cache_dir=tmp_path, device="cpu", dtype="bf16", show_progress=False)


def test_device_and_dtype_resolution(monkeypatch):
    no_cuda(monkeypatch)
    assert emb.resolve_device("auto") == emb.resolve_device(None) == "cpu"
    assert emb.resolve_device("CPU") == "cpu"
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=rf"^--device {device}: .*--device cpu"):
            emb.resolve_device(device)
    with pytest.raises(ValueError, match="--device 'tpu': not a device"):
        emb.resolve_device("tpu")
    assert emb.resolve_embed_dtype("auto", "cpu") == "fp32" and emb.resolve_embed_dtype("bf16", "cpu") == "bf16"
    assert emb.default_batch_size("cpu") == 64
    with pytest.raises(ValueError, match="--embed-dtype 'int8'"):
        emb.resolve_embed_dtype("int8", "cpu")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # one GPU, without bf16
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert emb.resolve_device("auto") == "cuda" and emb.resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match="--device cuda:1: this machine has 1 CUDA GPU"):
        emb.resolve_device("cuda:1")
    assert emb.resolve_embed_dtype("auto", "cuda") == "fp16" and emb.default_batch_size("cuda:0") == 512
    with pytest.raises(ValueError, match="--embed-dtype bf16: the GPU cuda has no bf16"):
        emb.resolve_embed_dtype("bf16", "cuda")


def test_half_precision_overflow_falls_back_to_fp32(data_tiny_encoder, monkeypatch, one_torch_thread):
    """An encoder whose half-precision output is not finite (fp16 overflows past 65504) is run in fp32 instead."""
    real = emb.load_encoder

    def overflowing(path, device="cpu", dtype="fp32"):
        tokenizer, model = real(path, device=device, dtype=dtype)
        forward = model.forward

        def patched(**batch):
            out = forward(**batch)
            if out.last_hidden_state.dtype != torch.float32:
                out.last_hidden_state = out.last_hidden_state * float("inf")
            return out

        model.forward = patched
        return tokenizer, model

    monkeypatch.setattr(emb, "load_encoder", overflowing)
    full = emb.embed_texts(TEXTS, data_tiny_encoder, device="cpu", dtype="fp32", show_progress=False)
    rescued = emb.embed_texts(TEXTS, data_tiny_encoder, device="cpu", dtype="bf16", batch_size=2, show_progress=False)
    assert torch.isfinite(rescued).all() and torch.allclose(rescued, full, atol=1e-6)


def test_prepare_cli_device_dtype_and_batch_size(data_tiny_encoder, tmp_path, monkeypatch, capsys, one_torch_thread):
    no_cuda(monkeypatch)
    data = data_make_folder(tmp_path / "data", num_items=30, num_users=20)
    base = ["prepare", str(data), "--encoder", str(data_tiny_encoder), "--levels", "2", "--codebook-size", "4",
            "--epochs", "2", "--quiet"]
    # a device this machine lacks: one line naming --device, nothing written
    assert cli_main([*base, "--output", str(tmp_path / "bad"), "--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cobra-hf prepare: error: --device cuda:")
    assert not (tmp_path / "bad").exists()
    assert cli_main([*base, "--output", str(tmp_path / "bad"), "--embed-batch-size", "0"]) == 1
    assert "--embed-batch-size must be at least 1" in capsys.readouterr().err

    calls = []
    real = emb.embed_texts
    monkeypatch.setattr("cobra_hf.semantic_ids.catalog.embed_texts",
                        lambda *args, **kwargs: calls.append(kwargs) or real(*args, **kwargs))
    out = tmp_path / "catalog"
    assert cli_main([*base, "--output", str(out), "--device", "cpu", "--embed-dtype", "bf16",
                     "--embed-batch-size", "7"]) == 0
    assert "on cpu in bf16" in capsys.readouterr().out
    assert [(c["device"], c["dtype"], c["batch_size"]) for c in calls] == [("cpu", "bf16", 7)]
    prepare_args = json.loads((out / "prepare_args.json").read_text())
    assert prepare_args["embed_dtype"] == "bf16" and prepare_args["embed_device"] == "cpu"
    text = load_file(str(out / "item_text.safetensors"))["text_embeddings"]
    assert text.dtype == torch.float32 and torch.allclose(text.norm(dim=-1), torch.ones(len(text)), atol=1e-5)


def test_add_items_cli_device_dtype_and_batch_size(data_tiny_encoder, tmp_path, monkeypatch, capsys, one_torch_thread):
    no_cuda(monkeypatch)
    cold = make_cold_start(tmp_path, data_tiny_encoder)
    items = tmp_path / "new.jsonl"
    items.write_text("".join(json.dumps(row) + "\n" for row in cold["heldout"][:3]))
    base = ["add-items", str(cold["checkpoint"]), str(items), "--encoder", str(data_tiny_encoder)]
    capsys.readouterr()  # the fixture's own output
    assert cli_main([*base, "--output", str(tmp_path / "bad"), "--device", "cuda:0"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cobra-hf add-items: error: --device cuda:0:")
    assert not (tmp_path / "bad").exists()

    calls = []
    real = emb.embed_texts
    monkeypatch.setattr("cobra_hf.cold_start.embed_texts", lambda *args, **kwargs: calls.append(kwargs) or real(*args, **kwargs))
    assert cli_main([*base, "--output", str(tmp_path / "grown"), "--embed-dtype", "bf16", "--embed-batch-size", "2"]) == 0
    capsys.readouterr()
    assert [(c["device"], c["dtype"], c["batch_size"]) for c in calls] == [("cpu", "bf16", 2)]


# ------------------------------------------------------------------------------------------------ 2. bf16
def _check_recommendations(out, num_items: int, k: int) -> None:
    items, scores = out.item_indices, out.scores
    assert items.shape[1] == k and scores.dtype == torch.float32
    assert ((items >= 0) & (items < num_items)).all()
    assert all(len(set(row)) == k for row in items.tolist())  # distinct items
    assert torch.isfinite(scores).all() and (scores[:, :-1] >= scores[:, 1:]).all()  # best first


def test_generate_in_every_mode_under_bf16_autocast_and_in_a_bf16_model(one_torch_thread):
    model, tok = tiny_model(40)
    model.eval()
    batch = tok(random_histories(40, 6))
    reference = [model.generate(**batch, num_beams=5, top_k=5, **mode) for mode in ALL_MODES]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = [model.generate(**batch, num_beams=5, top_k=5, **mode) for mode in ALL_MODES]
    cast = tiny_model(40)[0].eval().to(torch.bfloat16)
    assert cast.model.dense_in.weight.dtype == torch.bfloat16
    in_bf16 = [cast.generate(**batch, num_beams=5, top_k=5, **mode) for mode in ALL_MODES]
    for mode, fp32, auto, half in zip(ALL_MODES, reference, autocast, in_bf16):
        for out in (auto, half):
            _check_recommendations(out, 40, 5)
            if out.beam_scores is not None:
                assert out.beam_scores.dtype == out.beam_vectors.dtype == torch.float32
        # the ID path is scored in fp32: the beams' log-probs stay within bf16's rounding of the decoder
        if fp32.beam_scores is not None:
            live = torch.isfinite(fp32.beam_scores)
            assert torch.allclose(auto.beam_scores[live], fp32.beam_scores[live], atol=0.05), mode
    # the catalog is encoded with autocast off: the same vectors whichever context built them
    assert model.all_item_vectors().dtype == cast.all_item_vectors().dtype == torch.float32


def test_ranking_scores_are_fp32_under_autocast():
    """Cosines that differ by 1e-4 rank apart in fp32; in bf16 (8 bits of mantissa) they would tie."""
    from cobra_hf.cobra_fusion import nearest_items

    base = torch.nn.functional.normalize(torch.ones(1, 16), dim=-1)
    angles = torch.tensor([0.3000, 0.3001, 0.3002, 0.3003])
    other = torch.nn.functional.normalize(torch.cat([torch.ones(8), -torch.ones(8)]), dim=0)
    catalog = torch.stack([math.cos(a) * base[0] + math.sin(a) * other for a in angles.tolist()])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        items, cos = nearest_items(base, catalog, 4)
    assert cos.dtype == torch.float32 and items[0].tolist() == [0, 1, 2, 3]
    assert (cos[0, :-1] > cos[0, 1:]).all()

    model, tok = tiny_model(40)
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = torch.randn(3, model.config.hidden_size)
        log_probs = model.level_log_probs(hidden, 0, torch.ones(3, 4, dtype=torch.bool))
        loss_input = torch.randn(5, model.config.hidden_size)
        from cobra_hf.cobra_losses import info_nce

        loss = info_nce(loss_input, torch.arange(5), torch.randn(9, model.config.hidden_size), 0.07)
    assert log_probs.dtype == torch.float32 and loss.dtype == torch.float32
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3), atol=1e-5)


@pytest.fixture(scope="module")
def tiny_catalog(data_tiny_encoder, tmp_path_factory):
    """A catalog of 60 items and 40 users from the tiny encoder (seconds to build)."""
    from cobra_hf.semantic_ids import build_catalog

    root = tmp_path_factory.mktemp("gpu_paths")
    data = data_make_folder(root / "data", num_items=60, num_users=40)
    return build_catalog(data, root / "catalog", encoder=data_tiny_encoder, max_text_tokens=8, **COLD_FAST)


TINY_FLAGS = ["--hidden_size", "32", "--num_attention_heads", "2", "--intermediate_size", "64", "--max_history", "8",
              "--init_text_embeddings", "False", "--disable_tqdm", "True", "--report_to", "none", "--seed", "0",
              "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16", "--dataloader_num_workers", "0"]


def test_training_under_cpu_bf16_autocast(tiny_catalog, tmp_path, one_torch_thread):
    """`--use_cpu True --bf16 True`: the Trainer's CPU bf16 autocast. The decoder runs in bf16, the losses are finite
    and fall, the master weights (and the checkpoint) stay fp32 and load bit-exact, and generate() works in every
    mode on the trained model, in and out of autocast."""
    from transformers import TrainerCallback

    from cobra_hf.inference import load_checkpoint
    from cobra_hf.training.train import parse_args, run_training

    seen = {"dtypes": set()}

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen["model"] = model
            model.sparse_head[0].register_forward_hook(lambda module, inputs, output: seen["dtypes"].add(output.dtype))

    out = tmp_path / "model"
    cobra_args, training_args = parse_args([
        "--catalog", str(tiny_catalog), "--output_dir", str(out), *TINY_FLAGS, "--use_cpu", "True", "--bf16", "True",
        "--max_steps", "30", "--learning_rate", "3e-3", "--warmup_steps", "0", "--logging_steps", "1",
        "--eval_strategy", "steps", "--eval_steps", "30", "--save_strategy", "no", "--eval_users", "10",
        "--eval_modes", "dense,sparse"])
    assert training_args.bf16 and training_args.use_cpu
    summary = run_training(cobra_args, training_args, callbacks=[Spy()])
    assert summary["precision"] == "bf16" and summary["device"] == "cpu"
    assert torch.bfloat16 in seen["dtypes"]  # the heads ran under autocast
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert len(losses) == 30 and all(math.isfinite(loss) for loss in losses)
    print("losses", [round(x, 2) for x in losses])
    assert sum(losses[-6:]) < sum(losses[:6])  # it learns (two epochs of 3 batches each, first against last)
    evals = {key: value for entry in summary["log_history"] for key, value in entry.items() if key.startswith("eval_")}
    assert all(math.isfinite(evals[key]) for key in ("eval_loss", "eval_recall@10", "eval_dense_recall@10",
                                                     "eval_sparse_recall@10"))

    trained = seen["model"]
    saved = load_file(str(out / "model.safetensors"))
    assert all(tensor.dtype in (torch.float32, torch.int64) for tensor in saved.values())
    assert all(p.dtype == torch.float32 for p in trained.parameters())  # the master weights
    model, tokenizer = load_checkpoint(str(out))
    state = trained.state_dict()
    assert all(torch.equal(tensor, state[name]) for name, tensor in model.state_dict().items())  # bit-exact
    batch = tokenizer([tokenizer.item_ids[:3], tokenizer.item_ids[5:7]])
    for mode in ALL_MODES:
        plain = model.generate(**batch, top_k=5, num_beams=4, **mode)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model.generate(**batch, top_k=5, num_beams=4, **mode)
        for result in (plain, auto):
            _check_recommendations(result, tokenizer.num_items, 5)


def test_train_defaults_to_bf16_on_a_cuda_gpu_with_bf16(monkeypatch, caplog):
    """No GPU here: torch.cuda is mocked, and the device set-up of TrainingArguments is kept on the CPU."""
    from transformers import TrainingArguments

    from cobra_hf.training.train import parse_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(TrainingArguments, "_setup_devices", property(lambda self: torch.device("cpu")), raising=False)
    base = ["--catalog", "c", "--output_dir", "o"]
    with caplog.at_level("WARNING", logger="cobra_hf.training.train"):
        _, args = parse_args(base)
    assert args.bf16 and not args.fp16
    assert "bf16 autocast" in caplog.text and "--bf16 False" in caplog.text
    for flags, bf16, fp16 in ((["--bf16", "False"], False, False), (["--bf16=False"], False, False),
                              (["--fp16", "True"], False, True), (["--use_cpu", "True"], False, False),
                              (["--recipe", "paper"], True, False)):
        _, args = parse_args(base + flags)
        assert (args.bf16, args.fp16) == (bf16, fp16), flags

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)  # e.g. a V100: fp32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # (and TrainingArguments' own bf16 check)
    assert not parse_args(base)[1].bf16


# ------------------------------------------------------------------------------------------------ 3. catalog index
def test_catalog_index_is_built_once_per_weights(tiny_catalog, tmp_path, one_torch_thread):
    """Item vectors and the ID index are built once and kept across generate() calls, evaluations (the eval loss
    with catalog negatives and every extra mode) and a decoding grid; training rebuilds the vectors, not the ID
    index (the codes did not change); moving or editing the weights is noticed."""
    from transformers import TrainingArguments

    from cobra_hf.evaluation import sample_split
    from cobra_hf.training import CobraDataCollator, CobraTrainer, build_model, index_splits
    from cobra_hf.training.decoding_selection import select_decoding

    model, tokenizer = build_model(tiny_catalog, init_text_embeddings=False, num_dense_negatives=-1,
                                   history_dense_loss_weight=1.0, **COLD_MODEL)
    builds = model.catalog_index.builds
    data = json.loads((Path(tiny_catalog) / "prepare_args.json").read_text())["data_dir"]
    splits = index_splits(data, tokenizer, max_history=8)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, eval_strategy="no", save_strategy="no",
                             per_device_train_batch_size=16, per_device_eval_batch_size=16, use_cpu=True,
                             report_to="none", disable_tqdm=True, seed=0)
    trainer = CobraTrainer(model=model, args=args, train_dataset=splits["train"],
                           eval_dataset=splits["validation"].select(range(8)),
                           data_collator=CobraDataCollator(tokenizer, max_items=9), processing_class=tokenizer,
                           recommendation_split=splits["validation"], recommendation_users=8,
                           extra_modes=("dense", "sparse"))
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and "eval_dense_recall@10" in metrics
    assert builds == {"vectors": 1, "ids": 1, "faiss": 0}  # one build for the loss and three decoding modes
    trainer.evaluate()
    model.eval()
    batch = tokenizer([tokenizer.item_ids[:3]])
    model.generate(**batch, top_k=5, num_beams=4)
    model.generate(**batch, top_k=5, num_beams=4, mode="dense")
    assert builds == {"vectors": 1, "ids": 1, "faiss": 0}

    before = model.all_item_vectors().clone()
    trainer.train()  # two optimizer steps (the Trainer's fused AdamW leaves the version counters as they were)
    assert builds == {"vectors": 1, "ids": 1, "faiss": 0}  # nothing is built while training
    plan = [{"name": "a", "settings": {"num_beams": 4}}, {"name": "b", "settings": {"num_beams": 6}},
            {"name": "c", "settings": {"mode": "dense"}}]
    selection = select_decoding(model, tokenizer, sample_split(splits["validation"], 8), plan)  # sets the defaults
    assert selection["chosen"] in ("a", "b", "c") and model.training  # the mode it found is restored
    assert builds == {"vectors": 2, "ids": 1, "faiss": 0}  # one build for the whole grid, on the new weights
    assert not torch.equal(model.all_item_vectors(), before)
    model.eval()  # back from training mode (restored by select_decoding, which drops the vectors): built again
    assert torch.equal(model.all_item_vectors(normalized=False), model.model.encode_catalog())  # not stale
    trainer.evaluate()
    assert builds == {"vectors": 3, "ids": 1, "faiss": 0}

    with torch.no_grad():  # an in-place edit in eval mode bumps the version counter: noticed
        model.model.item_encoder.proj.bias.add_(0.5)
    model.generate(**batch, top_k=5, num_beams=4, mode="cobra")
    assert builds == {"vectors": 4, "ids": 1, "faiss": 0}
    model.to(torch.float32)  # a no-op conversion keeps everything
    model.generate(**batch, top_k=5, num_beams=4, mode="cobra")
    assert builds == {"vectors": 4, "ids": 1, "faiss": 0}
    model.to(torch.bfloat16)  # new weights' dtype (as .to("cuda") gives new storage): new vectors, still fp32
    out = model.generate(**batch, top_k=5, num_beams=4, mode="cobra")
    assert builds == {"vectors": 5, "ids": 1, "faiss": 0} and model.all_item_vectors().dtype == torch.float32
    _check_recommendations(out, tokenizer.num_items, 5)
    model.invalidate_caches()
    model.generate(**batch, top_k=5, num_beams=4, mode="cobra")
    assert builds == {"vectors": 6, "ids": 2, "faiss": 0}


# ------------------------------------------------------------------------------------------------ 4. gpu_check
def test_gpu_check_runs_every_phase_tiny(tmp_path):
    """benchmarks/gpu_check.py, the device check, in its --tiny form: a generated dataset staged like Beauty, every
    phase on the CPU (bf16 through CPU autocast), one JSON with no errors."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "run", "--tiny", "--out",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["errors"] == {} and report["skipped"] == []
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["gpu_check.json"]  # checkpoints elsewhere
    assert report["device"]["device"] in ("cpu", "cuda") and report["stage"]["token_rows"] is True
    embedding = report["embedding"]
    assert [run["dtype"] for run in embedding["runs"]][:2] == ["fp32", "fp16"]
    assert embedding["fp16_vs_fp32_cosine"]["min"] > 0.99 and all(run["texts_per_second"] > 0 for run in embedding["runs"])
    training = report["training"]
    assert training["gpu_bf16"]["precision"] == "bf16" and training["gpu_fp32"]["precision"] == "fp32"
    assert training["cpu_fp32"]["device"] == "cpu" and training["cpu_fp32"]["steps"] == 3
    for name in ("gpu_bf16", "gpu_fp32"):
        run = training[name]
        assert run["steps"] == 8 and run["steps_per_second"] > 0 and all(math.isfinite(x["loss"]) for x in run["losses"])
        assert run["evals"] and all(key in run["evals"][-1] for key in ("eval_loss", "eval_recall@10",
                                                                       "eval_dense_recall@10", "eval_sparse_recall@10"))
    assert set(report["evaluation"]["modes"]) == {"cobra", "sparse", "dense", "no_fusion"}
    assert all(0.0 <= mode["recall@10"] <= 1.0 for mode in report["evaluation"]["modes"].values())
    reference = report["reference_cpu_run"]
    assert reference["evals"][0]["step"] == 93 and reference["same_catalog_as_staged"] is False


def test_gpu_check_stage_copies_the_packages_the_device_lacks(tmp_path):
    from tiny import benchmark_script

    module = benchmark_script("gpu_check")
    copied = benchmark_script("gpu_stage").copy_site_packages(tmp_path / "site")
    assert any(name.startswith("datasets==") for name in copied) and any(name.startswith("dill==") for name in copied)
    assert (tmp_path / "site" / "datasets" / "__init__.py").is_file()
    assert any(path.name.startswith("datasets-") and path.name.endswith(".dist-info") for path in (tmp_path / "site").iterdir())
    assert "--stage .gpu_check --out $OUT" in module.__doc__ and 'carry=[".gpu_check"]' in module.__doc__


def test_gpu_check_stage_never_replaces_a_folder_it_did_not_write(tmp_path, capsys):
    """`gpu_check.py stage --stage-dir X`: a non-empty X without stage.json is refused in one line (exit 1) and left
    as it was, before any work; a stage of its own is swapped for the new one whole, an interrupted one's leftovers
    (X.partial with the marker) are cleared, and a foreign X.partial is refused too."""
    from tiny import benchmark_script

    module, staging = benchmark_script("gpu_check"), benchmark_script("gpu_stage")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert module.main(["stage", "--stage-dir", str(foreign), "--data", str(tmp_path / "no_data")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--stage-dir" in err and "was not written by gpu_check.py stage" in err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and (foreign / "notes.txt").read_text() == "keep me"

    ours = tmp_path / "stage"
    ours.mkdir()
    (ours / "stage.json").write_text("{}")
    (ours / "old.txt").write_text("old")
    staging.check_replaceable(ours)  # a stage it wrote may be replaced
    staging.check_replaceable(tmp_path / "absent")
    leftover = tmp_path / "stage.partial"
    leftover.mkdir()
    (leftover / staging.PARTIAL_MARKER).write_text("")
    (leftover / "half.bin").write_text("x")
    partial = staging._fresh_partial(ours)  # an interrupted stage's leftovers are cleared
    assert partial == leftover and sorted(p.name for p in partial.iterdir()) == [staging.PARTIAL_MARKER]
    (partial / "stage.json").write_text('{"new": true}')
    staging._swap_in(partial, ours)
    assert sorted(p.name for p in ours.iterdir()) == ["stage.json"] and not leftover.exists()
    assert not (tmp_path / "stage.old").exists()

    (tmp_path / "other.partial").mkdir()
    (tmp_path / "other.partial" / "data.txt").write_text("someone's")
    with pytest.raises(staging.StageRefused, match="other.partial exists"):
        staging._fresh_partial(tmp_path / "other")
    assert (tmp_path / "other.partial" / "data.txt").read_text() == "someone's"
    (tmp_path / "other.old").mkdir()
    (tmp_path / "other.old" / "data.txt").write_text("someone's")
    with pytest.raises(staging.StageRefused, match="other.old exists"):
        staging.check_replaceable(tmp_path / "other")

