"""One self-contained HTML page describing a run, drawn from its :class:`~fedsyft.history.History` alone.

The page inlines its figures as base64 PNG and its CSS, and loads nothing from the
network, so it can be mailed or archived and still open years later.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .history import History, RoundRecord, SiteRound

REPORT_FILE = "report.html"
SITE_TABLE_MAX = 50  # above this many sites, per-site tables give way to the worst and best few
RANKED_SITES = 5     # how many worst and best sites those summaries list
LIST_MAX = 10        # names shown before a long list is cut short ("... (1,000 in all)")
FAILURES_MAX = 20    # failures listed one by one; beyond, grouped by round and reason

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 70rem; margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.n:first-child { text-align: left; } .wide { overflow-x: auto; }
img { max-width: 100%; height: auto; } .muted { color: #777; } .note { color: #a33; }
h3 { font-size: 1rem; margin-bottom: .2rem; }
"""


def _num(value: Any, spec: str = ".4f") -> str:
    """Format a number, or ``n/a`` for None/NaN (NaN is written to metrics.json as null)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    try:
        return escape(format(value, spec))
    except (TypeError, ValueError):  # not a number after all: show it as text
        return escape(str(value))


def _text(value: Any) -> str:
    """Escape a user-supplied value; lists (e.g. site names) are joined with commas."""
    if isinstance(value, (list, tuple)):
        return escape(", ".join(str(v) for v in value))
    return escape(str(value))


def _row(cells: list[str], tag: str = "td", numeric: bool = False) -> str:
    """One table row of already-escaped cells; numeric rows are right-aligned after the first cell."""
    cls = ' class="n"' if numeric else ""
    return "<tr>" + "".join(f"<{tag}{cls}>{c}</{tag}>" for c in cells) + "</tr>"


def _table(header: list[str], rows: list[list[str]], extra_header: str = "", numeric: bool = True) -> str:
    """A table of already-escaped cells, scrolling sideways when there are many sites."""
    body = "".join(_row(r, numeric=numeric) for r in rows)
    return (f'<div class="wide"><table>\n<thead>{extra_header}{_row(header, "th")}</thead>\n'
            f"<tbody>{body}</tbody>\n</table></div>")


def _img(name: str, history: History, alt: str) -> str:
    """An <img> of one of the run's figures, inlined as a base64 PNG data URI."""
    png = plots.figure_png(name, history)  # the PNG write_plots wrote, if it ran: rendered once
    if png is None:
        return ""
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _brief(values: list | tuple) -> str:
    """A list shown whole when short, else its first :data:`LIST_MAX` items and its length."""
    if len(values) <= LIST_MAX:
        return _text(values)
    return _text(list(values[:LIST_MAX])) + f", &hellip; ({len(values):,} in all)"


def _config_value(key: str, value: Any) -> str:
    """A configuration value, kept to a line: long lists and mappings are summarised."""
    if key == "label_counts" and isinstance(value, dict):
        return f"per-class label counts of {len(value):,} site(s) (see Data partition)"
    if isinstance(value, (list, tuple)):
        return _brief(value)
    if isinstance(value, dict) and len(value) > LIST_MAX:
        return f"{len(value):,} entries"
    return _text(value)


def _acc_range(acc: np.ndarray) -> list[str]:
    """min / median / max cells of local accuracies, n/a when none were reported."""
    if not acc.size:
        return ["n/a"] * 3
    return [_num(float(acc.min())), _num(float(np.median(acc))), _num(float(acc.max()))]


def _per_site_rounds_table(rounds: list[RoundRecord], sites: list[str]) -> str:
    """One row per round, four columns per site: readable up to :data:`plots.MANY_SITES` sites."""
    group = "".join(f'<th colspan="4">{escape(s)}</th>' for s in sites)
    extra = f'<tr><th colspan="3">global model</th>{group}<th></th></tr>'
    per_site = ["train acc.", "test acc.", "bytes to site", "bytes from site"]
    header = ["round", "test acc.", "test loss", *per_site * len(sites), "seconds"]
    rows = []
    for r in rounds:
        cells = [str(r.round), _num(r.global_.test_accuracy), _num(r.global_.test_loss)]
        for s in sites:
            sr = r.sites.get(s)  # a site that failed, or was not sampled, this round has no record
            cells += ([_num(sr.train_accuracy), _num(sr.test_accuracy), _num(sr.bytes_sent, ","),
                       _num(sr.bytes_received, ",")] if sr else ["n/a"] * 4)
        rows.append(cells + [_num(r.seconds, ".1f")])
    return _table(header, rows, extra)


