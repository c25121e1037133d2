"""fedsyft's simulation engine against Flower's Simulation Engine, side by side, on one task.

What it measures
    The same federated task, timed end to end on the same machine (2 cores), once per tool:
    1,000 simulated MNIST clients split by FedProx's power law (``powerlaw``, 2 digits per
    client, seed 0), 10 clients sampled per round, FedAvg weighted by training rows, 100
    rounds; each sampled client runs 25 L-BFGS iterations of multinomial logistic
    regression (L2 1e-5 per mean sample loss) from the global model on its pixels / 255;
    the server evaluates the global model on the 10,000 MNIST test images after EVERY round.

    - fedsyft: ``fedsyft simulate --sites 1000 --partition powerlaw --clients-per-round 10
      --rounds 100 --out TMP --json -q`` (its own venv, /work/main/.venv), the whole
      command: start-up, MNIST load, partition, training, its run directory and plots.
    - Flower: ``flwr.simulation.run_simulation`` (the Ray backend, Flower's default) with a
      ``ServerApp`` running the message-API ``FedAvg`` (fraction_train=0.01, i.e. the old
      fraction_fit; fraction_evaluate=0: no client-side evaluation; ``evaluate_fn`` on the
      server) and a ``ClientApp`` whose ``train`` fits scikit-learn's ``LogisticRegression(
      max_iter=25, warm_start=True, C=1/(l2 n))`` with ``coef_``/``intercept_`` set to the
      global model. The whole command: Python start-up, imports, Ray start and shutdown.

    For a fair comparison both sides train on the same rows. Before the timed runs (and not
    timed), fedsyft's venv computes ``fedsyft.partition.make_partition("powerlaw", labels,
    1000, 0)`` on ``fedsyft.data.load_mnist()`` and writes each client's rows to an .npz that
    the Flower side loads; nothing from fedsyft is imported in the Flower venv. Each fedsyft
    site holds out 10 % of its rows for local metrics (``test_fraction``, seeded
    permutation), so the .npz carries the other 90 %: the rows fedsyft's sites train on.

    Every client is given one zero-weight row of each digit so that scikit-learn fits all 10
    classes (a client holds 2 digits, and a 2-class fit would change ``coef_``'s shape); zero
    weight leaves the objective unchanged. Both sides run with BLAS/OpenMP at 1 thread; Flower
    runs Ray with 2 CPUs and ``client_resources={"num_cpus": 1}`` (2 clients at a time), and
    fedsyft uses its 2 worker processes. Memory is the peak, sampled every 0.5 s, of the sum
    of PSS over the tool's whole process tree (Ray's daemons and workers included), and the
    largest single process's max RSS.

How to run
    python3 benchmarks/flower_side_by_side.py [--rounds 100] [--output FILE] [--flower-venv DIR]

    (any Python 3.9+; this file uses the standard library only and shells out to the two
    venvs). Flower runs in its OWN virtual environment, never in fedsyft's: if ``DIR/bin/python``
    is missing (default /tmp/flower-venv), the script creates it with ``python3.11 -m venv``
    and installs benchmarks/flower-requirements.txt (flwr[simulation]==1.42.0 and pins) from
    PyPI; it reinstalls when that file changes. Flower is not a fedsyft dependency. Run it on an
    idle machine: the numbers are wall-clock seconds. ~2 min for fedsyft + Flower at 100 rounds.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FEDSYFT_VENV = REPO / ".venv"
REQUIREMENTS = HERE / "flower-requirements.txt"

SITES, CLIENTS_PER_ROUND, SEED = 1000, 10, 0
LOCAL_ITERS, L2, TEST_FRACTION = 25, 1e-5, 0.1  # the same local work on both sides
N_CLASSES = 10

# Both tools, every process: one BLAS/OpenMP thread (the 2 cores come from 2 workers/actors).
# Telemetry off: this machine reaches no server but the package registries.
ENV = {**{k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                           "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")},
       "RAY_USAGE_STATS_ENABLED": "0", "FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1"}

# Run by fedsyft's venv (not timed): MNIST, fedsyft's partition, each site's training rows -> .npz.
EXPORT_PARTITION = f"""
import math, sys
import numpy as np
from fedsyft.data import load_mnist
from fedsyft.partition import make_partition

