"""Measure fedsyft against the targets in the README and write benchmarks/results.json.

    .venv/bin/python benchmarks/run_benchmarks.py            # everything (~4 min on 2 cores)
    .venv/bin/python benchmarks/run_benchmarks.py --only demo

Sections:
- simulate: 2 IID sites x 30,000 rows, 5 rounds, in-process: accuracy per round,
  each site's local compute, and the loop's overhead beyond the slowest local fit.
- demo: ``fedsyft demo`` end to end as a subprocess (launch included): wall time,
  the set-up breakdown, per-round compute and PySyft overhead, bytes per site.
- replaced: the replaced project's method (benchmarks/replaced_method.py) on the same split.
- centralized: one logistic regression on all 60,000 images with the same L2: the ceiling.
Run it on a quiet machine: the numbers are wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from replaced_method import run as run_replaced  # noqa: E402

from fedsyft.data import load_mnist  # noqa: E402
from fedsyft.datasite.launch import shard_mnist  # noqa: E402
from fedsyft.experiment import RunConfig, run_experiment  # noqa: E402
from fedsyft.sites import LocalSite  # noqa: E402

ROUNDS = 5
OUT = HERE / "out"


def _round_rows(history) -> list[dict]:
    rows = []
    for r in history["rounds"]:
        compute = max(s["compute_seconds"] for s in r["sites"].values())
        rows.append({
            "round": r["round"], "global_test_accuracy": r["global"]["test_accuracy"], "seconds": round(r["seconds"], 3),
            "slowest_site_compute_seconds": round(compute, 3), "overhead_seconds": round(r["seconds"] - compute, 3),
            "sites": {n: {"compute_seconds": round(s["compute_seconds"], 3), "call_seconds": round(s["seconds"], 3),
                          "bytes_sent": s["bytes_sent"], "bytes_received": s["bytes_received"],
                          "test_accuracy": s["test_accuracy"]} for n, s in r["sites"].items()},
        })
    return rows


def bench_simulate(mnist) -> dict:
    sites = [LocalSite(f"MNIST Part {i + 1}", s) for i, s in enumerate(shard_mnist(mnist, 2, seed=0))]
    out = OUT / "simulate"
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        run_experiment(sites, RunConfig(rounds=ROUNDS), mnist.test, out)
    wall = time.perf_counter() - start
    rows = _round_rows(json.loads((out / "metrics.json").read_text()))
    compute = sum(r["slowest_site_compute_seconds"] for r in rows)
    return {
        "wall_seconds": round(wall, 3), "rounds": rows,
        "overhead_fraction": round((sum(r["seconds"] for r in rows) - compute) / compute, 4),
        "max_site_compute_seconds": max(s["compute_seconds"] for r in rows for s in r["sites"].values()),
        "final_global_test_accuracy": rows[-1]["global_test_accuracy"],
    }


def bench_demo() -> dict:
    from conftest import free_port_base

    out = OUT / "demo"
    port = free_port_base(2)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "fedsyft", "demo", "--port-base", str(port), "--out", str(out)],
                            capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"demo failed: {result.stderr}")
    metrics = json.loads((out / "metrics.json").read_text())
    rows = _round_rows(metrics)
    return {
        "wall_seconds": round(wall, 3), "setup_seconds": metrics["timings"], "rounds": rows,
        "max_overhead_seconds": max(r["overhead_seconds"] for r in rows),
        "max_overhead_seconds_after_round_1": max(r["overhead_seconds"] for r in rows[1:]),
        "final_global_test_accuracy": rows[-1]["global_test_accuracy"],
    }


def bench_replaced(mnist) -> dict:
    shards = [(s.X, s.y) for s in shard_mnist(mnist, 2, seed=0)]
    test_X = mnist.test.X.astype(np.float64)
    rows = run_replaced(shards, test_X, mnist.test.y, ROUNDS, seed=0)
    return {"rounds": [{**r, "seconds": round(r["seconds"], 3)} for r in rows]}


def bench_centralized(mnist, config: RunConfig) -> dict:
    from sklearn.linear_model import LogisticRegression

    from fedsyft.task import evaluate

    X = mnist.train.X.astype(np.float32) / np.float32(255)
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        model = LogisticRegression(C=1.0 / (config.l2 * len(X)), max_iter=500).fit(X, mnist.train.y)
    acc = evaluate({"coef": model.coef_, "intercept": model.intercept_}, mnist.test.X, mnist.test.y)["test_accuracy"]
    return {"test_accuracy": acc, "iterations": int(model.n_iter_[0]), "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["simulate", "demo", "replaced", "centralized"], action="append")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    wanted = args.only or ["simulate", "demo", "replaced", "centralized"]
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_start": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d")}
    mnist = load_mnist()
    steps = {"simulate": lambda: bench_simulate(mnist), "demo": bench_demo,
             "replaced": lambda: bench_replaced(mnist), "centralized": lambda: bench_centralized(mnist, RunConfig())}
    for name in wanted:
        print(f"running {name} ...", flush=True)
        results[name] = steps[name]()
        args.output.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v.get("final_global_test_accuracy", v.get("test_accuracy", v.get("wall_seconds")))
                      for k, v in results.items() if isinstance(v, dict) and k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
