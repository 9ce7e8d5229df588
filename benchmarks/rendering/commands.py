"""The "commands" block of docs/EXPERIMENTS.md: the command line that reproduces every cited run, fusion grid and
ensemble, rebuilt from what each JSON recorded (its flags, data, model paths and grid).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .core import MODES, Renderer
from .runs import ENSEMBLES, RUNS, SCIENTIFIC

def benchmark_command(run: dict) -> str:
    """The run_benchmark.py command of a run, from its data, model path, flags and decoding."""
    generation = {k: v for k, v in (run.get("generation") or {}).items() if k != "num_beams"}
    output = str(Path((run.get("config") or {}).get("_name_or_path", "runs/bench/RUN/model")).parent)
    first = f"python benchmarks/run_benchmark.py --data {run['data']} --output {output}"
    if run.get("timings", {}).get("prepare_seconds", 1) == 0.0 and run.get("catalog"):
        first += f" --catalog {run['catalog']}"
    parts = [first]
    parts.append(f"--model-args {shlex.quote(json.dumps(run.get('model_args') or {}))}")
    parts.append(f"--train-args {shlex.quote(run.get('train_args') or '')}")
    if generation:
        parts.append(f"--generate-args {shlex.quote(json.dumps(generation))}")
    return " \\\n  ".join(parts)


def tune_command(tune: dict, rel: str) -> str:
    """The tune_fusion.py command of a fusion grid, from its models, users, selection metric and grid."""
    grid = [point["setting"] for point in tune.get("grid", [])]
    models = " ".join(tune["model"] if isinstance(tune["model"], list) else [tune["model"]])
    parts = [f"python benchmarks/tune_fusion.py --model {models} --data {tune.get('data')} "
             f"--val-users {tune.get('validation_users')}"]
    if tune.get("selected_by") and tune["selected_by"] != "recall@10":
        parts.append(f"--select {tune['selected_by']}")
    if tune.get("test_capped"):
        parts.append(f"--test-users {tune.get('test_users')}")
    first_model = tune["model"][0] if isinstance(tune["model"], list) else tune["model"]
    parts += [f"--grid {shlex.quote(json.dumps(grid))}", f"--output {Path(first_model).parent / Path(rel).name}"]
    return " \\\n  ".join(parts)


def ensemble_command(ens: dict, rel: str) -> str:
    """The evaluate_ensemble.py command of an ensemble, from its members, decoding and modes."""
    generation = {k: v for k, v in ens["generation"].items()
                  if k in ("beam_fusion", "dense_guided_ids", "beam_fusion_tau", "beam_fusion_psi",
                           "beam_fusion_dense_psi")}
    parts = [f"python benchmarks/evaluate_ensemble.py --data {ens['data']} --output runs/bench/{Path(rel).parent.name}",
             "--models " + " ".join(ens["members"]),
             f"--generate-args {shlex.quote(json.dumps(generation))}"]
    modes = [m for m in MODES if m in ens["test"]]
    if len(modes) < len(MODES):
        parts.append("--modes " + ",".join(modes))
    return " \\\n  ".join(parts)



def block_commands(r: Renderer, arg=None) -> str:
    """Every cited run (RUNS, Scientific), every fusion grid with a selected setting (*/tune_fusion*.json)
    and every ensemble, as one bash listing."""
    parts = []
    for name, _ in RUNS + [(SCIENTIFIC, None)]:
        run = r.load(f"{name}/results.json")
        parts.append(f"# {name}\n{benchmark_command(run)}")
    for rel in sorted(p.relative_to(r.results).as_posix() for p in r.results.glob("*/tune_fusion*.json")):
        tune = r.load(rel)
        if "best" in tune:
            parts.append(f"# {rel}\n{tune_command(tune, rel)}")
    for name in ENSEMBLES:
        rel = f"{name}/results.json"
        parts.append(f"# {rel}\n{ensemble_command(r.load(rel), rel)}")
    return "```bash\n" + "\n\n".join(parts) + "\n```"