def _summary_rounds_table(rounds: list[RoundRecord]) -> str:
    """One row per round whatever the number of sites: counts, accuracy spread and traffic over sites."""
    extra = ('<tr><th></th><th colspan="2">global model</th><th colspan="2">sites</th>'
             '<th colspan="3">local test acc. over sites</th><th colspan="2">bytes, all sites</th><th></th></tr>')
    header = ["round", "test acc.", "test loss", "answered", "failed", "min", "median", "max",
              "to sites", "from sites", "seconds"]
    rows = []
    for r in rounds:
        sent = sum(s.bytes_sent or 0 for s in r.sites.values())
        received = sum(s.bytes_received or 0 for s in r.sites.values())
        rows.append([str(r.round), _num(r.global_.test_accuracy), _num(r.global_.test_loss),
                     _num(len(r.sites), ","), _num(len(r.failures), ","), *_acc_range(plots.local_accuracies(r)),
                     _num(sent, ","), _num(received, ","), _num(r.seconds, ".1f")])
    return _table(header, rows, extra)


_SITE_HEADER = ["n_train", "train acc.", "test acc.", "test loss", "bytes to site", "bytes from site", "seconds"]


def _site_cells(sr: SiteRound | None) -> list[str]:
    if sr is None:
        return ["n/a"] * len(_SITE_HEADER)
    return [_num(sr.n_train, ","), _num(sr.train_accuracy), _num(sr.test_accuracy), _num(sr.test_loss),
            _num(sr.bytes_sent, ","), _num(sr.bytes_received, ","), _num(sr.seconds, ".1f")]


def _last_round_sites(last: RoundRecord, sites: list[str]) -> str:
    """The last round per site (up to :data:`SITE_TABLE_MAX` sites), else its worst and best sites."""
    absent = len(sites) - len(last.sites) - len(last.failures)
    ranked = sorted(((a, n) for n, s in last.sites.items() if math.isfinite(a := plots.metric(s.test_accuracy))))
    withheld = len(last.sites) - len(ranked)
    counts = (f"<p>{len(last.sites):,} site(s) answered"
              + (f" ({withheld:,} of them withheld their local metrics)" if withheld else "")
              + f", {len(last.failures):,} failed" + (f", {absent:,} were not sampled" if absent > 0 else "") + ".</p>")
    if len(sites) <= SITE_TABLE_MAX:
        rows = []
        for s in sites:
            if s in last.sites:
                status = "answered"
            elif s in last.failures:
                status = "failed: " + escape(str(last.failures[s])[:80])
            else:
                status = "not sampled"
            rows.append([escape(s), status, *_site_cells(last.sites.get(s))])
        return (f"<h3>Last round (round {last.round}), per site</h3>\n{counts}\n"
                + _table(["site", "status", *_SITE_HEADER], rows))
    heading = f"<h3>Last round (round {last.round}): the {RANKED_SITES} worst and {RANKED_SITES} best sites</h3>"
    if not ranked:
        return (f"{heading}\n{counts}\n<p class=\"note\">The sites cannot be ranked: "
                f"{escape(plots.WITHHELD_NOTE)}.</p>")
    if len(ranked) <= 2 * RANKED_SITES:  # worst and best would overlap: list them all, worst first
        ends = {0: " (worst)", len(ranked) - 1: " (best)"}
        picked = [(f"{i + 1} of {len(ranked)}{ends.get(i, '')}", n) for i, (_, n) in enumerate(ranked)]
    else:
        picked = ([(f"worst {i + 1}", n) for i, (_, n) in enumerate(ranked[:RANKED_SITES])]
                  + [(f"best {i + 1}", n) for i, (_, n) in enumerate(reversed(ranked[-RANKED_SITES:]))])
    rows = [[escape(n), rank, *_site_cells(last.sites[n])] for rank, n in picked]
    return f"{heading}\n{counts}\n" + _table(["site", "rank by test acc.", *_SITE_HEADER], rows)


def _failures(rounds: list[RoundRecord]) -> str:
    """Which sites did not answer and why; grouped by round and reason when there are many."""
    total = sum(len(r.failures) for r in rounds)
    if not total:
        return ""
    if total <= FAILURES_MAX:
        items = [f"<li>round {r.round}: {escape(s)}: {escape(str(why))}</li>"
                 for r in rounds for s, why in r.failures.items()]
    else:
        items = []
        for r in rounds:
            by_reason: dict[str, list[str]] = {}
            for s, why in r.failures.items():
                by_reason.setdefault(str(why), []).append(s)
            items += [f"<li>round {r.round}: {len(names):,} site(s) ({_brief(names)}): {escape(why[:200])}</li>"
                      for why, names in by_reason.items()]
        if len(items) > FAILURES_MAX:  # reasons that name the site do not group: cut the list short
            items = items[:FAILURES_MAX] + [f"<li>&hellip; and {len(items) - FAILURES_MAX:,} more</li>"]
    return f"<p>Sites that did not answer ({total:,} in all):</p><ul>" + "".join(items) + "</ul>"


