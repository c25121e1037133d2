"""Wavelet scattering + logistic regression (issue 18): measure it and write ``scatter`` into benchmarks/results.json.

    .venv/bin/python benchmarks/scatter.py                      # everything (~20 min on 2 idle cores)
    .venv/bin/python benchmarks/scatter.py --epsilon 1 --dp-lr 2 --dp-lr 4 --no-raw --no-nonprivate --no-tuned

In process, through the Python API, as ``bench_privacy`` in run_benchmarks.py: each site holds its
shard already mapped (the owner transforms its private rows once), the researcher maps its test set
with the same public map, and fedsyft's training functions run unchanged on the 3,969 columns.
Measured: the time to map all 70,000 MNIST images (both threads and one); 2 IID sites x 30,000
rows (``shard_mnist(mnist, 2, seed=0)``), non-private for 5 rounds and DP-SGD at each ε for 20
rounds (δ = 1e-5) with the default plan and with the settings in ``TUNED``, with seconds per
site-round; the same default plans on raw pixels beside them; and, with ``--dp-lr``, other DP
step sizes (researcher's knobs all; the accounting is untouched).
Other keys of results.json are left as they are (read, modify, write).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from fedsyft.data import MNIST, Images, load_mnist
from fedsyft.datasite.launch import shard_mnist
from fedsyft.experiment import RunConfig, run_experiment
from fedsyft.features import FeatureMap
from fedsyft.privacy import PrivacyGuard, PrivacyLedger
from fedsyft.workflows import mapped
from fedsyft.sites import LocalSite

HERE = Path(__file__).resolve().parent
TARGETS = {None: 0.990, 1.0: 0.975, 3.0: 0.985, 8.0: 0.988}  # issue 18: final global test accuracy
#: Other researcher settings measured beside the default plan (20 rounds; the accounting is the same, only the plan
#: differs). The default plan on scattering centres the features on the researcher's test-set mean and steps
#: 4 x 10/σ (RunConfig.center, FeatureMap.dp_step_factor). Sweeps in a scratch FedAvg loop (final accuracy, one
#: run each, 2026-12-06), uncentred: ε = 1: lr 1.9 (the pixels' default) 0.9728, 4 0.9764, 8 0.9774; ε = 3: lr 4.8
#: 0.9795, 16 0.9836; ε = 8: lr 8 0.9826, 32 0.9855, 32 + 100 steps 0.9874; without noise (ε = 1000, lr 8) 0.9869.
#: Centred: ε = 1: lr 8 0.9806, 16 0.9760; ε = 3: lr 16 0.9861, 32 0.9856; ε = 8: lr 32 0.9883, 64 0.9880,
#: 32 + 100 steps 0.9884. Raw pixels centred at ε = 1: 0.9116 (uncentred 0.9100), so pixels stay uncentred.
TUNED = {3.0: {"dp_lr": 16.0}}


def map_mnist(mnist: MNIST, feature_map: FeatureMap) -> tuple[MNIST, dict]:
    """All 70,000 images through the map (timed with the default threads and with one), as an MNIST of features."""
    images = np.concatenate([mnist.train.X, mnist.test.X])
    timing = {}
    for label, workers in (("one_thread", 1), ("default", None)):
        start = time.perf_counter()
        features = feature_map.transform(images, workers=workers)
        timing[label] = round(time.perf_counter() - start, 2)
        print(f"  map 70,000 images ({label}): {timing[label]:.1f} s", flush=True)
    n = len(mnist.train)
    return MNIST(Images(features[:n], mnist.train.y), Images(features[n:], mnist.test.y)), {
        "images": len(images), "seconds": timing["default"], "seconds_one_thread": timing["one_thread"],
        "cpus": os.cpu_count(), "width": feature_map.output_width(), "bytes": int(features.nbytes)}


def federate(data: MNIST, epsilon: float | None, rounds: int, scored: bool = True, mapped: bool = True,
             **knobs) -> dict:
    """2 IID sites x 30,000 rows in process (private sites when ``epsilon``): accuracy and seconds per site-round.

    ``mapped``: ``data`` holds scattering features and the run declares the map (as ``fedsyft run`` learns it
    from the sites), which sets the map's defaults (DP step factor, centring); False: raw pixels.
    """
    features = FeatureMap("scatter", J=2, L=8).to_dict() if mapped else None
    config = RunConfig(rounds=rounds, epsilon=epsilon, features=features, **knobs)
    sites = [LocalSite(f"MNIST Part {i + 1}", shard, seed=(0, i),
                       privacy=PrivacyGuard(PrivacyLedger.in_memory(epsilon, config.delta)) if epsilon else None)
             for i, shard in enumerate(shard_mnist(data, 2, seed=0))]
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        history = run_experiment(sites, config, data.test, None).history
    wall = time.perf_counter() - start
    site_seconds = [s.seconds for r in history.rounds for s in r.sites.values()]
    row = {"epsilon": epsilon, "rounds": rounds, "final_global_test_accuracy": history.final_accuracy,
           "accuracy_per_round": [r.global_.test_accuracy for r in history.rounds],
           "seconds": round(wall, 2), "seconds_per_site_round": round(float(np.mean(site_seconds)), 3),
           "max_seconds_per_site_round": round(max(site_seconds), 3), **knobs}
    row.update(centred=bool(history.config.get("center")), local_iters=history.config.get("local_iters"))
    if epsilon:
        plan = config.plan
        row.update(delta=config.delta, noise_multiplier=plan.noise_multiplier, lr=plan.step_size,
                   sample_rate=plan.sample_rate, steps=plan.steps, clip=plan.clip,
                   epsilon_spent_per_site={n: s.epsilon_spent for n, s in history.rounds[-1].sites.items()})
    target = TARGETS.get(epsilon) if scored else None
    if target is not None:
        row["target"], row["met"] = target, history.final_accuracy >= target
    print(f"  ε={epsilon} {knobs or ''}: {history.final_accuracy:.4f} after {rounds} rounds in {wall:.1f} s "
          f"({row['seconds_per_site_round']:.2f} s per site-round)", flush=True)
    return row


def end_to_end(epsilon: float = 1.0, rounds: int = 20) -> dict:
    """``fedsyft simulate --features scatter --epsilon 1 --rounds 20`` as a user types it: wall seconds and accuracy.

    The features of MNIST are in the disk cache already (``map_mnist`` above does not fill it; the first ``simulate``
    on a machine maps the 70,000 images once, which ``transform`` measures).
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fedsyft", "simulate", "--features", "scatter", "--epsilon", str(epsilon),
                        "--rounds", str(rounds), "--out", out, "--quiet"], check=True)
        wall = time.perf_counter() - start
        accuracy = json.loads((Path(out) / "metrics.json").read_text())["rounds"][-1]["global"]["test_accuracy"]
    print(f"  fedsyft simulate --features scatter --epsilon {epsilon:g} --rounds {rounds}: {accuracy:.4f} "
          f"in {wall:.1f} s", flush=True)
    return {"command": f"fedsyft simulate --features scatter --epsilon {epsilon:g} --rounds {rounds}",
            "final_global_test_accuracy": accuracy, "seconds": round(wall, 1), "target_seconds": 90,
            "met": wall <= 90 and accuracy >= TARGETS[epsilon]}


