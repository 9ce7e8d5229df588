"""Run Python code in a fresh interpreter where cobra_hf can NOT be imported (a user machine without it).

A meta-path finder that refuses `cobra_hf` is inserted first, and the repository's src folder is removed from
sys.path, so an editable install cannot sneak it in either. The code must print one JSON object as the last line
of its stdout; `run_isolated` returns it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, "src"))

_BLOCK = f"""
import os, sys
class _NoCobraHf:
    def find_spec(self, name, path=None, target=None):
        if name == "cobra_hf" or name.startswith("cobra_hf."):
            raise ModuleNotFoundError("cobra_hf is blocked in this process", name=name)
        return None
sys.meta_path.insert(0, _NoCobraHf())
sys.path[:] = [p for p in sys.path if not os.path.abspath(p or ".").startswith({SRC!r})]
"""

_CHECK = """
try:
    import cobra_hf
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("cobra_hf is importable: the isolation failed")
"""


def run_isolated(code: str, cwd, env: dict | None = None, timeout: int = 240) -> dict:
    """Run `code` (dedented) with cobra_hf blocked; env entries are added to os.environ. Returns the last stdout
    line parsed as JSON (and fails the test with the process output when it exits non-zero)."""
    environment = {**os.environ, **(env or {})}
    environment.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCK + _CHECK + textwrap.dedent(code)],
        cwd=str(cwd), env=environment, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"isolated process failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"isolated process printed nothing:\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def offline_env(home) -> dict:
    """Environment for loading local folders: a private HF home (remote-code module cache) and no network."""
    home = str(home)
    return {"HF_HOME": home, "HF_HUB_CACHE": os.path.join(home, "hub"), "HF_MODULES_CACHE": os.path.join(home, "modules"),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


# Loads checkpoints (folders or repo ids) with Auto* + trust_remote_code and recommends for the histories.
RECOMMEND_CODE = """
import json, sys
import torch
from transformers import AutoModel, AutoTokenizer
sources, histories, settings = {sources!r}, {histories!r}, {settings!r}
results = []
for source in sources:
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True)
    model = AutoModel.from_pretrained(source, trust_remote_code=True).eval()
    out = model.generate(**tokenizer(histories, return_tensors="pt"), **settings)
    results.append({{
        "items": tokenizer.batch_decode_items(out),
        "scores": out.scores.tolist(),
        "model_class": type(model).__module__ + "." + type(model).__name__,
        "tokenizer_class": type(tokenizer).__module__ + "." + type(tokenizer).__name__,
        "cobra_hf_loaded": any(name.startswith("cobra_hf") for name in sys.modules),
    }})
print(json.dumps(results))
"""


def recommend_isolated(sources, histories, settings: dict, cwd, env: dict) -> list[dict]:
    """Per source (folder or repo id), what a machine without cobra_hf recommends: {"items", "scores", ...}."""
    sources = [str(source) for source in ([sources] if isinstance(sources, str) else sources)]
    return run_isolated(RECOMMEND_CODE.format(sources=sources, histories=histories, settings=settings), cwd, env)
