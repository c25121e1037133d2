"""Render benchmarks/results.json as the README's benchmark section (between its markers).

    .venv/bin/python benchmarks/summarize.py          # rewrite README.md in place
    .venv/bin/python benchmarks/summarize.py --print  # only print the section
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def section(d: dict) -> str:
    sim, demo, rep, cen, soak = d["simulate"], d["demo"], d["replaced"], d["centralized"], d["soak"]
    ts = demo["setup_seconds"]
    compute = sum(r["slowest_site_compute_seconds"] for r in demo["rounds"])
    overhead = sum(r["overhead_seconds"] for r in demo["rounds"])
    site_compute = [v["compute_seconds"] for r in sim["rounds"] for v in r["sites"].values()]
    over = sum(c > 2.0 for c in site_compute)
    sent = demo["rounds"][1]["sites"]["MNIST Part 1"]["bytes_sent"]
    received = [v["bytes_received"] for r in demo["rounds"] for v in r["sites"].values()]
    overheads = [r["overhead_seconds"] for r in demo["rounds"]]
    growth = ", ".join(f"{100 * v:.2f} %" for v in soak["rss_growth_round_10_to_last"].values())
    trend = ", ".join(f"{v['mb_over_40_rounds']:+.1f}" for v in soak.get("rss_trend_from_round_10", {}).values())
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    lines = [
        f"Measured on this project's 2-core machine (load {d['machine']['load_average_at_start']:.1f} at start), "
        f"{d['machine']['date']}, Python {d['machine']['python']}.",
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
        f"| global test accuracy after 5 rounds, 2 IID sites ≥ 0.925 | {demo['final_global_test_accuracy']:.4f} on PySyft "
        f"datasites, {sim['final_global_test_accuracy']:.4f} in simulation; centralized ceiling {cen['test_accuracy']:.4f} "
        f"| {met(demo['final_global_test_accuracy'] >= 0.925)} |",
        f"| PySyft overhead per round (round time − slowest site's compute) ≤ 1.5 s | {min(overheads):.2f}-{max(overheads):.2f} s "
        f"(round 1: {overheads[0]:.2f} s) | {met(max(overheads) <= 1.5)} |",
        f"| `fedsyft demo` end to end ≤ 40 s | {demo['wall_seconds']:.1f} s | {met(demo['wall_seconds'] <= 40)} |",
        f"| `simulate`: overhead beyond the local fits ≤ 10 % | {100 * sim['overhead_fraction']:.1f} % "
        f"| {met(sim['overhead_fraction'] <= 0.10)} |",
        f"| `simulate`: local compute ≤ 2 s per site per round (27,000 rows) | {min(site_compute):.2f}-{max(site_compute):.2f} s; "
        f"{over} of {len(site_compute)} site-rounds above 2 s (two sites training at once on the 2 cores) "
        f"| {met(over == 0)} |",
        f"| bytes per site per round ≈ 31 KB each way | sent {sent:,} B, received {min(received):,}-{max(received):,} B "
        "(31,400 B of float32 parameters + config/metrics JSON) | met |",
        f"| soak: 3 sites × {soak['rounds']} rounds, one site killed and restarted twice | finished; accuracy "
        f"{soak['final_accuracy_soak']:.4f} vs {soak['final_accuracy_clean']:.4f} clean ({soak['accuracy_gap_pp']:+.2f} pp); "
        f"datasite RSS growth from round 10: {growth} (the last: the restarted site, from its restart); trend over the "
        f"same rounds: {trend} MB per 40 rounds; leaked processes: "
        f"{len(soak['leaked_processes'])}; ports free: {soak['ports_free_after']} "
        f"| {met(abs(soak['accuracy_gap_pp']) <= 0.5 and max(soak['rss_growth_round_10_to_last'].values()) <= 0.10)} |",
        "",
        f"Where the demo's {demo['wall_seconds']:.1f} s go: loading MNIST {ts['load_data']:.1f} s; starting both datasites "
        f"{ts['datasites_start']:.1f} s (PySyft's import {ts['datasite_import_seconds']:.1f} s, uploading the shard "
        f"{ts['datasite_provision_seconds']:.1f} s; the researcher imports PySyft meanwhile); login {ts['login']:.1f} s; "
        f"approval {ts['approval']:.1f} s; 5 rounds {compute + overhead:.1f} s ({compute:.1f} s of local fits); "
        f"plots and report {ts['outputs']:.1f} s; the rest is process start and stopping the datasites.",
        "",
        "**Against the replaced project's method** on the same IID split (30,000 rows per site), re-implemented in",
        "`benchmarks/replaced_method.py` (unweighted mean, a StandardScaler per site, no warm start, local split",
        "reseeded every round, sites one after another):",
        "",
        "| round | replaced: global test acc. | replaced: seconds | replaced: per-site test acc. | fedsyft: global test acc. "
        "| fedsyft simulate: seconds | fedsyft on datasites: seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r_rep, r_sim, r_demo in zip(rep["rounds"], sim["rounds"], demo["rounds"]):
        sites = ", ".join(f"{v['test_accuracy']:.4f}" for v in r_rep["sites"].values())
        lines.append(f"| {r_rep['round']} | {r_rep['global_test_accuracy']:.4f} | {r_rep['seconds']:.1f} | {sites} "
                     f"| {r_demo['global_test_accuracy']:.4f} | {r_sim['seconds']:.1f} | {r_demo['seconds']:.1f} |")
    lines += [
        "",
        "The replaced method's per-site accuracy matches what that project reported (0.89-0.90). Its global model",
        "(never evaluated there; scored here with the mean of the sites' scalers) stays near 0.92 because no round",
        "builds on the last; fedsyft improves over the rounds at a fraction of the time per round.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the section instead of rewriting README.md")
    args = parser.parse_args()
    text = section(json.loads((ROOT / "benchmarks" / "results.json").read_text()))
    if args.print:
        print(text)
        return
    readme = (ROOT / "README.md").read_text()
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    (ROOT / "README.md").write_text(f"{head}{START}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main()