def on_datasites(epsilon: float = 1.0, rounds: int = 20) -> dict:
    """``fedsyft demo --features scatter --epsilon 1 --rounds 20``: two real private datasites launched with the map
    (each maps its 30,000 images at launch), a researcher's run over PySyft, the datasites stopped."""
    import subprocess
    import tempfile

    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import free_port_base

    with tempfile.TemporaryDirectory() as out:
        command = ["demo", "--features", "scatter", "--epsilon", f"{epsilon:g}", "--rounds", str(rounds)]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fedsyft", *command, "--port-base", str(free_port_base(2)),
                        "--out", out, "--quiet"], check=True, env={**os.environ, "TQDM_DISABLE": "1"})
        wall = time.perf_counter() - start
        doc = json.loads((Path(out) / "metrics.json").read_text())
    accuracy = doc["rounds"][-1]["global"]["test_accuracy"]
    round_seconds = [r["seconds"] for r in doc["rounds"]]
    print(f"  fedsyft {' '.join(command)}: {accuracy:.4f} in {wall:.1f} s", flush=True)
    return {"command": "fedsyft " + " ".join(command), "final_global_test_accuracy": accuracy,
            "accuracy_per_round": [r["global"]["test_accuracy"] for r in doc["rounds"]], "seconds": round(wall, 1),
            "mean_round_seconds": round(float(np.mean(round_seconds)), 2), "timings": doc.get("timings"),
            "target": TARGETS[epsilon], "met": accuracy >= TARGETS[epsilon]}


