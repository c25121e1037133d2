"""One self-contained HTML page describing a run, drawn from its :class:`~fedsyft.history.History` alone.

The page is rendered from the template ``templates/report.html.j2`` with autoescaping, so
every site name, setting and failure reason shows as text. It inlines its figures as
base64 PNG and its CSS, and loads nothing from the network, so it can be mailed or
archived and still open years later.

This module reduces the history to what the page shows (the view); the template lays it
out, and a few filters (:func:`num`, :func:`count`, :func:`brief`, :func:`setting`) format
the values.
"""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .history import History, RoundRecord, SiteRound

REPORT_FILE = "report.html"
TEMPLATE = "report.html.j2"  # in fedsyft/templates/
SITE_TABLE_MAX = 50  # above this many sites, per-site tables give way to the worst and best few
RANKED_SITES = 5     # how many worst and best sites those summaries list
LIST_MAX = 10        # names shown before a long list is cut short ("... (1,000 in all)")
FAILURES_MAX = 20    # failures listed one by one; beyond, grouped by round and reason

# Settings of the run's config that the configuration table never lists: shown in their
# own sections (label counts, the privacy mechanism) or folded into another row.
_SHOWN_ELSEWHERE = {"label_counts", "privacy", "strategy_settings", "partition_settings", "site_count"}
_STRATEGY_KEYS = ("strategy", "mu", "server_lr", "server_momentum", "beta1", "beta2", "tau", "clients_per_round",
                  "ema", "weighted")
_DP_KEYS = ("epsilon", "delta", "sample_rate", "dp_steps", "clip", "dp_lr", "site_rows")
_LOCAL_TRAIN_KEYS = ("local_iters", "test_fraction")  # local_train's only: local_train_dp has neither
_GROUPS = (  # (heading, config keys in the order shown); keys of no group are listed last, as recorded
    ("run", ("sites", "site_kind", "rounds", "seed")),
    ("data", ("partition", "data_file", "label", "test_file", "data_dir", "test_data_dir", "schema", "features")),
    ("strategy", _STRATEGY_KEYS),
    ("training on the sites", ("local_iters", "l2", "test_fraction", "center", *_DP_KEYS)),
)


# -- filters ------------------------------------------------------------------------------------------------------

def num(value: Any, spec: str = ".4f") -> str:
    """A number formatted with ``spec``, or ``n/a`` for None/NaN (NaN is written to metrics.json as null)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    try:
        return format(value, spec)
    except (TypeError, ValueError):  # not a number after all: show it as text
        return str(value)


def count(value: Any) -> str:
    """A count with thousands separators ("66,380"); ``n/a`` when missing."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value):
        value = int(round(float(value)))
    return num(value, ",")


def brief(values: Any) -> str:
    """A list shown whole when short, else its first :data:`LIST_MAX` items and its length."""
    if not isinstance(values, (list, tuple)):
        return str(values)
    shown = ", ".join(str(v) for v in values[:LIST_MAX])
    return shown if len(values) <= LIST_MAX else f"{shown}, … ({len(values):,} in all)"


