"""Measure fedsyft against the targets in the README and write benchmarks/results.json.

    .venv/bin/python benchmarks/run_benchmarks.py            # everything (~18 min on 2 cores)
    .venv/bin/python benchmarks/run_benchmarks.py --only demo --only timing

Sections:
- simulate: 2 IID sites x 30,000 rows, 5 rounds, in-process: accuracy per round,
  each site's local compute, and the loop's overhead beyond the slowest local fit.
- demo: ``fedsyft demo`` end to end as a subprocess (launch included): wall time,
  the set-up breakdown, per-round compute and PySyft overhead, bytes per site.
- replaced: the replaced project's method (benchmarks/replaced_method.py) on the same split.
- centralized: one logistic regression on all 60,000 images with the same L2: the ceiling.
- heterogeneity: strategies on label-skewed partitions (Dirichlet 0.1 over 10 sites; McMahan's
  pathological 100 x 2 shards of 300 with 10 clients a round; FedProx's 1,000 power-law devices,
  10 a round, 100 rounds): tuned settings, and every strategy with its defaults (``--strategy S``
  alone; also alone: ``--only defaults``); and the simulation engine's wall time, each as
  ``fedsyft simulate``.
- own_data: a data owner's own tables (scikit-learn's breast cancer and digits): two "clinics"
  on real TLS datasites (held-out quarter) and simulations, with and without DP, against a
  centralized logistic regression on the same rows.
- privacy: 2 IID sites x 30,000 rows, 20 rounds, delta 1e-5: global accuracy for each target
  epsilon (and without DP), in simulation; the reconstruction attack on a 40-row site with and
  without DP; a private round against a non-private one on real datasites (``demo --epsilon``).
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
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))  # test_cli's clinic tables

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


def _simulate(*args: str) -> dict:
    """``fedsyft simulate ARGS --json`` as a user runs it: its summary plus the wall time of the whole command."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "fedsyft", "simulate", *map(str, args), "--out",
                             str(OUT / "heterogeneity"), "--json", "-q"], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"simulate {args} failed: {result.stderr}")
    summary = json.loads(result.stdout)
    acc = summary["global_test_accuracy_per_round"]
    return {"args": " ".join(map(str, args)), "final_global_test_accuracy": acc[-1], "best": max(acc),
            "mean_last_10": round(sum(acc[-10:]) / len(acc[-10:]), 4),
            "rounds_to_0.85": next((i + 1 for i, a in enumerate(acc) if a >= 0.85), None),
            "rounds_to_0.90": next((i + 1 for i, a in enumerate(acc) if a >= 0.90), None),
            "wall_seconds": round(time.perf_counter() - start, 2), "accuracy_per_round": acc}