def _traffic(rounds: list[RoundRecord], sites: list[str]) -> str:
    """Bytes to and from each site over the run; summarised over sites when there are many."""
    received = dict.fromkeys(sites, 0)
    sent = dict.fromkeys(sites, 0)
    for r in rounds:
        for s, sr in r.sites.items():
            received[s] += sr.bytes_received or 0
            sent[s] += sr.bytes_sent or 0
    header = ["site", "bytes received from site", "bytes sent to site"]
    if len(sites) <= SITE_TABLE_MAX:
        return _table(header, [[escape(s), _num(received[s], ","), _num(sent[s], ",")] for s in sites])
    rec, snt = np.array(list(received.values())), np.array(list(sent.values()))
    rows = [[f"all {len(sites):,} sites", _num(int(rec.sum()), ","), _num(int(snt.sum()), ",")]]
    rows += [[f"per site, {name}", _num(int(f(rec)), ","), _num(int(f(snt)), ",")]
             for name, f in (("min", np.min), ("median", np.median), ("max", np.max))]
    return _table(header, rows)


def _partition(history: History, counts: dict[str, Any]) -> list[str]:
    """The "Data partition" section: the label skew and the label histogram."""
    _, matrix = plots.label_matrix(counts)
    n, k = matrix.shape
    skew = plots.label_skew(matrix) if n and k else math.nan
    top = f"1 &minus; 1/{k} = {_num(1 - 1 / k, '.3f')}" if k else "1 &minus; 1/K"
    return ["<h2>Data partition</h2>",
            f"<p>{n:,} site(s), {k} classes, {_num(int(matrix.sum()), ',')} labelled training examples. "
            f"Label skew: <b>{_num(skew, '.3f')}</b>, the mean total-variation distance between each site's "
            f"label distribution and the pooled one (0: every site has the pooled label mix, as in an IID split; "
            f"{top} when each site holds a single class).</p>",
            _img(plots.LABEL_HISTOGRAM_PNG, history, "labels per site")]


def _model_text(history: History) -> str:
    """What one copy of the model is: its shapes and bytes (MNIST's, or the run's schema's)."""
    schema = history.config.get("schema")
    k, d = (len(schema["classes"]), len(schema["features"])) if schema else (10, 784)
    return (f"<code>coef</code> {k}&times;{d} and <code>intercept</code> {k}, float32: "
            f"{(k * d + k) * 4:,} bytes")


def _privacy_section(privacy: dict, rounds: list[RoundRecord]) -> list[str]:
    """The run's DP mechanism and, per site, what its ledger says was spent (from the last round it answered)."""
    mechanism = [["target ε per site (this run)", _num(privacy.get("epsilon"), "g")],
                 ["δ", _num(privacy.get("delta"), "g")],
                 ["noise multiplier σ", _num(privacy.get("noise_multiplier"), ".4f")],
                 ["clip norm C", _num(privacy.get("clip"), "g")],
                 ["sampling rate q (Poisson)", _num(privacy.get("sample_rate"), "g")],
                 ["steps per round", _num(privacy.get("steps_per_round"), "d")],
                 ["rounds planned", _num(privacy.get("rounds"), "d")],
                 ["step size", _num(privacy.get("lr"), "g") + (" (auto)" if privacy.get("lr_auto") else "")],
                 ["accountant", _text(privacy.get("accountant", ""))]]
    latest: dict[str, SiteRound] = {}
    for r in rounds:
        latest.update({n: s for n, s in r.sites.items() if s.epsilon_spent is not None})
    rows = [[escape(n), _num(s.epsilon_budget, "g"), _num(s.epsilon_spent, ".3f"),
             _num(max(0.0, s.epsilon_budget - s.epsilon_spent), ".3f"), _num(s.delta, "g")]
            for n, s in list(latest.items())[:SITE_TABLE_MAX]]
    more = (f"<p class=\"muted\">{len(latest) - SITE_TABLE_MAX:,} more sites not listed.</p>"
            if len(latest) > SITE_TABLE_MAX else "")
    return ["<h2>Privacy</h2>",
            "<p>Record-level (ε, δ)-differential privacy of everything each site released, for neighbouring "
            "data sets that differ by adding or removing one record: DP-SGD on the site (Poisson sampling, "
            "per-example clipping on an integer grid, an exact integer sum, Gaussian noise rounded to the grid), "
            "accounted by the site's own ledger over every call it ever served, by any account. Public: the "
            "schema, the mechanism's settings and each site's declared row count (<code>n_train</code>), never "
            "its exact count. Spent ε below is the site's total, as its ledger reported it, which includes other "
            "runs on the same data.</p>",
            _table(["mechanism", "value"], mechanism, numeric=False),
            _table(["site", "budget ε", "spent ε", "remaining ε", "δ"], rows) + more if rows else
            "<p>No site reported its ledger.</p>"]


