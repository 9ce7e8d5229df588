"""The data layer on a synthetic 5,000,000-interaction log (issue 22): today's columnar implementation, the row-by-row
one it replaced, and a pyarrow CSV + pandas baseline, side by side.

    python benchmarks/bench_data_layer.py                       # 5M rows, 200k users, 100k items; about 4 minutes
    python benchmarks/bench_data_layer.py --rows 500000 --skip-rowwise
    python benchmarks/bench_data_layer.py --rows 40000000 --users 1600000 --items 800000 --workers columnar --scaling
                                   # adds a point to `columnar_scaling`: peak memory per interaction at that size

One process drives the run; each implementation runs in a fresh subprocess of this script (`--worker NAME`) so
that its peak RSS (VmHWM) is its own, not inherited from the others or from the log generator.
Every worker is held to one thread (pyarrow CPU pool and OMP), as the issue's figures were: the table measures
the algorithm, not the core count. Steps timed in each worker:

* read + 5-core + sort + group: CSV -> one row per user with its items oldest first (ties in file order),
  users sorted by id; the checksum (users, events, a hash of the first and last sequences) must agree.
* leave-one-out: `cobra_hf.data.leave_one_out` (train windows, validation, test), where the worker has it.

Prints the table with the ratios and writes benchmarks/results/data_layer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "data_layer.json"
WORKERS = ("rowwise", "columnar", "pandas")
LABELS = {
    "rowwise": "cobra-hf before (row by row: `_rowwise.load_interactions(min_count=5)`, `leave_one_out`)",
    "columnar": "cobra-hf now (columnar: `load_interactions(min_count=5)`, `leave_one_out`)",
    "pandas": "pyarrow CSV + pandas (5-core, sort, group)",
}


def generate(path: Path, rows: int, users: int, items: int, seed: int = 0) -> None:
    """A log with popularity skew: items drawn from a Zipf-like law (exponent 1.0), users from a milder one (0.6),
    timestamps uniform over about three years (so some events of a user tie)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)

    def skewed(n: int, exponent: float, size: int) -> np.ndarray:
        weights = 1.0 / np.arange(1, n + 1) ** exponent
        ids = rng.choice(n, size=size, p=weights / weights.sum())
        return rng.permutation(n)[ids]  # popular ids are not the small numbers

    user = skewed(users, 0.6, rows)
    item = skewed(items, 1.0, rows)
    stamp = 1_300_000_000 + rng.integers(0, 100_000_000, size=rows)
    table = pa.table({
        "user_id": pa.array(np.char.add("U", user.astype(str))),
        "item_id": pa.array(np.char.add("I", np.char.zfill(item.astype(str), 6))),
        "timestamp": stamp,
    })
    pcsv.write_csv(table, path, pcsv.WriteOptions(quoting_style="none"))


def _checksum(users: int, events: int, head_tail: list) -> dict:
    """What every implementation must agree on: counts, and a hash of the first and last 50 users' sequences."""
    import hashlib

    digest = hashlib.sha256(json.dumps(head_tail).encode()).hexdigest()
    return {"users": users, "events": events, "sha256_head_tail": digest[:16]}


def _peak_rss_gb() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: Linux carries that across exec from
    the forked parent, so a worker would report the driver's peak (the log generator's) instead of its own."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e6  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux, elsewhere an upper bound


def _pin_one_thread() -> None:
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def worker_cobra(csv: Path, rowwise: bool) -> dict:
    _pin_one_thread()
    from cobra_hf.data import _rowwise, leave_one_out, load_interactions

    load = _rowwise.load_interactions if rowwise else load_interactions
    split = _rowwise.leave_one_out if rowwise else leave_one_out
    start_rss = _peak_rss_gb()
    start = time.perf_counter()
    sequences = load(csv, min_count=5)
    load_s = time.perf_counter() - start
    load_rss = _peak_rss_gb()
    start = time.perf_counter()
    splits = split(sequences, max_history=20)
    split_s = time.perf_counter() - start
    import pyarrow.compute as pc

    n = len(sequences)
    events = pc.sum(pc.list_value_length(sequences.data.table.column("item_ids"))).as_py()
    head, tail = sequences[:50], sequences[n - 50:]
    check = _checksum(n, events, [head["user_id"], head["item_ids"], tail["user_id"], tail["item_ids"]])
    return {
        "load_s": load_s, "split_s": split_s, "rss_after_imports_gb": start_rss, "peak_rss_load_gb": load_rss,
        "peak_rss_gb": _peak_rss_gb(), "checksum": check,
        "splits": {name: len(splits[name]) for name in ("train", "validation", "test")},
    }


def worker_pandas(csv: Path) -> dict:
    """The issue's baseline: pyarrow reads the CSV (ids as text), pandas filters to the 5-core, sorts and groups."""
    _pin_one_thread()
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pcsv

    start_rss = _peak_rss_gb()
    start = time.perf_counter()
    options = pcsv.ConvertOptions(column_types={"user_id": pa.string(), "item_id": pa.string()})
    frame = pcsv.read_csv(csv, convert_options=options).to_pandas()
    while True:
        user_count = frame.groupby("user_id")["user_id"].transform("size")
        item_count = frame.groupby("item_id")["item_id"].transform("size")
        keep = (user_count >= 5) & (item_count >= 5)
        if keep.all():
            break
        frame = frame[keep]
    frame = frame.sort_values(["user_id", "timestamp"], kind="stable")
    grouped = frame.groupby("user_id", sort=True)["item_id"].agg(list)
    load_s = time.perf_counter() - start
    users = list(grouped.index)
    check = _checksum(len(users), len(frame), [users[:50], [list(s) for s in grouped.values[:50]], users[-50:],
                                               [list(s) for s in grouped.values[-50:]]])
    return {"load_s": load_s, "split_s": None, "rss_after_imports_gb": start_rss, "peak_rss_load_gb": _peak_rss_gb(),
            "peak_rss_gb": _peak_rss_gb(), "checksum": check, "pandas": pd.__version__}