mnist = load_mnist()
shards = make_partition("powerlaw", mnist.train.y, {SITES}, {SEED})
rows = []
for idx in shards:  # fedsyft's local_train holds out ceil(test_fraction * n) rows, seeded by config seed
    order = np.random.RandomState({SEED}).permutation(len(idx))
    rows.append(idx[order[math.ceil({TEST_FRACTION} * len(idx)):]])
np.savez(sys.argv[1], x_train=mnist.train.X, y_train=mnist.train.y, x_test=mnist.test.X, y_test=mnist.test.y,
         rows=np.concatenate(rows), offsets=np.r_[0, np.cumsum([len(r) for r in rows])],
         shard_sizes=np.array([len(s) for s in shards]))
"""


# --- measuring one command ----------------------------------------------------------------

def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def timed(cmd: list[str], log: Path, env: dict[str, str]) -> dict:
    """Run ``cmd`` (stdout to ``log``, stderr to ``log``.err): wall seconds, peak tree PSS, largest max RSS, exit code.

    This process is made a child subreaper, so processes that the command leaves behind
    (Ray's daemons) stay in its tree for the memory sampler and are ended afterwards.
    """
    peak = [0]
    done = threading.Event()

    def sample():  # our descendants are the command's processes (one command at a time)
        while not done.wait(0.5):
            peak[0] = max(peak[0], sum(_pss_bytes(p) for p in _descendants(os.getpid())))

    with open(log, "wb") as out, open(f"{log}.err", "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **env})
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    leftovers = _end_leftovers()
    return {"wall_seconds": round(seconds, 2), "peak_tree_pss_mb": round(peak[0] / 2**20),
            "largest_process_max_rss_mb": round(usage.ru_maxrss / 1024), "exit_code": proc.returncode,
            "processes_left_running": leftovers}


def _end_leftovers(grace: float = 10.0) -> int:
    """Reap what the last command left behind (our own descendants only): wait, then TERM, then KILL."""
    left = _descendants(os.getpid())
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            except ChildProcessError:
                pass
            if not _descendants(os.getpid()):
                return len(left)
            time.sleep(0.2)
    return len(left)


# --- the Flower venv -----------------------------------------------------------------------

def ensure_flower_venv(venv: Path) -> Path:
    """``venv/bin/python`` with flower-requirements.txt installed; raises with pip's own words."""
    python, stamp = venv / "bin" / "python", venv / ".flower-requirements.txt"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        base = shutil.which("python3.11")
        if base is None:
            raise RuntimeError("python3.11 not found: Flower's venv is made with `python3.11 -m venv`")
        print(f"Creating Flower's own venv {venv} ...", flush=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    print(f"Installing {REQUIREMENTS.name} into {venv} (1-2 min) ...", flush=True)
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"pip install -r {REQUIREMENTS} failed:\n{pip.stdout[-3000:]}{pip.stderr[-3000:]}")
    stamp.write_text(wanted)
    return python


# --- the Flower side (runs in Flower's venv: `--flower-run NPZ`) ---------------------------

_CLIENT_DATA: dict = {}  # per Ray actor process: the .npz, loaded once


def _client_data(npz: str) -> dict:
    if npz not in _CLIENT_DATA:
        import numpy as np
        with np.load(npz) as f:
            _CLIENT_DATA[npz] = {k: f[k] for k in ("x_train", "y_train", "rows", "offsets")}
    return _CLIENT_DATA[npz]


def flower_train(msg, context):
    """ClientApp ``train``: warm-started scikit-learn LogisticRegression on this client's rows."""
    import warnings

    import numpy as np
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from sklearn.linear_model import LogisticRegression

    config = msg.content["config"]
    data = _client_data(str(config["npz"]))
    pid = int(context.node_config["partition-id"])
    rows = data["rows"][data["offsets"][pid]:data["offsets"][pid + 1]]
    X = data["x_train"][rows].astype(np.float32) / np.float32(255)
    y = data["y_train"][rows].astype(np.int64)
    n = len(y)
    # One zero-weight row per class: scikit-learn fits all 10 classes (coef_ 10 x 784) on a 2-digit client.
    X_fit = np.concatenate([X, np.zeros((N_CLASSES, X.shape[1]), np.float32)])
    y_fit = np.concatenate([y, np.arange(N_CLASSES)])
    weight = np.concatenate([np.ones(n), np.zeros(N_CLASSES)])
    coef, intercept = msg.content["arrays"].to_numpy_ndarrays()
    model = LogisticRegression(max_iter=int(config["local-iters"]), warm_start=True,
                               C=1.0 / (float(config["l2"]) * n))  # = mean log-loss + l2/2 |coef|^2
    model.coef_, model.intercept_ = coef.astype(np.float64), intercept.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 25 iterations is the point
        model.fit(X_fit, y_fit, sample_weight=weight)
    arrays = ArrayRecord([model.coef_.astype(np.float32), model.intercept_.astype(np.float32)])
    return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": n})}), reply_to=msg)


def run_flower(npz: str, rounds: int, result_file: str) -> None:
    """Build Flower's ServerApp and ClientApp and run them on the Simulation Engine (Ray)."""
    import flwr
    import numpy as np
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    with np.load(npz) as f:
        x_test = f["x_test"].astype(np.float32) / np.float32(255)
        y_test = f["y_test"]
    accuracy: dict[int, float] = {}

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:  # every round, and round 0
        coef, intercept = arrays.to_numpy_ndarrays()
        accuracy[server_round] = float(((x_test @ coef.T + intercept).argmax(axis=1) == y_test).mean())
        return MetricRecord({"accuracy": accuracy[server_round]})

    client_app = ClientApp()
    client_app.train()(flower_train)  # a module-level function: Ray actors import it, no re-pickling
    server_app = ServerApp()

    @server_app.main()
    def main(grid, context) -> None:
        # FedAvg samples 10 of the 1,000 nodes uniformly each round (unseeded: node IDs are new every run,
        # so which clients a round draws differs from fedsyft's, whose draw is seeded).
        strategy = FedAvg(fraction_train=CLIENTS_PER_ROUND / SITES, fraction_evaluate=0.0,
                          min_train_nodes=CLIENTS_PER_ROUND, min_available_nodes=SITES)
        initial = ArrayRecord([np.zeros((N_CLASSES, x_test.shape[1]), np.float32), np.zeros(N_CLASSES, np.float32)])
        strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds, evaluate_fn=evaluate,
                       train_config=ConfigRecord({"npz": npz, "local-iters": LOCAL_ITERS, "l2": L2}))

    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=SITES,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 2, "include_dashboard": False}})
    Path(result_file).write_text(json.dumps({
        "flwr_version": flwr.__version__,
        "global_test_accuracy_per_round": [accuracy[r] for r in sorted(accuracy) if r > 0]}))


