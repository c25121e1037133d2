"""Soak: 3 datasites, 50 rounds, one site killed and restarted twice; results into benchmarks/results.json.

    .venv/bin/python benchmarks/soak.py [--rounds 50]

Site 3's server is SIGKILLed after rounds 12 and 30 and restarted from its state
folder five rounds later each time; the run must finish (the default quorum of
2 of 3 holds), end within 0.5 percentage points of a clean in-process run on the
same shards, show no datasite memory growth over 10 % between round 10 and the
last round, and leave no process or port behind.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import free_port_base  # noqa: E402

from fedsyft.data import load_mnist  # noqa: E402
from fedsyft.datasite.launch import Datasites, port_is_free, serving, shard_mnist  # noqa: E402
from fedsyft.experiment import RunConfig, connect_sites, request_approval, run_experiment  # noqa: E402
from fedsyft.sites import LocalSite  # noqa: E402

KILL_AFTER = (12, 30)
DOWN_FOR = 5


class Saboteur:
    """Kills and restarts site 3 between rounds; samples every datasite's RSS after each round."""

    def __init__(self, datasites: Datasites):
        self.datasites = datasites
        self.victim = datasites.sites[2]
        self.pids = {s.name: s.pid for s in datasites.sites}
        self.restarted: list[subprocess.Popen] = []
        self.rss: dict[int, dict[str, float]] = {}
        self.events: list[dict] = []

    def round_started(self, round_no, rounds):
        pass

    def site_finished(self, *args):
        pass

    def round_finished(self, record, params):
        sample = {}
        for name, pid in self.pids.items():
            try:
                sample[name] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
            except psutil.NoSuchProcess:
                pass
        self.rss[record.round] = sample
        if record.round in KILL_AFTER:
            psutil.Process(self.pids[self.victim.name]).send_signal(signal.SIGKILL)
            self.events.append({"after_round": record.round, "event": "killed site 3"})
        if record.round - DOWN_FOR in KILL_AFTER:
            start = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "fedsyft.datasite.server", str(self.victim.state)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not serving(self.victim.url):
                if process.poll() is not None or time.perf_counter() - start > 180:
                    raise SystemExit("site 3 did not come back")
                time.sleep(0.5)
            self.restarted.append(process)
            self.pids[self.victim.name] = process.pid
            self.events.append({"after_round": record.round, "event": "restarted site 3",
                                "seconds": round(time.perf_counter() - start, 1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    mnist = load_mnist()
    shards = shard_mnist(mnist, 3, seed=0)
    config = RunConfig(rounds=args.rounds)
    port = free_port_base(3)

    with TemporaryDirectory() as tmp:
        start = time.perf_counter()
        datasites = Datasites(shards, port_base=port, state_dir=Path(tmp) / "state", private=False).start()
        saboteur = Saboteur(datasites)
        try:
            sites = connect_sites([s.credentials for s in datasites.sites])
            request_approval(sites, timeout=120)
            soak = run_experiment(sites, config, mnist.test, Path(tmp) / "run", observers=[saboteur], site_timeout=120)
        finally:
            for process in saboteur.restarted:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            datasites.stop()
        wall = time.perf_counter() - start
    all_pids = [s for s in saboteur.pids.values()] + [p.pid for p in saboteur.restarted]
    leaked = [pid for pid in all_pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    ports_free = all(port_is_free("127.0.0.1", port + i) for i in range(3))

    clean = run_experiment([LocalSite(s.name, shard) for s, shard in zip(sites, shards)], config, mnist.test, None)

    first, last = 10, args.rounds
    growth = {name: round(saboteur.rss[last][name] / saboteur.rss[first][name] - 1, 4)
              for name in saboteur.rss[last] if name in saboteur.rss[first] and name != saboteur.victim.name}
    victim_back = KILL_AFTER[-1] + DOWN_FOR + 1  # first sample of site 3's last incarnation
    if victim_back < last and saboteur.victim.name in saboteur.rss.get(victim_back, {}):
        growth[f"{saboteur.victim.name} (since its restart, round {victim_back})"] = round(
            saboteur.rss[last][saboteur.victim.name] / saboteur.rss[victim_back][saboteur.victim.name] - 1, 4)
    # A least-squares slope over rounds 10..last tells a steady leak from allocator noise in two snapshots.
    trend = {}
    for name in saboteur.pids:
        points = [(r, mb[name]) for r, mb in saboteur.rss.items() if r >= first and name in mb
                  and (name != saboteur.victim.name or r >= victim_back)]
        if len(points) > 2:
            slope = float(np.polyfit([r for r, _ in points], [m for _, m in points], 1)[0])
            trend[name] = {"mb_per_round": round(slope, 3), "mb_over_40_rounds": round(40 * slope, 1)}
    failures = {r.round: r.failures for r in soak.history.rounds if r.failures}
    result = {
        "rounds": args.rounds, "sites": 3, "rows_per_site": len(shards[0]), "wall_seconds": round(wall, 1),
        "events": saboteur.events, "rounds_with_failures": sorted(failures),
        "final_accuracy_soak": soak.history.final_accuracy, "final_accuracy_clean": clean.history.final_accuracy,
        "accuracy_gap_pp": round(100 * (clean.history.final_accuracy - soak.history.final_accuracy), 3),
        "rss_mb_round_10": saboteur.rss[first], f"rss_mb_round_{last}": saboteur.rss[last],
        "rss_growth_round_10_to_last": growth, "rss_trend_from_round_10": trend,
        "rss_mb_by_round": saboteur.rss, "leaked_processes": leaked, "ports_free_after": ports_free,
        "round_seconds_median": sorted(r.seconds for r in soak.history.rounds)[len(soak.history.rounds) // 2],
        "date": time.strftime("%Y-%m-%d"),
    }
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results["soak"] = result
    args.output.write_text(json.dumps(results, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