def run_worker(name: str, csv: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__, "--worker", name, "--csv", str(csv)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench_data_layer: worker {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: dict, rows: int) -> str:
    """The markdown table (one column per implementation that ran) and the ratios of the columnar one."""
    names = [n for n in ("rowwise", "columnar", "pandas") if n in results]
    heads = {"rowwise": "before: row by row", "columnar": "now: columnar (pyarrow + numpy)", "pandas": "pyarrow CSV + pandas"}

    def fmt(value, unit, digits):
        return "-" if value is None else f"{value:.{digits}f} {unit}"

    cells = {
        "read + 5-core + sort + group into sequences": [fmt(results[n]["load_s"], "s", 1) for n in names],
        "leave-one-out splits (max_history 20)": [fmt(results[n]["split_s"], "s", 2) for n in names],
        "peak RSS of the process": [fmt(results[n]["peak_rss_gb"], "GB", 2) for n in names],
        "of which imports (before any data)": [fmt(results[n]["rss_after_imports_gb"], "GB", 2) for n in names],
    }
    lines = [f"| {rows:,} interactions | " + " | ".join(heads[n] for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    lines += [f"| {step} | " + " | ".join(row) + " |" for step, row in cells.items()]
    now, before, base = (results.get(k) for k in ("columnar", "rowwise", "pandas"))
    ratios = []
    if now and before:
        ratios.append(f"columnar vs row by row: {before['load_s'] / now['load_s']:.0f}x faster to load, "
                      f"{before['split_s'] / now['split_s']:.0f}x faster to split, "
                      f"{now['peak_rss_gb'] / before['peak_rss_gb']:.2f}x the peak memory")
    if now and base:
        ratios.append(f"columnar vs pyarrow+pandas: {base['load_s'] / now['load_s']:.1f}x faster to load, "
                      f"{now['peak_rss_gb'] / base['peak_rss_gb']:.2f}x the peak memory "
                      f"({(now['peak_rss_gb'] - now['rss_after_imports_gb']) / (base['peak_rss_gb'] - base['rss_after_imports_gb']):.2f}x"
                      " not counting imports)")
    return "\n".join(lines + [""] + ratios)


def add_scaling_point(output: Path, rows: int, users: int, items: int, result: dict) -> None:
    """Record one columnar run at `rows` interactions, with the memory per interaction above the imports."""
    data = json.loads(output.read_text()) if output.is_file() else {}
    point = {"users": users, "items": items, "load_s": result["load_s"], "split_s": result["split_s"],
             "peak_rss_gb": result["peak_rss_gb"], "rss_after_imports_gb": result["rss_after_imports_gb"],
             "bytes_per_interaction": round((result["peak_rss_gb"] - result["rss_after_imports_gb"]) * 1e9 / rows, 1)}
    data.setdefault("columnar_scaling", {})[str(rows)] = point
    output.write_text(json.dumps(data, indent=1) + "\n")
    print(f"added {rows:,} interactions to {output}: {point}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--skip-rowwise", action="store_true", help="leave out the row-by-row run (about 3 minutes)")
    parser.add_argument("--workers", nargs="+", choices=WORKERS, default=list(WORKERS),
                        help="which implementations to run (e.g. only columnar, to measure memory per row at scale)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--scaling", action="store_true",
                        help="add this run's columnar figures to the output's `columnar_scaling` (by row count) instead "
                             "of replacing the file: the points that say how large a log fits in a given memory")
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker_pandas(args.csv) if args.worker == "pandas" else worker_cobra(args.csv, args.worker == "rowwise")
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="bench_data_layer_") as folder:
        csv = Path(folder) / "interactions.csv"
        start = time.perf_counter()
        generate(csv, args.rows, args.users, args.items)
        print(f"generated {csv.stat().st_size / 1e6:.0f} MB CSV in {time.perf_counter() - start:.1f} s", flush=True)
        results = {}
        for name in WORKERS:
            if name not in args.workers or (name == "rowwise" and args.skip_rowwise):
                continue
            results[name] = run_worker(name, csv)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    sums = {name: r["checksum"] for name, r in results.items()}
    if len({json.dumps(c, sort_keys=True) for c in sums.values()}) != 1:
        raise SystemExit(f"bench_data_layer: the implementations disagree: {sums}")
    text = table(results, args.rows)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.scaling:
        add_scaling_point(args.output, args.rows, args.users, args.items, results["columnar"])
        return
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    args.output.write_text(json.dumps({
        "rows": args.rows, "users": args.users, "items": args.items, "min_count": 5, "max_history": 20,
        "threads": 1, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
        "labels": {name: LABELS[name] for name in results}, "results": results, "table": text,
        "columnar_scaling": previous.get("columnar_scaling", {}),
    }, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