def setting(value: Any) -> str:
    """A configuration value kept to a line: numbers as written (1e-05), lists and mappings summarised."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return num(value, "g")
    if isinstance(value, (list, tuple)):
        return brief(value)
    if isinstance(value, dict):
        if len(value) > LIST_MAX:
            return f"{len(value):,} entries"
        return ", ".join(f"{k} {setting(v)}" for k, v in value.items())
    return str(value)


# -- the view -----------------------------------------------------------------------------------------------------

@dataclass
class Setting:
    """One row of the configuration table: the config key, its value, and what it means (optional)."""

    key: str
    value: Any
    note: str = ""


@dataclass
class SettingGroup:
    heading: str
    settings: list[Setting] = field(default_factory=list)


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, (list, tuple, dict, str)) and not value)


def settings_in_effect(config: dict[str, Any]) -> list[SettingGroup]:
    """The settings a run used, grouped, for the report's configuration table.

    Values left unset (None, empty) are left out, and so are settings that did not apply:
    the DP settings of a non-private run, ``local_train``'s own settings in a private one,
    and strategy options of other strategies (a strategy's recorded ``strategy_settings``
    hold its options in effect, defaults included). The label counts and the privacy
    mechanism have their own sections. Keys of no known group (e.g. added by a newer
    fedsyft) are listed last, as recorded, when set.

    Parameters
    ----------
    config : dict
        ``History.config`` (``metrics.json``'s ``"config"``).

    Returns
    -------
    list of SettingGroup
        Non-empty groups in display order.
    """
    private = config.get("epsilon") is not None or bool(config.get("privacy"))
    values: dict[str, Setting] = {k: Setting(k, v) for k, v in config.items()
                                  if k not in _SHOWN_ELSEWHERE and not _unset(v)}

    # The strategy: its recorded settings are the ones in effect; older runs have only the raw fields.
    recorded = config.get("strategy_settings")
    for k in _STRATEGY_KEYS:
        values.pop(k, None)
    if isinstance(recorded, dict) or "strategy" in config:
        from .strategies import strategy_label

        strategy = dict(recorded) if isinstance(recorded, dict) else \
            {k: config[k] for k in _STRATEGY_KEYS if not _unset(config.get(k))}
        name = strategy.pop("strategy", None) or config.get("strategy") or "fedavg"
        ema = strategy.pop("ema", None)  # part of the label: "FedAdam + EMA 0.9"
        values["strategy"] = Setting("strategy", strategy_label({"strategy": name, "ema": ema}))
        weighted = strategy.pop("weighted", None)
        if weighted is not None:
            values["weighted"] = Setting("weighted", weighted,
                                         "each site by its n_train" if weighted else "a plain mean over sites")
        clients = strategy.pop("clients_per_round", None)
        if clients is not None:
            values["clients_per_round"] = Setting("clients_per_round", clients, "of the sites, sampled each round"
                                                  if isinstance(clients, float) and clients < 1 else
                                                  "sites sampled each round")
        for k, v in strategy.items():  # the options this strategy takes, as it used them
            if not _unset(v):
                values[k] = Setting(k, v)

    if "partition" in values:
        values["partition"].value = str(values["partition"].value)
        options = config.get("partition_settings")
        if isinstance(options, dict) and options:
            values["partition"].note = setting(options)
    schema = config.get("schema")
    if isinstance(schema, dict) and "schema" in values:
        features, classes = schema.get("features") or [], schema.get("classes") or []
        values["schema"] = Setting("schema", f"{len(features):,} features, {len(classes):,} classes",
                                   str(schema.get("name") or ""))
    features = config.get("features")
    if isinstance(features, dict) and "features" in values:
        from .features import FeatureMap

        fm = FeatureMap.from_dict(features)
        detail = ", ".join(f"{k}={v}" for k, v in features.items() if k != "name")
        values["features"] = Setting("features", fm.name, f"{detail}: {fm.output_width():,} public features per image "
                                                          "(data-independent, no privacy cost)")
    if private:
        for k in _LOCAL_TRAIN_KEYS:
            values.pop(k, None)
        for k in ("sample_rate", "dp_steps", "clip", "dp_lr"):  # in effect: the Privacy section's mechanism
            values.pop(k, None)
        if "epsilon" in values:
            values["epsilon"].note = "per site, this run; the mechanism is under Privacy"
        if "site_rows" in values:
            values["site_rows"].value = count(values["site_rows"].value)
            values["site_rows"].note = "smallest site's declared rows: sets the default sampling"
    else:
        for k in _DP_KEYS:
            values.pop(k, None)
    if "l2" in values:
        values["l2"].note = "per mean sample loss, on every site"

    groups = [SettingGroup(heading, [values.pop(k) for k in keys if k in values]) for heading, keys in _GROUPS]
    groups.append(SettingGroup("other", list(values.values())))
    return [g for g in groups if g.settings]


def _figure(name: str, history: History) -> str | None:
    """One of the run's figures as a base64 PNG data URI, or None when there is nothing to draw."""
    png = plots.figure_png(name, history)  # the PNG write_plots wrote, if it ran: rendered once
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _acc_range(acc: np.ndarray) -> list[float | None]:
    """min / median / max of local accuracies, None (n/a) when none were reported."""
    if not acc.size:
        return [None] * 3
    return [float(acc.min()), float(np.median(acc)), float(acc.max())]


def _summary_rows(rounds: list[RoundRecord]) -> list[dict[str, Any]]:
    """One row per round whatever the number of sites: counts, accuracy spread and traffic over sites."""
    return [{"record": r, "answered": len(r.sites), "failed": len(r.failures),
             "acc": _acc_range(plots.local_accuracies(r)),
             "sent": sum(s.bytes_sent or 0 for s in r.sites.values()),
             "received": sum(s.bytes_received or 0 for s in r.sites.values())} for r in rounds]


def _last_round(last: RoundRecord, sites: list[str]) -> dict[str, Any]:
    """The last round per site (up to :data:`SITE_TABLE_MAX` sites), else its worst and best sites."""
    ranked = sorted(((a, n) for n, s in last.sites.items() if math.isfinite(a := plots.metric(s.test_accuracy))))
    view: dict[str, Any] = {"record": last, "answered": len(last.sites), "failed": len(last.failures),
                            "withheld": len(last.sites) - len(ranked),
                            "absent": max(0, len(sites) - len(last.sites) - len(last.failures)),
                            "per_site": len(sites) <= SITE_TABLE_MAX, "ranked": bool(ranked), "rows": []}
    if view["per_site"]:
        for s in sites:
            if s in last.sites:
                status = "answered"
            elif s in last.failures:
                status = "failed: " + str(last.failures[s])[:80]
            else:
                status = "not sampled"
            view["rows"].append((s, status, last.sites.get(s)))
    elif len(ranked) <= 2 * RANKED_SITES:  # worst and best would overlap: list them all, worst first
        ends = {0: " (worst)", len(ranked) - 1: " (best)"}
        view["rows"] = [(n, f"{i + 1} of {len(ranked)}{ends.get(i, '')}", last.sites[n])
                        for i, (_, n) in enumerate(ranked)]
    else:
        view["rows"] = ([(n, f"worst {i + 1}", last.sites[n]) for i, (_, n) in enumerate(ranked[:RANKED_SITES])]
                        + [(n, f"best {i + 1}", last.sites[n])
                           for i, (_, n) in enumerate(reversed(ranked[-RANKED_SITES:]))])
    return view


def _failures(rounds: list[RoundRecord]) -> dict[str, Any] | None:
    """Which sites did not answer and why; grouped by round and reason when there are many."""
    total = sum(len(r.failures) for r in rounds)
    if not total:
        return None
    if total <= FAILURES_MAX:
        items = [(r.round, None, s, str(why)) for r in rounds for s, why in r.failures.items()]
    else:
        items = []
        for r in rounds:
            by_reason: dict[str, list[str]] = {}
            for s, why in r.failures.items():
                by_reason.setdefault(str(why), []).append(s)
            items += [(r.round, len(names), names, why[:200]) for why, names in by_reason.items()]
    more = max(0, len(items) - FAILURES_MAX)  # reasons that name the site do not group: cut the list short
    return {"total": total, "items": items[:FAILURES_MAX], "more": more}


def _traffic(rounds: list[RoundRecord], sites: list[str]) -> list[tuple[str, float, float]]:
    """Bytes from and to each site over the run; summarised over sites when there are many."""
    received = dict.fromkeys(sites, 0)
    sent = dict.fromkeys(sites, 0)
    for r in rounds:
        for s, sr in r.sites.items():
            received[s] += sr.bytes_received or 0
            sent[s] += sr.bytes_sent or 0
    if len(sites) <= SITE_TABLE_MAX:
        return [(s, received[s], sent[s]) for s in sites]
    rec, snt = np.array(list(received.values())), np.array(list(sent.values()))
    rows = [(f"all {len(sites):,} sites", rec.sum(), snt.sum())]
    return rows + [(f"per site, {name}", f(rec), f(snt))
                   for name, f in (("min", np.min), ("median", np.median), ("max", np.max))]


def _partition(history: History) -> dict[str, Any] | None:
    """The "Data partition" section: sites, classes, labelled examples and the label skew."""
    counts = plots.label_counts(history)
    if not counts:
        return None
    _, matrix = plots.label_matrix(counts)
    n, k = matrix.shape
    return {"sites": n, "classes": k, "examples": matrix.sum(), "skew": plots.label_skew(matrix) if n and k
            else math.nan, "max_skew": 1 - 1 / k if k else None, "figure": _figure(plots.LABEL_HISTOGRAM_PNG, history)}


def _model_size(history: History) -> dict[str, int]:
    """What one copy of the model is: its shapes and bytes (MNIST's, or the run's schema's)."""
    schema = history.config.get("schema")
    k, d = (len(schema["classes"]), len(schema["features"])) if schema else (10, 784)
    return {"classes": k, "features": d, "bytes": (k * d + k) * 4}


def _ledgers(rounds: list[RoundRecord]) -> list[tuple[str, SiteRound, float | None]]:
    """Per site, its last ledger report (the last round it answered with one) and the ε it has left."""
    latest: dict[str, SiteRound] = {}
    for r in rounds:
        latest.update({n: s for n, s in r.sites.items() if s.epsilon_spent is not None})
    return [(n, s, None if s.epsilon_budget is None else max(0.0, s.epsilon_budget - s.epsilon_spent))
            for n, s in latest.items()]


def _view(history: History, run_name: str) -> dict[str, Any]:
    """Everything the template shows, reduced from the history."""
    sites, rounds = plots.site_names(history), history.rounds
    privacy = history.config.get("privacy") or None
    ledgers = _ledgers(rounds) if privacy else []
    many = len(sites) > plots.MANY_SITES
    return {
        "run_name": run_name,
        "sites": sites,
        "rounds": rounds,
        "last": rounds[-1] if rounds else None,
        "strategy": plots.strategy_label(history),
        "final_accuracy": history.final_accuracy,
        "accuracy_figure": _figure(plots.ACCURACY_PNG, history),
        "confusion_figure": _figure(plots.CONFUSION_PNG, history),
        "withheld_note": plots.withheld_note(history) if rounds else "",
        "many_sites": many,
        "summary_rows": _summary_rows(rounds) if many else [],
        "last_round": _last_round(rounds[-1], sites) if many and rounds else None,
        "failures": _failures(rounds),
        "settings": settings_in_effect(history.config),
        "partition": _partition(history),
        "privacy": privacy,
        "ledgers": ledgers[:SITE_TABLE_MAX],
        "ledgers_more": max(0, len(ledgers) - SITE_TABLE_MAX),
        "model": _model_size(history),
        "traffic": _traffic(rounds, sites) if rounds else [],
        "timings": history.timings,
        "withheld_all_note": plots.WITHHELD_NOTE,
        "ranked_sites": RANKED_SITES,
    }


@functools.cache
def _environment():
    """The jinja2 environment: autoescaping on, undefined names an error, the template from the package."""
    import jinja2

    def load(name: str) -> str:
        return (resources.files("fedsyft") / "templates" / name).read_text(encoding="utf-8")

    env = jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=num, count=count, brief=brief, setting=setting)
    return env


def render_report(history: History, run_name: str = "") -> str:
    """The report of a run as HTML text (what :func:`write_report` writes).

    Parameters
    ----------
    history : History
        The run's configuration and finished rounds.
    run_name : str
        Shown under the title; usually the run directory's name.

    Returns
    -------
    str
        A complete, self-contained HTML page.
    """
    return _environment().get_template(TEMPLATE).render(_view(history, run_name))


def write_report(history: History, run_dir: Path) -> Path:
    """Write ``report.html`` for a run into ``run_dir``.

    The page leads with what a reader comes for (the final accuracy, the accuracy figure,
    the per-round table), then the configuration in effect, the data partition, privacy
    and traffic. Tables and figures stay readable whatever the number of sites: above
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
    path = run_dir / REPORT_FILE
    path.write_text(render_report(history, run_dir.name), encoding="utf-8")
    return path