def relaunch_cost(mnist: MNIST, repeats: int = 3) -> dict:
    """Seconds to relaunch 2 datasites x 30,000 rows from their state folders, mapped by scattering and raw.

    Each state is provisioned once (the mapped one maps its 60,000 images then); each relaunch is
    ``Datasites(None, state_dir=...)`` until both sites answer, then stopped. The figure of issue 18
    is the median difference: what a mapped state adds to a relaunch (target: at most 2 s).
    """
    import statistics
    import tempfile

    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import free_port_base

    from fedsyft.datasite.launch import Datasites

    shards = shard_mnist(mnist, 2, seed=0)
    seconds: dict[str, list[float]] = {"scatter": [], "none": []}
    with tempfile.TemporaryDirectory() as root:
        for name in seconds:
            state = Path(root) / name
            features = FeatureMap("scatter", J=2, L=8) if name == "scatter" else None
            first = Datasites(shards, port_base=free_port_base(2), state_dir=state, private=False, features=features)
            first.start()
            first.stop()
        for _ in range(repeats):  # interleaved, so that a slow moment of the machine hits both
            for name in seconds:
                again = Datasites(None, n_sites=2, port_base=free_port_base(2), state_dir=Path(root) / name,
                                  private=False)
                start = time.perf_counter()
                again.start()
                seconds[name].append(round(time.perf_counter() - start, 2))
                again.stop()
    extra = statistics.median(seconds["scatter"]) - statistics.median(seconds["none"])
    print(f"  relaunch: scattering {seconds['scatter']} s, raw pixels {seconds['none']} s: {extra:+.2f} s",
          flush=True)
    return {"sites": 2, "rows_per_site": len(shards[0]), "seconds_scatter": seconds["scatter"],
            "seconds_raw_pixels": seconds["none"], "extra_seconds": round(extra, 2), "target_seconds": 2,
            "met": extra <= 2}


def dirichlet(strategy: str, mapped: bool, rounds: int = 20) -> dict:
    """``fedsyft simulate --sites 10 --partition dirichlet --alpha 0.1 --rounds 20 --strategy S [--features scatter]``,
    non-private, with the strategy's defaults (the heterogeneity benchmark's setting)."""
    import tempfile

    import fedsyft

    features = FeatureMap("scatter", J=2, L=8).to_dict() if mapped else None
    config = RunConfig(rounds=rounds, strategy=strategy, features=features)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        history = fedsyft.simulate(config, 10, partition="dirichlet", partition_settings={"alpha": 0.1},
                                   out=Path(out)).history
    wall = time.perf_counter() - start
    row = {"setting": "dirichlet_0.1_10_sites", "strategy": strategy, "features": "scatter" if mapped else "none",
           "rounds": rounds, "final_global_test_accuracy": history.final_accuracy,
           "accuracy_per_round": [r.global_.test_accuracy for r in history.rounds], "seconds": round(wall, 2)}
    print(f"  dirichlet 0.1 x 10 sites, {strategy}, {row['features']}: {history.final_accuracy:.4f} "
          f"in {wall:.1f} s", flush=True)
    return row