def _timed(args: str, repeats: int = 3) -> dict:
    """The run with the median wall time of ``repeats`` (one run's time on a shared 2-core VM varies by ~10 %)."""
    runs = sorted((_simulate(*args.split()) for _ in range(repeats)), key=lambda r: r["wall_seconds"])
    return {**runs[len(runs) // 2], "wall_seconds_of_each_run": [r["wall_seconds"] for r in runs]}


POWERLAW_BEST = "--strategy fedadam --server-lr 0.03 --local-iters 2 --unweighted --ema 0.95"
# Tuned settings per setting; every strategy with its defaults alone is bench_defaults' (FedAvg's included).
HETEROGENEITY = {
    "dirichlet_0.1_10_sites_20_rounds": ("--sites 10 --partition dirichlet --alpha 0.1 --rounds 20", [
        "--local-iters 2", "--local-iters 6", "--strategy fedprox --mu 0.1 --local-iters 5",
        "--strategy scaffold --local-iters 3", "--strategy fedavgm --local-iters 2",
        "--strategy fedadam --server-lr 0.03 --local-iters 2", "--strategy fedyogi --server-lr 0.03 --local-iters 2",
        "--strategy fedadam --server-lr 0.03 --local-iters 2 --ema 0.5"]),
    "pathological_100x2_shards_of_300_10_per_round": (
        "--sites 100 --partition shards --shards-per-client 2 --shard-size 300 --clients-per-round 10 --rounds 100", [
            "--local-iters 3", "--strategy fedprox --mu 0.1 --local-iters 3",
            "--strategy fedadam --server-lr 0.01 --local-iters 3 --unweighted",
            "--strategy fedadam --server-lr 0.01 --local-iters 3 --unweighted --ema 0.8",
            "--strategy fedadam --server-lr 0.03 --local-iters 2 --unweighted --ema 0.9"]),
    "fedprox_powerlaw_1000_devices_10_per_round_100_rounds": (
        "--sites 1000 --partition powerlaw --clients-per-round 10 --rounds 100", [
            "--local-iters 3 --unweighted", "--strategy fedprox --mu 0.1 --local-iters 3 --unweighted",
            "--strategy scaffold --local-iters 3", "--strategy fedadam --server-lr 0.01 --local-iters 3 --unweighted",
            "--strategy fedyogi --server-lr 0.01 --local-iters 5",
            "--strategy fedadam --server-lr 0.01 --beta1 0.98 --local-iters 2 --unweighted",
            "--strategy fedyogi --server-lr 0.01 --beta1 0.98 --local-iters 2 --unweighted",
            "--strategy fedadam --server-lr 0.03 --local-iters 2 --unweighted",
            POWERLAW_BEST, "--strategy fedyogi --server-lr 0.03 --local-iters 2 --unweighted --ema 0.95"]),
}
# The power-law target's best setting, run again with other seeds (another partition and draw of devices).
POWERLAW_SEEDS = (1, 2)


def bench_heterogeneity() -> dict:
    results: dict = {}
    for setting, (base, variants) in HETEROGENEITY.items():
        results[setting] = []
        for variant in variants:
            row = _simulate(*base.split(), *variant.split())
            row["variant"] = variant or "fedavg (defaults)"
            results[setting].append(row)
            print(f"  {setting}: {row['variant']}: {row['final_global_test_accuracy']:.4f} "
                  f"(best {row['best']:.4f}) in {row['wall_seconds']:.1f} s", flush=True)
    base = HETEROGENEITY["fedprox_powerlaw_1000_devices_10_per_round_100_rounds"][0]
    results["powerlaw_best_other_seeds"] = [{**_simulate(*base.split(), *POWERLAW_BEST.split(), "--seed", seed),
                                             "variant": POWERLAW_BEST, "seed": seed} for seed in POWERLAW_SEEDS]
    for row in results["powerlaw_best_other_seeds"]:
        print(f"  powerlaw, seed {row['seed']}: {row['final_global_test_accuracy']:.4f}", flush=True)
    results["defaults"] = bench_defaults()
    results["timing"] = bench_timing()
    return results


def bench_defaults() -> dict:
    """Every strategy with nothing but ``--strategy`` on each non-IID setting (also alone: ``--only defaults``).

    Issue 17's "defaults that work": each strategy's defaults within a point of its tuned best
    on the Dirichlet setting. The run's recorded settings are kept with the row and must be
    the strategy's defaults: a command line that still passed fixed defaults of its own
    (``--local-iters 25``, weighted) would measure something else.
    """
    from fedsyft.experiment import RunConfig
    from fedsyft.strategies import STRATEGIES

    results: dict = {}
    for setting, (base, _) in HETEROGENEITY.items():
        results[setting] = []
        for name in STRATEGIES:
            row = _simulate(*base.split(), "--strategy", name)
            config = json.loads((OUT / "heterogeneity" / "metrics.json").read_text())["config"]
            expected = RunConfig(strategy=name, clients_per_round=config["clients_per_round"],
                                 site_count=config["site_count"])
            if (config["local_iters"], config["strategy_settings"]) != (expected.setting("local_iters"),
                                                                         expected.make_strategy().describe()):
                raise SystemExit(f"simulate --strategy {name} ran with local_iters {config['local_iters']} and "
                                 f"{config['strategy_settings']}, not the strategy's defaults: the command line "
                                 "does not leave them to the strategy")
            row.update(variant=f"--strategy {name}", strategy=name, local_iters=config["local_iters"],
                       strategy_settings=config["strategy_settings"])
            results[setting].append(row)
            print(f"  {setting}: {name} defaults: {row['final_global_test_accuracy']:.4f} "
                  f"(best {row['best']:.4f}) in {row['wall_seconds']:.1f} s", flush=True)
    return results


def bench_timing() -> dict:
    """The issue's timed simulations, outputs included (also alone: ``--only timing``)."""
    timing = {
        "powerlaw_1000_devices_10_per_round_100_rounds": _timed("--sites 1000 --partition powerlaw "
                                                                "--clients-per-round 10 --rounds 100"),
        "iid_100_sites_all_every_round_20_rounds": _timed("--sites 100 --rounds 20"),
        "iid_10000_sites_10_per_round_5_rounds": _timed("--sites 10000 --clients-per-round 10 --rounds 5"),
    }
    for name, row in timing.items():
        print(f"  timing {name}: {row['wall_seconds']:.1f} s", flush=True)
    return timing


def bench_own_data() -> dict:
    from test_cli import _clinic_files
    from conftest import free_port_base
    from sklearn.linear_model import LogisticRegression

    from fedsyft.data import Images
    from fedsyft.datasite.launch import Datasites
    from fedsyft.experiment import connect_sites, request_approval
    from fedsyft.schema import Schema
    from fedsyft.tabular import load_table, write_example_tables

    folder = OUT / "own_data"
    folder.mkdir(parents=True, exist_ok=True)
    files = _clinic_files(folder)
    schema = Schema.read(files["schema"])
    tables = [load_table(files[k], "diagnosis") for k in ("a", "b")]
    test_table = load_table(files["test"], "diagnosis")
    test = Images(test_table.X, schema.encode_labels(test_table))
    X = np.vstack([t.X for t in tables])
    y = np.concatenate([schema.encode_labels(t) for t in tables])
    central = LogisticRegression(C=1 / (1e-5 * len(y)), max_iter=5000).fit(schema.scale(X), y)
    results = {"breast_cancer_centralized": float((central.predict(schema.scale(test.X)) == test.y).mean())}
    for label, epsilon in (("no_dp", None), ("dp_epsilon_8", 8.0)):
        shards = [Images(t.X, schema.encode_labels(t)) for t in tables]
        with Datasites(shards, port_base=free_port_base(2), names=["Clinic A", "Clinic B"], tls=True,
                       private=epsilon is not None, schema=schema.to_dict()) as owners:
            sites = connect_sites([s.credentials for s in owners.sites])
            config = RunConfig(rounds=20 if epsilon else 5, epsilon=epsilon, schema=schema.to_dict())
            request_approval(sites, 60, config.function_name)
            history = run_experiment(sites, config, test, None).history
        results[f"two_clinics_tls_{label}"] = {"rounds": config.rounds, "epsilon": epsilon,
                                               "final_global_test_accuracy": history.final_accuracy}
        print(f"  two clinics over TLS, {label}: {history.final_accuracy:.4f}", flush=True)
    examples = write_example_tables(folder)
    # DP-SGD's sampling follows the smallest site's rows by default (privacy.plan.sampling_for); the
    # "fixed" runs use MNIST's fixed 0.04 x 50 steps, which average ~10 noisy rows a step on these tables.
    fixed = ["--sample-rate", 0.04, "--dp-steps", 50]
    for name, sites in (("digits", 3), ("breast_cancer", 2)):
        for epsilon, extra in ((None, []), (1.0, []), (8.0, []), (1.0, fixed), (8.0, fixed)):
            args = ["--data", examples[name].path, "--label", examples[name].label, "--sites", sites,
                    "--rounds", 20 if epsilon else 5, *(["--epsilon", epsilon] if epsilon else []), *extra]
            row = _simulate(*args)
            key = f"simulate_{name}_{sites}_sites_{'no_dp' if epsilon is None else f'epsilon_{epsilon:g}'}"
            results[key + ("_fixed_mnist_sampling" if extra else "")] = {
                "final_global_test_accuracy": row["final_global_test_accuracy"], "args": row["args"]}
            print(f"  simulate {name}, epsilon {epsilon} {' '.join(map(str, extra))}: "
                  f"{row['final_global_test_accuracy']:.4f}", flush=True)
        # The default DP step size (10 / sigma, within 0.5-8) was tuned on MNIST: the same runs at eps 1
        # with other step sizes show whether it carries over to small tables.
        sweep = []
        for lr in DP_LR_SWEEP:
            row = _simulate("--data", examples[name].path, "--label", examples[name].label, "--sites", sites,
                            "--rounds", 20, "--epsilon", 1.0, "--dp-lr", lr)
            sweep.append({"dp_lr": lr, "final_global_test_accuracy": row["final_global_test_accuracy"]})
        results[f"simulate_{name}_{sites}_sites_epsilon_1_dp_lr_sweep"] = sweep
        print(f"  simulate {name}, epsilon 1, dp-lr sweep: "
              + ", ".join(f"{r['dp_lr']:g}: {r['final_global_test_accuracy']:.4f}" for r in sweep), flush=True)
    return results


DP_LR_SWEEP = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


PRIVACY_EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)
PRIVACY_ROUNDS = 20


def bench_privacy(mnist) -> dict:
    from reconstruction import attack_non_private, attack_private, recovered

    from fedsyft.privacy import PrivacyGuard, PrivacyLedger, noise_multiplier_for
    from fedsyft.task import local_train, local_train_dp

    load = os.getloadavg()[0]
    shards = shard_mnist(mnist, 2, seed=0)
    sweep = []
    for eps in (*PRIVACY_EPSILONS, None):
        config = RunConfig(rounds=PRIVACY_ROUNDS, epsilon=eps)
        sites = [LocalSite(f"MNIST Part {i + 1}", s, seed=(0, i),
                           privacy=PrivacyGuard(PrivacyLedger.in_memory(eps, config.delta)) if eps else None)
                 for i, s in enumerate(shards)]
        start = time.perf_counter()
        with threadpool_limits(limits=1):
            result = run_experiment(sites, config, mnist.test, None)
        seconds = time.perf_counter() - start
        last = result.history.rounds[-1]
        sweep.append({
            "epsilon": eps, "delta": config.delta if eps else None,
            "noise_multiplier": config.plan.noise_multiplier if eps else None,
            "lr": config.plan.step_size if eps else None,
            "final_global_test_accuracy": result.history.final_accuracy,
            "accuracy_per_round": [r.global_.test_accuracy for r in result.history.rounds],
            "epsilon_spent_per_site": {n: s.epsilon_spent for n, s in last.sites.items()},
            "seconds": round(seconds, 2), "seconds_per_site_round": round(seconds / PRIVACY_ROUNDS / 2, 3),
        })
        print(f"  epsilon={eps}: {sweep[-1]['final_global_test_accuracy']:.4f} in {seconds:.1f} s", flush=True)
    stored = json.loads((HERE / "results.json").read_text()) if (HERE / "results.json").exists() else {}
    privacy_plot(sweep, stored.get("scatter"))

    X, y = mnist.train.X[:40], mnist.train.y[:40]
    open_rows, open_labels = recovered(*attack_non_private(lambda p, c: local_train((X, y), p, c)), X, y)
    guard = PrivacyGuard(PrivacyLedger.in_memory(10.0, 1e-5), rows=40)
    sigma = noise_multiplier_for(10.0, 1.0, 20, 1e-5)
    images, labels, answers = attack_private(
        lambda p, c: guard.run(c, lambda prepared: local_train_dp((X, y), p, prepared)), sigma)
    dp_rows, dp_labels = recovered(images, labels, X, y)
    attack = {"rows": 40, "no_dp": {"calls": 60, "rows_recovered": open_rows, "labels_recovered": open_labels},
              "dp_budget_10": {"calls_served": sum("error" not in a for a in answers),
                               "refused_after": answers[-1].get("error", ""), "rows_recovered": dp_rows,
                               "labels_of_nearest_reconstruction": dp_labels}}
    print(f"  attack: no DP {open_rows:.0%} rows; DP {dp_rows:.0%} rows", flush=True)
    attack["membership_overflow"] = _membership(mnist)
    return {"rounds": PRIVACY_ROUNDS, "sweep": sweep, "attack": attack, "datasites": _private_round_cost(),
            "measured": {"date": time.strftime("%Y-%m-%d"), "load_average_at_start": load}}


def _membership(mnist) -> dict:
    """The float32-overflow membership attack (tests/membership.py), 40 members and 40 outsiders, in process."""
    import warnings

    from legacy_dp import legacy_local_train_dp
    from membership import membership_attack

    from fedsyft.task import local_train_dp

    X, y, outsiders = mnist.train.X[:40], mnist.train.y[:40], mnist.train.X[1000:1040]
    rows = {"rows": 40}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the old function overflows: that is the attack
        for name, call, at_bound in (
                ("before_hardening", lambda p, c: legacy_local_train_dp((X, y), p, c), False),
                ("local_train_dp", lambda p, c: local_train_dp((X, y), p, {**c, **rows}), False),
                ("local_train_dp_templates_at_bound", lambda p, c: local_train_dp((X, y), p, {**c, **rows}), True)):
            members, others, _ = membership_attack(call, X, outsiders, at_bound=at_bound)
            out[name] = {"members_flagged": members, "outsiders_flagged": others, "calls": 80}
    print(f"  membership: {out}", flush=True)
    return out


def privacy_plot(sweep: list[dict], scatter: dict | None = None) -> None:
    """docs/privacy_accuracy.png: the raw-pixel ε sweep, and the scattering map's default-plan runs when measured."""
    from matplotlib.figure import Figure

    private = [r for r in sweep if r["epsilon"]]
    ceiling = next(r["final_global_test_accuracy"] for r in sweep if not r["epsilon"])
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.subplots()
    curves = [("raw pixels", private, "o-", "C0")]
    if scatter:
        default = [r for r in scatter.get("runs", []) if r["epsilon"] and not any(
            k in r for k in ("dp_lr", "dp_steps", "ema", "center", "dp_center"))]
        curves.append(("wavelet scattering (--features scatter)", sorted(default, key=lambda r: r["epsilon"]),
                       "s-", "C2"))
    for label, rows, style, color in curves:
        ax.plot([r["epsilon"] for r in rows], [r["final_global_test_accuracy"] for r in rows], style, lw=2,
                color=color, label=f"DP-SGD, {label}")
        for r in rows:
            ax.annotate(f"{r['final_global_test_accuracy']:.3f}", (r["epsilon"], r["final_global_test_accuracy"]),
                        textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    ax.axhline(ceiling, color="C0", ls="--", label=f"raw pixels, no DP: {ceiling:.4f}")
    if scatter:
        no_dp = next((r["final_global_test_accuracy"] for r in scatter.get("runs", []) if not r["epsilon"]), None)
        if no_dp is not None:
            ax.axhline(no_dp, color="C2", ls="--", label=f"scattering, no DP (5 rounds): {no_dp:.4f}")
    ticks = sorted({r["epsilon"] for _, rows, _, _ in curves for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("ε per site (whole run, 20 rounds)")
    ax.set_ylabel("global test accuracy")
    ax.set_title("MNIST, 2 sites × 30,000 rows: accuracy against privacy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right" if scatter else "lower right")
    fig.tight_layout()
    fig.savefig(HERE.parent / "docs" / "privacy_accuracy.png", dpi=110)


def _private_round_cost() -> dict:
    """Seconds per round of ``demo`` without and with ``--epsilon 1`` (real datasites, 5 rounds each)."""
    from conftest import free_port_base

    cost = {}
    for label, extra in (("no_dp", []), ("dp_epsilon_1", ["--epsilon", "1"])):
        out = OUT / f"demo_{label}"
        cmd = [sys.executable, "-m", "fedsyft", "demo", "--port-base", str(free_port_base(2)), "--out", str(out),
               *extra]
        result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        if result.returncode != 0:
            raise SystemExit(f"demo {extra} failed: {result.stderr}")
        rounds = json.loads((out / "metrics.json").read_text())["rounds"]
        cost[label] = {"round_seconds": [round(r["seconds"], 3) for r in rounds],
                       "mean_round_seconds": round(sum(r["seconds"] for r in rounds) / len(rounds), 3),
                       "final_global_test_accuracy": rounds[-1]["global"]["test_accuracy"]}
    cost["ratio_dp_to_no_dp"] = round(cost["dp_epsilon_1"]["mean_round_seconds"] / cost["no_dp"]["mean_round_seconds"], 3)
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["simulate", "demo", "replaced", "centralized", "privacy", "heterogeneity",
                                           "timing", "defaults", "own_data"], action="append",
                        help="run only these parts (repeatable); timing and defaults re-run those rows of "
                             "heterogeneity alone")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    wanted = args.only or ["simulate", "demo", "replaced", "centralized", "privacy", "heterogeneity", "own_data"]
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_start": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d")}
    mnist = load_mnist()
    steps = {"simulate": lambda: bench_simulate(mnist), "demo": bench_demo,
             "replaced": lambda: bench_replaced(mnist), "centralized": lambda: bench_centralized(mnist, RunConfig()),
             "privacy": lambda: bench_privacy(mnist), "heterogeneity": bench_heterogeneity,
             "own_data": bench_own_data}
    for name in wanted:
        print(f"running {name} ...", flush=True)
        if name in ("timing", "defaults"):
            results.setdefault("heterogeneity", {})[name] = bench_timing() if name == "timing" else bench_defaults()
        else:
            results[name] = steps[name]()
        args.output.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v.get("final_global_test_accuracy", v.get("test_accuracy", v.get("wall_seconds")))
                      for k, v in results.items()
                      if isinstance(v, dict) and k not in ("machine", "privacy", "heterogeneity", "own_data")},
                     indent=1))


if __name__ == "__main__":
    main()