# --- driver ------------------------------------------------------------------------------

def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="FedAvg rounds for both tools (default 100)")
    parser.add_argument("--output", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--flower-venv", type=Path, default=Path("/tmp/flower-venv"),
                        help="Flower's own venv, created if missing (default /tmp/flower-venv)")
    parser.add_argument("--flower-run", nargs=2, metavar=("NPZ", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.flower_run:  # inside Flower's venv: import this file as a module so Ray actors can import it too
        sys.path.insert(0, str(HERE))
        import flower_side_by_side as module
        module.run_flower(args.flower_run[0], args.rounds, args.flower_run[1])
        return 0

    if not (FEDSYFT_VENV / "bin" / "fedsyft").exists():
        parser.error(f"{FEDSYFT_VENV}/bin/fedsyft not found: install fedsyft first (make install)")
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: see timed()
    results: dict = {
        "task": {"sites": SITES, "partition": "powerlaw", "clients_per_round": CLIENTS_PER_ROUND, "rounds": args.rounds,
                 "seed": SEED, "local_lbfgs_iterations": LOCAL_ITERS, "l2": L2, "strategy": "FedAvg",
                 "server_evaluation": "10,000 MNIST test images after every round"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
    }
    with tempfile.TemporaryDirectory(prefix="flower-side-by-side-") as tmp:
        tmp = Path(tmp)
        npz, flower_json = tmp / "partition.npz", tmp / "flower-result.json"

        print("Exporting fedsyft's powerlaw partition for Flower (not timed) ...", flush=True)
        started = time.perf_counter()
        subprocess.run([str(FEDSYFT_VENV / "bin" / "python"), "-c", EXPORT_PARTITION, str(npz)], check=True,
                       env={**os.environ, **ENV})
        results["partition_export_seconds"] = round(time.perf_counter() - started, 2)

        print(f"fedsyft simulate, {args.rounds} rounds ...", flush=True)
        fedsyft_cmd = [str(FEDSYFT_VENV / "bin" / "fedsyft"), "simulate", "--sites", str(SITES), "--partition",
                       "powerlaw", "--clients-per-round", str(CLIENTS_PER_ROUND), "--rounds", str(args.rounds),
                       "--local-iters", str(LOCAL_ITERS), "--out", str(tmp / "fedsyft-run"), "--json", "-q"]
        fedsyft = {"command": " ".join(fedsyft_cmd), **timed(fedsyft_cmd, tmp / "fedsyft.log", ENV)}
        try:
            summary = json.loads((tmp / "fedsyft.log").read_text())
            fedsyft["final_global_test_accuracy"] = summary["global_test_accuracy_per_round"][-1]
            fedsyft["global_test_accuracy_per_round"] = summary["global_test_accuracy_per_round"]
        except (ValueError, KeyError, IndexError):
            fedsyft["error"] = _tail(tmp / "fedsyft.log.err")
        results["fedsyft"] = fedsyft

        flower: dict = {}
        try:
            python = ensure_flower_venv(args.flower_venv)
            print(f"Flower simulation (Ray), {args.rounds} rounds ...", flush=True)
            flower_cmd = [str(python), str(Path(__file__).resolve()), "--rounds", str(args.rounds),
                          "--flower-run", str(npz), str(flower_json)]
            flower = {"command": " ".join(flower_cmd), **timed(flower_cmd, tmp / "flower.log", ENV)}
            if flower["exit_code"] == 0 and flower_json.exists():
                out = json.loads(flower_json.read_text())
                flower.update(version=out["flwr_version"],
                              final_global_test_accuracy=out["global_test_accuracy_per_round"][-1],
                              global_test_accuracy_per_round=out["global_test_accuracy_per_round"])
            else:
                flower["error"] = _tail(tmp / "flower.log.err")
        except (RuntimeError, subprocess.CalledProcessError) as e:
            flower["error"] = str(e)
        results["flower"] = flower

    results["ratio_fedsyft_over_flower"] = {
        "wall_seconds": _ratio(fedsyft.get("wall_seconds"), flower.get("wall_seconds")),
        "peak_tree_pss_mb": _ratio(fedsyft.get("peak_tree_pss_mb"), flower.get("peak_tree_pss_mb"))}

    for r in (fedsyft, flower):  # one round's accuracy swings on this split: the last 10 rounds' mean is steadier
        if per_round := r.get("global_test_accuracy_per_round"):
            r["mean_test_accuracy_last_10_rounds"] = round(sum(per_round[-10:]) / len(per_round[-10:]), 4)

    rows = [("tool", "wall s", "peak PSS MB (tree)", "max RSS MB (1 proc)", "final test acc", "mean acc last 10")]
    for name, r in (("fedsyft simulate", fedsyft), (f"Flower {flower.get('version', '?')} (Ray)", flower)):
        acc = r.get("final_global_test_accuracy")
        rows.append((name, str(r.get("wall_seconds", "-")), str(r.get("peak_tree_pss_mb", "-")),
                     str(r.get("largest_process_max_rss_mb", "-")), f"{acc:.4f}" if acc is not None else "-",
                     str(r.get("mean_test_accuracy_last_10_rounds", "-"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    ratio = results["ratio_fedsyft_over_flower"]
    print(f"ratio fedsyft/Flower: wall {ratio['wall_seconds']}, peak PSS {ratio['peak_tree_pss_mb']}")
    for name, r in (("fedsyft", fedsyft), ("Flower", flower)):
        if "error" in r:
            print(f"\n{name} failed:\n{r['error']}", file=sys.stderr)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0 if "error" not in fedsyft and "error" not in flower else 1


if __name__ == "__main__":
    sys.exit(main())
