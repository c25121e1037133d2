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
        f"| soak: 3 sites × {soak['rounds']} rounds, one site killed and restarted twice "
        f"(measured {soak.get('date', '2026-11-24')}) | finished; accuracy "
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
    lines += privacy_section(d.get("privacy"))
    lines += heterogeneity_section(d.get("heterogeneity"), d.get("flower_side_by_side"))
    lines += own_data_section(d.get("own_data"))
    return "\n".join(lines)


def own_data_section(o: dict | None) -> list[str]:
    if not o:
        return []
    ok = lambda flag: "met" if flag else "**not met**"  # noqa: E731
    a = lambda key: o[key]["final_global_test_accuracy"]  # noqa: E731

    def small(sites: str) -> str:  # the same with MNIST's fixed sampling, when measured
        keys = [f"simulate_{sites}_epsilon_8_fixed_mnist_sampling", f"simulate_{sites}_epsilon_1_fixed_mnist_sampling"]
        if not all(k in o for k in keys):
            return ""
        return (f" (with MNIST's fixed `--sample-rate 0.04 --dp-steps 50`: ε = 8 {a(keys[0]):.4f}, "
                f"ε = 1 {a(keys[1]):.4f})")
    central, clinics = o["breast_cancer_centralized"], a("two_clinics_tls_no_dp")
    lr_sweep = _lr_sweep_rows(o)
    return ["", "**A data owner's own tables** (scikit-learn's breast cancer and digits, no network):", "",
            "| target | measured | |", "| --- | --- | --- |",
            f"| two clinics' datasites over TLS (breast-cancer halves, 5 rounds) within 1 point of a centralized "
            f"fit, ≥ 0.93 on a held-out quarter | {clinics:.4f} (centralized {central:.4f}); private, ε = 8 over "
            f"20 rounds: {a('two_clinics_tls_dp_epsilon_8'):.4f} "
            f"| {ok(clinics >= 0.93 and abs(clinics - central) <= 0.01)} |",
            f"| digits over 3 simulated sites ≥ 0.90 (held-out 20 %, 5 rounds) | {a('simulate_digits_3_sites_no_dp'):.4f}; "
            f"20 private rounds: ε = 8 {a('simulate_digits_3_sites_epsilon_8'):.4f}, ε = 1 "
            f"{a('simulate_digits_3_sites_epsilon_1'):.4f}{small('digits_3_sites')} "
            f"| {ok(a('simulate_digits_3_sites_no_dp') >= 0.90)} |",
            f"| breast cancer over 2 simulated sites (held-out 20 %) | {a('simulate_breast_cancer_2_sites_no_dp'):.4f}; "
            f"ε = 8 {a('simulate_breast_cancer_2_sites_epsilon_8'):.4f}, ε = 1 "
            f"{a('simulate_breast_cancer_2_sites_epsilon_1'):.4f}{small('breast_cancer_2_sites')} | - |",
            *lr_sweep("digits_3_sites"), *lr_sweep("breast_cancer_2_sites")]


def _lr_sweep_rows(o: dict):
    """Rows for the DP step-size sweeps at ε = 1: the default (10/σ) against fixed step sizes."""
    def rows(sites: str) -> list[str]:
        sweep = o.get(f"simulate_{sites}_epsilon_1_dp_lr_sweep")
        if not sweep:
            return []
        default = o[f"simulate_{sites}_epsilon_1"]["final_global_test_accuracy"]
        best = max(r["final_global_test_accuracy"] for r in sweep)
        others = ", ".join(f"{r['dp_lr']:g}: {r['final_global_test_accuracy']:.4f}" for r in sweep)
        return [f"| {sites.replace('_', ' ')}, ε = 1: the default step size (10/σ, tuned on MNIST) against "
                f"`--dp-lr` {', '.join(format(r['dp_lr'], 'g') for r in sweep)} | default {default:.4f}; {others} "
                f"| {'default ≥ the best fixed' if default >= best else f'best fixed is {best - default:.4f} higher'} |"]
    return rows