def write_report(history: History, run_dir: Path) -> Path:
    """Write ``report.html`` for a run into ``run_dir``.

    Tables and figures stay readable whatever the number of sites: above
    :data:`plots.MANY_SITES` sites the rounds are summarised over sites, and above
    :data:`SITE_TABLE_MAX` only the worst and best sites are listed.

    Parameters
    ----------
    history : History
        The run's configuration and finished rounds, e.g. ``History.load(run_dir)``.
    run_dir : Path
        Directory to write into; created if missing.

    Returns
    -------
    Path
        The written ``run_dir / "report.html"``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    sites, rounds = plots.site_names(history), history.rounds
    parts = [f"<h1>fedsyft run report</h1>\n<p class=\"muted\">{escape(run_dir.name)}</p>"]

    if rounds:
        parts.append(f"<p>{len(rounds)} round(s) of {escape(plots.strategy_label(history))} completed over "
                     f"{len(sites):,} site(s) "
                     f"({_brief(sites)}). Final global test accuracy: <b>{_num(history.final_accuracy)}</b> "
                     f"after round {rounds[-1].round}.</p>")
    else:
        parts.append("<p>No rounds finished in this run, so there is no accuracy to report.</p>")

    parts += ["<h2>Configuration</h2>",
              _table(["setting", "value"], [[_text(k), _config_value(k, v)] for k, v in history.config.items()],
                     numeric=False)]

    counts = plots.label_counts(history)
    if counts:
        parts += _partition(history, counts)

    parts.append("<h2>Rounds</h2>")
    if rounds:
        note = plots.withheld_note(history)
        if note:
            parts.append(f'<p class="note">Note: {escape(note)}. Their accuracies and losses show as n/a, '
                         "and the figures leave them out.</p>")
        if len(sites) <= plots.MANY_SITES:
            parts.append(_per_site_rounds_table(rounds, sites))
        else:
            parts += [_summary_rounds_table(rounds), _last_round_sites(rounds[-1], sites)]
        parts.append(_failures(rounds))
        parts += ["<h2>Accuracy</h2>",
                  _img(plots.ACCURACY_PNG, history, "test accuracy per round"),
                  "<h2>Confusion matrices (last round)</h2>",
                  _img(plots.CONFUSION_PNG, history, "confusion matrices")]
    else:
        parts.append("<p>No rounds finished.</p>")

    privacy = history.config.get("privacy")
    if privacy:
        parts += _privacy_section(privacy, rounds)
        parts.append("<h2>What left each datasite</h2>\n<p>No images or labels left any datasite. Each round, "
                     f"only the noised model parameters ({_model_text(history)}, covered by the sites' differential "
                     "privacy) and "
                     "<code>n_train</code> (public by design) were sent back to the researcher, with each site's "
                     "ledger report. Local accuracies, losses, confusion matrices and timings were withheld.</p>")
    else:
        parts.append("<h2>What left each datasite</h2>\n<p>No images or labels left any datasite. Each round, "
                     f"only the model parameters ({_model_text(history)}) and aggregate metrics (<code>n_train</code>, "
                     "train and test "
                     "accuracies, losses and the confusion matrix of the local test split) were sent back to the "
                     "researcher, <b>without differential privacy</b>: from such outputs a researcher who chooses the "
                     "global parameters can reconstruct rows of a small data set.</p>")
    if rounds:
        parts.append(_traffic(rounds, sites))

    if history.timings:
        parts += ["<h2>Set-up timings</h2>",
                  _table(["step", "seconds"], [[_text(k), _num(v, ".2f")] for k, v in history.timings.items()])]

    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>fedsyft report: {escape(run_dir.name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(p for p in parts if p) + "\n</body>\n</html>\n")
    path = run_dir / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path
