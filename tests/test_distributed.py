"""Data-parallel training on CPU: two processes (torch.distributed, gloo) run `cobra-hf train` through torchrun.

`accelerate launch --cpu --num_processes 2` does not start two processes on CPU (accelerate 1.15 only launches several
CPU processes through mpirun with --mpirun_hostfile; otherwise it runs one), so the launcher is torchrun; the Trainer
(through accelerate's PartialState) picks up its RANK/WORLD_SIZE environment and uses the gloo backend on CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_process_data_parallel_training_on_cpu(catalog_scientific, tmp_path):
    from cobra_hf.inference import load_checkpoint

    out = tmp_path / "ddp"
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(port),
        "-m", "cobra_hf.cli.main", "train", "--catalog", str(catalog_scientific), "--output_dir", str(out),
        "--max_steps", "3", "--per_device_train_batch_size", "8", "--logging_steps", "1",
        "--eval_strategy", "steps", "--eval_steps", "3", "--per_device_eval_batch_size", "8", "--eval_users", "6",
        "--save_strategy", "steps", "--save_steps", "3",
        "--hidden_size", "32", "--num_attention_heads", "2", "--intermediate_size", "64", "--init_text_embeddings", "False",
        "--use_cpu", "True", "--ddp_backend", "gloo", "--disable_tqdm", "True", "--report_to", "none", "--seed", "0",
        "--log_level", "info", "--log_level_replica", "warning", "--dataloader_num_workers", "0",
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]

    # world size 2: the Trainer reports it, and the global batch is 2 x 8
    assert "Total train batch size (w. parallel, distributed & accumulation) = 16" in log, log[-4000:]
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and state["max_steps"] == 3
    summary = json.loads((out / "training_summary.json").read_text())  # written once, by rank 0
    assert summary["global_step"] == 3
    assert [entry["step"] for entry in summary["log_history"] if "loss" in entry] == [1, 2, 3]
    assert any("eval_recall@10" in entry for entry in summary["log_history"])  # rank 0's generate-based metrics
    finals = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{") and "global_step" in line]
    assert len(finals) == 1 and finals[0]["global_step"] == 3  # the result line comes from rank 0 only

    for name in ("config.json", "model.safetensors", "generation_config.json", "item_catalog.json", "README.md"):
        assert (out / name).is_file(), name
    model, tokenizer = load_checkpoint(str(out))
    batch = tokenizer([tokenizer.item_ids[:3]])
    assert model.generate(**batch, top_k=5, num_beams=4).item_indices.shape == (1, 5)
    assert not any(Path(out).glob("*.tmp*"))