def _knobs(row: dict) -> dict:
    """The researcher's settings a run changed from the default plan."""
    return {k: row[k] for k in ("dp_lr", "dp_steps", "ema", "center", "dp_center") if k in row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon", type=float, action="append", help="ε per site (repeatable; default 1, 3, 8)")
    parser.add_argument("--dp-lr", type=float, action="append", default=[],
                        help="also run each ε with this DP step size (repeatable)")
    parser.add_argument("--no-nonprivate", action="store_true", help="skip the non-private 5-round run")
    parser.add_argument("--no-tuned", action="store_true", help="skip the runs with the tuned settings (TUNED)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw-pixel runs beside them")
    parser.add_argument("--no-uncentred", action="store_true",
                        help="skip the DP runs without centring (the default plan before center)")
    parser.add_argument("--dirichlet", action="append", default=[], metavar="STRATEGY",
                        help="also run Dirichlet 0.1 x 10 sites x 20 rounds with this strategy's defaults, "
                             "scattering and raw pixels (repeatable)")
    parser.add_argument("--relaunch", action="store_true",
                        help="also time a datasite relaunch from a mapped state against one from a raw-pixel state")
    parser.add_argument("--datasites", action="store_true",
                        help="also run fedsyft demo --features scatter --epsilon 1 --rounds 20 (real datasites)")
    parser.add_argument("--nonprivate-again", action="store_true",
                        help="with --keep-runs: run the non-private rows again (cached features)")
    parser.add_argument("--keep-runs", action="store_true",
                        help="keep the stored runs and mapping figures; run only --dirichlet, --datasites, --relaunch")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    epsilons = args.epsilon or [1.0, 3.0, 8.0]
    feature_map = FeatureMap("scatter", J=2, L=8)
    mnist = load_mnist()
    result = {"feature_map": feature_map.to_dict(), "date": time.strftime("%Y-%m-%d"),
              "load_average_at_start": os.getloadavg()[0],
              "public_range": "per channel, an upper bound over all images with pixels in [0, 1], from kymatio's "
                              "filters alone (fedsyft.features._scatter_bounds); no data read"}
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    if args.keep_runs:  # keep every other figure as it is
        result = results.get("scatter", result)
        if args.nonprivate_again:  # local_train or its defaults changed: its rows only, on the stored features
            data = MNIST(*(mapped(part, feature_map) for part in (mnist.train, mnist.test)))
            fresh = [federate(data, None, 5, **knobs) for knobs in ({}, {"center": False, "local_iters": 25})]
            result["runs"] = fresh + [r for r in result["runs"] if r["epsilon"] is not None]
            result["targets"]["no_dp"].update(default_plan=fresh[0]["final_global_test_accuracy"],
                                              best=max(r["final_global_test_accuracy"] for r in fresh))
            result["targets"]["no_dp"]["met"] = result["targets"]["no_dp"]["best"] >= TARGETS[None]
    else:
        print("mapping ...", flush=True)
        data, result["transform"] = map_mnist(mnist, feature_map)
        runs = [(None, 5, {}), (None, 5, {"center": False, "local_iters": 25})] if not args.no_nonprivate else []
        runs += [(eps, 20, {}) for eps in epsilons]  # the default plan
        runs += [(eps, 20, TUNED[eps]) for eps in epsilons if eps in TUNED and not args.no_tuned]
        runs += [(eps, 20, {"dp_lr": lr}) for eps in epsilons for lr in args.dp_lr]
        runs += [(eps, 20, {"center": False}) for eps in epsilons if not args.no_uncentred]
        print("scattering ...", flush=True)
        result["runs"] = [federate(data, eps, rounds, **knobs) for eps, rounds, knobs in runs]
        result["end_to_end"] = end_to_end()
        if not args.no_raw:
            print("raw pixels ...", flush=True)
            result["raw_pixels"] = [federate(mnist, eps, rounds, scored=False, mapped=False)
                                    for eps, rounds, knobs in runs if not knobs]
        result["targets"] = {("no_dp" if eps is None else f"epsilon_{eps:g}"): {
            "target": target, "default_plan": next((r["final_global_test_accuracy"] for r in result["runs"]
                                                    if r["epsilon"] == eps and not _knobs(r)), None),
            "best": max((r["final_global_test_accuracy"] for r in result["runs"] if r["epsilon"] == eps),
                        default=None)}
            for eps, target in TARGETS.items() if any(r["epsilon"] == eps for r in result["runs"])}
        for row in result["targets"].values():
            row["met"] = row["best"] is not None and row["best"] >= row["target"]
    if args.datasites:
        print("datasites ...", flush=True)
        result["datasites"] = on_datasites()
    if args.relaunch:
        print("relaunch ...", flush=True)
        result["relaunch"] = relaunch_cost(mnist)
    if args.dirichlet:
        print("dirichlet ...", flush=True)
        result["dirichlet"] = [dirichlet(strategy, mapped) for strategy in args.dirichlet for mapped in (True, False)]
    result["load_average_at_end"] = os.getloadavg()[0]
    results = json.loads(args.output.read_text()) if args.output.exists() else {}  # as it is now: others write too
    results["scatter"] = result  # only this key changes
    args.output.write_text(json.dumps(results, indent=1))
    if "privacy" in results:  # the README's plot gains the scattering curve
        from run_benchmarks import privacy_plot

        privacy_plot(results["privacy"]["sweep"], result)
    for r in result.get("runs", []):
        print(f"  ε={r['epsilon']} {_knobs(r) or 'default plan'}: {r['final_global_test_accuracy']:.4f}"
              + (f" (target {r['target']}: {'met' if r['met'] else 'NOT met'})" if "target" in r else ""))


if __name__ == "__main__":
    sys.exit(main())