def privacy_section(p: dict | None) -> list[str]:
    if not p:
        return []
    ok = lambda flag: "met" if flag else "**not met**"  # noqa: E731
    by_eps = {r["epsilon"]: r for r in p["sweep"]}
    ds, attack = p["datasites"], p["attack"]
    when = p.get("measured")
    lines = ["", "**Privacy**" + (f" (re-measured {when['date']}, load {when['load_average_at_start']:.1f} at start)"
                                  if when else "") + " (2 IID sites × 30,000 rows, 20 rounds, δ = 1e-5 per site, in simulation; "
             "sampling rate 0.04, 50 steps per round, clip 1, step size 10/σ; ε under add-or-remove-one "
             "neighbours with each site's declared row count public, the hardened `local_train_dp`: integer-grid "
             "gradients, exact sum, rounded noise; see [docs/privacy.md](docs/privacy.md)):", "",
             "| ε per site | noise multiplier σ | global test accuracy | seconds per site-round |", "| --- | --- | --- | --- |"]
    for r in p["sweep"]:
        eps = "∞ (no DP, L-BFGS)" if r["epsilon"] is None else f"{r['epsilon']:g}"
        sigma = "-" if r["noise_multiplier"] is None else f"{r['noise_multiplier']:.3f}"
        lines.append(f"| {eps} | {sigma} | {r['final_global_test_accuracy']:.4f} | {r['seconds_per_site_round']:.3f} |")
    dp_acc, no_acc = ds["dp_epsilon_1"]["mean_round_seconds"], ds["no_dp"]["mean_round_seconds"]
    lines += ["", "| target | measured | |", "| --- | --- | --- |",
              f"| ε = 1 → global test accuracy ≥ 0.91 | {by_eps[1.0]['final_global_test_accuracy']:.4f} "
              f"| {ok(by_eps[1.0]['final_global_test_accuracy'] >= 0.91)} |",
              f"| ε = 8 → ≥ 0.922 | {by_eps[8.0]['final_global_test_accuracy']:.4f} "
              f"| {ok(by_eps[8.0]['final_global_test_accuracy'] >= 0.922)} |",
              f"| a private round costs ≤ 1.5× a non-private one on real datasites (`demo`, 5 rounds) "
              f"| {dp_acc:.2f} s vs {no_acc:.2f} s ({ds['ratio_dp_to_no_dp']:.2f}×) | {ok(ds['ratio_dp_to_no_dp'] <= 1.5)} |",
              f"| reconstruction attack on a 40-row site | no DP: {attack['no_dp']['rows_recovered']:.0%} of rows "
              f"and {attack['no_dp']['labels_recovered']:.0%} of labels from {attack['no_dp']['calls']} calls; "
              f"DP (budget ε = 10): {attack['dp_budget_10']['rows_recovered']:.0%} of rows, "
              f"{attack['dp_budget_10']['calls_served']} calls served, then refused | "
              f"{ok(attack['dp_budget_10']['rows_recovered'] == 0)} |"]
    member = attack.get("membership_overflow")
    if member:
        old_, new_ = member["before_hardening"], member["local_train_dp"]
        at_bound = member.get("local_train_dp_templates_at_bound", new_)
        lines.append(f"| float32-overflow membership attack, 40 members and 40 outsiders, one call each "
                     f"| before hardening: {old_['members_flagged']} members and {old_['outsiders_flagged']} "
                     f"outsiders flagged; now: {new_['members_flagged']} and {new_['outsiders_flagged']} (templates "
                     f"at the parameter bound: {at_bound['members_flagged']} and {at_bound['outsiders_flagged']}) "
                     f"| {ok(new_['members_flagged'] == 0 and at_bound['members_flagged'] == 0)} |")
    return lines


def heterogeneity_section(h: dict | None, flower: dict | None = None) -> list[str]:
    if not h:
        return []
    ok = lambda flag: "met" if flag else "**not met**"  # noqa: E731
    fmt = lambda v: "-" if v is None else str(v)  # noqa: E731
    lines = ["", "**Heterogeneity and scale** (`fedsyft simulate`; final accuracy on the 10,000 test images, the best "
             "round's, and the first round reaching 0.85 / 0.90):", ""]
    titles = {"dirichlet_0.1_10_sites_20_rounds": "Dirichlet α = 0.1, 10 sites, 20 rounds",
              "pathological_100x2_shards_of_300_10_per_round": "McMahan's pathological split: 100 clients × 2 shards "
                                                                "of 300, 10 per round, 100 rounds",
              "fedprox_powerlaw_1000_devices_10_per_round_100_rounds": "FedProx's MNIST set-up: 1,000 power-law "
                                                                        "devices, 2 digits each, 10 per round, 100 rounds"}
    for key, title in titles.items():
        rows = h.get(key, [])
        lines += ["", f"*{title}*", "", "| strategy and settings | final | best | rounds to 0.85 | rounds to 0.90 | wall s |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            lines.append(f"| `{r['variant']}` | {r['final_global_test_accuracy']:.4f} | {r['best']:.4f} "
                         f"| {fmt(r['rounds_to_0.85'])} | {fmt(r['rounds_to_0.90'])} | {r['wall_seconds']:.1f} |")
    dirichlet = max(r["final_global_test_accuracy"] for r in h["dirichlet_0.1_10_sites_20_rounds"])
    powerlaw_rows = h["fedprox_powerlaw_1000_devices_10_per_round_100_rounds"]
    seeds = h.get("powerlaw_best_other_seeds", [])  # the setting chosen for the target, at other seeds
    best = next((r for r in powerlaw_rows if seeds and r["variant"] == seeds[0]["variant"]),
                max(powerlaw_rows, key=lambda r: r["final_global_test_accuracy"]))
    seeds = [r for r in seeds if r["variant"] == best["variant"]]
    powerlaw_finals = [best["final_global_test_accuracy"], *(r["final_global_test_accuracy"] for r in seeds)]
    powerlaw = (f"`{best['variant']}`: {best['final_global_test_accuracy']:.4f}"
                + (f" (seed 0); seeds {', '.join(str(r['seed']) for r in seeds)}: "
                   f"{', '.join(format(r['final_global_test_accuracy'], '.4f') for r in seeds)}" if seeds else ""))
    t = h["timing"]

    def secs(row: dict) -> str:  # the median run, with every run's time when repeated
        runs = row.get("wall_seconds_of_each_run")
        return (f"{row['wall_seconds']:.1f} s" + (f" (median of {', '.join(f'{x:.1f}' for x in runs)})"
                                                   if runs and len(runs) > 1 else ""))

    lines += ["", "| target | measured | |", "| --- | --- | --- |",
              f"| Dirichlet α = 0.1, 10 sites, 20 rounds: ≥ 0.91 with the best strategy (FedAvg: 0.810) | {dirichlet:.4f} "
              f"| {ok(dirichlet >= 0.91)} |",
              f"| FedProx's set-up: ≥ 0.90 (Flower's baseline plot: about 0.85 FedProx, 0.83 FedAvg) | "
              f"{powerlaw} | {ok(min(powerlaw_finals) >= 0.90)} |",
              f"| `simulate --sites 1000 --partition powerlaw --clients-per-round 10 --rounds 100`, outputs included: "
              f"about 20 s (half of Flower's 39.3 s) "
              f"| {secs(t['powerlaw_1000_devices_10_per_round_100_rounds'])} "
              f"| {ok(t['powerlaw_1000_devices_10_per_round_100_rounds']['wall_seconds'] <= 20)} |",
              f"| `simulate --sites 100 --rounds 20` (all every round) under 30 s "
              f"| {secs(t['iid_100_sites_all_every_round_20_rounds'])} "
              f"| {ok(t['iid_100_sites_all_every_round_20_rounds']['wall_seconds'] < 30)} |",
              f"| `simulate --sites 10000 --clients-per-round 10 --rounds 5` runs "
              f"| {secs(t['iid_10000_sites_10_per_round_5_rounds'])} "
              f"| {ok(t['iid_10000_sites_10_per_round_5_rounds']['final_global_test_accuracy'] is not None)} |"]
    if flower:  # benchmarks/flower_side_by_side.py --output, merged into results.json by hand
        f, r = flower["fedsyft"], flower["flower"]
        ratio = flower["ratio_fedsyft_over_flower"]["wall_seconds"]
        lines.append(
            f"| the same task against Flower {r['version']} in one run (`benchmarks/flower_side_by_side.py`, "
            f"{flower['date']}: same partition and model, server evaluation every round): at most half of Flower's time "
            f"| fedsyft {f['wall_seconds']:.1f} s, {f['peak_tree_pss_mb']} MB; Flower {r['wall_seconds']:.1f} s, "
            f"{r['peak_tree_pss_mb']} MB: {ratio:.2f}× the time | {ok(ratio <= 0.5)} |")
    return lines


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
