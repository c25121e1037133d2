"""Figures of a run, drawn from its :class:`~fedsyft.history.History` alone.

Every figure stays the same size whatever the number of sites: above
:data:`MANY_SITES`, per-site lines and panels give way to distributions and to a
few representative sites, so a run of 10,000 sites draws as fast as one of 100.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .history import History, RoundRecord
from .partition import shard_skews, skew

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Figures are made with matplotlib's object API, not pyplot: no global backend is
# chosen or changed (so notebooks keep their inline display), and nothing is kept
# in pyplot's figure registry.


def _new_figure(figsize: tuple[float, float]) -> Figure:
    # matplotlib is imported with the first figure, not with fedsyft: it is a third
    # of a second of every command's start, and most commands draw nothing.
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)

ACCURACY_PNG = "accuracy.png"
CONFUSION_PNG = "confusion_matrices.png"
LABEL_HISTOGRAM_PNG = "label_histogram.png"

MANY_SITES = 10            # above this, sites are summarised (quantiles, heat map) instead of drawn one by one
CONFUSION_MAX_SITES = 3    # up to this many sites get a confusion matrix each; beyond, only the worst and best
HEATMAP_MAX_ROWS = 40      # sites shown in the label heat map; more would blur into sub-pixel rows
ANNOTATE_MAX_CLASSES = 20  # confusion matrices with more classes are drawn without per-cell numbers
WITHHELD_NOTE = "local metrics withheld by the sites (differential privacy)"
DPI = 120                  # for the PNG files and the report alike, so each figure is rendered once

# Each figure is split in two: a cheap step that reduces the history to the few
# numbers drawn (a hashable tuple, NaN stored as None so equal data compare equal),
# and the drawing. PNGs are cached on that tuple: write_plots and write_report
# then render each figure once, and a changed history can never hit a stale entry.


def strategy_label(history: History) -> str:
    """The run's strategy as people write it ("FedAvg" for runs that predate strategies; "DP ..." when private)."""
    from .strategies import strategy_label as label_of

    settings = history.config.get("strategy_settings") or {"strategy": history.config.get("strategy", "fedavg")}
    label = label_of(settings)
    return f"DP {label}" if history.config.get("privacy") else label


def metric(x: Any) -> float:
    """A reported metric as a float.

    Parameters
    ----------
    x : float, int or None
        As read from a :class:`~fedsyft.history.SiteRound` or ``metrics.json``.

    Returns
    -------
    float
        ``x``, or NaN when it is None (withheld, or NaN written as null), NaN or not a number.
    """
    try:
        x = float(x)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def site_names(history: History) -> list[str]:
    """Every site seen in any round (answered or failed), in order of first appearance.

    Parameters
    ----------
    history : History
        The run.

    Returns
    -------
    list of str
        Site names; sites never sampled in any round are unknown to the history and absent.
    """
    names: dict[str, None] = {}
    for r in history.rounds:
        names.update(dict.fromkeys(r.sites))
        names.update(dict.fromkeys(r.failures))
    return list(names)


def local_accuracies(record: RoundRecord) -> np.ndarray:
    """The finite local test accuracies of the sites that answered ``record``'s round.

    Parameters
    ----------
    record : RoundRecord
        One round.

    Returns
    -------
    numpy.ndarray
        One value per answering site that reported its accuracy (withheld ones are left out).
    """
    acc = np.fromiter((metric(s.test_accuracy) for s in record.sites.values()), float, len(record.sites))
    return acc[np.isfinite(acc)]


def withheld_note(history: History) -> str:
    """Say whether sites withheld their local metrics (e.g. under differential privacy).

    A site withholds when it answered at least once and never reported a finite local
    test accuracy.

    Parameters
    ----------
    history : History
        The run.

    Returns
    -------
    str
        ``""`` when every answering site reported; :data:`WITHHELD_NOTE` when all withheld;
        otherwise :data:`WITHHELD_NOTE` followed by how many of them did.
    """
    reported: dict[str, bool] = {}
    for r in history.rounds:
        for name, s in r.sites.items():
            reported[name] = reported.get(name, False) or math.isfinite(metric(s.test_accuracy))
    withheld = sum(not ok for ok in reported.values())
    if not withheld:
        return ""
    if withheld == len(reported):
        return WITHHELD_NOTE
    return f"{WITHHELD_NOTE}: {withheld} of {len(reported)} sites"


def _key(values: Any) -> tuple:
    """Floats as a hashable tuple, NaN as None (NaN != NaN would defeat the PNG cache)."""
    return tuple(None if not math.isfinite(v) else float(v) for v in np.asarray(values, dtype=float).ravel())


def _round_axis(ax, rounds: tuple[int, ...]) -> None:
    """Integer round ticks; every round labelled only while they stay legible."""
    if len(rounds) <= 20:
        ax.set_xticks(rounds)
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _footnote(fig: Figure, text: str) -> None:
    if text:
        fig.text(0.01, 0.01, text, fontsize=7.5, color="#a33", ha="left", va="bottom")


def _accuracy_data(history: History) -> tuple:
    rounds = tuple(r.round for r in history.rounds)
    glob = _key([metric(r.global_.test_accuracy) for r in history.rounds])
    names = site_names(history)
    lines: tuple = ()
    spread = None
    if len(names) <= MANY_SITES:
        for name in names:
            acc = [metric(r.sites[name].test_accuracy) if name in r.sites else math.nan for r in history.rounds]
            if np.isfinite(acc).any():  # a site that withheld every value would be an empty legend entry
                lines += ((name, _key(acc)),)
    else:
        stats = np.full((len(rounds), 4), np.nan)  # q10, median, q90, min
        for i, r in enumerate(history.rounds):
            acc = local_accuracies(r)
            if acc.size:
                stats[i] = [*np.quantile(acc, [0.1, 0.5, 0.9]), acc.min()]
        if np.isfinite(stats).any():
            spread = (max(len(r.sites) for r in history.rounds), *(_key(col) for col in stats.T))
    return rounds, glob, lines, spread, withheld_note(history), strategy_label(history)


def _draw_accuracy(rounds, glob, lines, spread, note, label="FedAvg") -> Figure:
    fig = _new_figure((6.4, 4.2 if note else 4.0))
    ax = fig.subplots()
    nan = functools.partial(np.array, dtype=float)  # None back to NaN: a gap in the line
    ax.plot(rounds, nan(glob), "o-", lw=2.5, color="black", label="global model (researcher's test set)", zorder=3)
    for name, acc in lines:
        ax.plot(rounds, nan(acc), "s--", alpha=0.8, label=f"{name} (local test split)")
    if spread:
        n, q10, median, q90, worst = spread
        ax.fill_between(rounds, nan(q10), nan(q90), color="tab:blue", alpha=0.2, lw=0,
                        label="sites, 10-90 % (local test split)")
        ax.plot(rounds, nan(median), "s--", color="tab:blue", label=f"sites, median (up to {n:,} per round)")
        ax.plot(rounds, nan(worst), "v:", color="tab:red", label="worst site")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    _round_axis(ax, rounds)
    ax.set_title(f"{label}: test accuracy per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    # Fixed margins instead of tight_layout: the same look without laying the figure out twice.
    fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.17 if note else 0.12)
    _footnote(fig, note)
    return fig


def accuracy_figure(history: History) -> Figure:
    """Global test accuracy per round, with the sites' local test accuracy.

    With at most :data:`MANY_SITES` sites each site gets its own line; with more, the
    per-round distribution over sites is drawn instead (median, 10-90 % band, worst
    site), so the legend stays short. Sites that withheld their metrics are left out
    and a note says so.

    Parameters
    ----------
    history : History
        The run; may have no rounds.

    Returns
    -------
    matplotlib.figure.Figure
    """
    return _draw_accuracy(*_accuracy_data(history))


def _cm_accuracy(cm: Any) -> float:
    """Accuracy from a confusion matrix (its trace over its sum)."""
    cm = np.asarray(cm, dtype=float)
    total = cm.sum()
    return float(np.trace(cm) / total) if cm.ndim == 2 and total > 0 else math.nan


def _cm_key(cm: Any) -> tuple:
    """A confusion matrix as a hashable tuple of int rows."""
    cm = np.rint(np.nan_to_num(np.atleast_2d(np.asarray(cm, dtype=float)))).astype(int)  # noised counts may be floats
    return tuple(tuple(int(v) for v in row) for row in cm)


def _confusion_data(history: History) -> tuple:
    last = history.rounds[-1]
    with_cm: list[tuple[str, Any, float]] = []
    for name, s in last.sites.items():
        if s.confusion_matrix is not None:
            acc = metric(s.test_accuracy)
            with_cm.append((name, s.confusion_matrix, acc if math.isfinite(acc) else _cm_accuracy(s.confusion_matrix)))
    if len(with_cm) <= CONFUSION_MAX_SITES:
        sites = [(f"{n}\n(local test)", cm) for n, cm, _ in with_cm]
    else:
        # Too many to show: the extremes tell most. Unrankable (NaN) sites are never "worst" or "best".
        ranked = sorted((t for t in with_cm if math.isfinite(t[2])), key=lambda t: t[2]) or with_cm
        (wn, wcm, wacc), (bn, bcm, bacc) = ranked[0], ranked[-1]
        sites = [(f"worst site: {wn}\n(local test acc. {wacc:.3f})", wcm),
                 (f"best site: {bn}\n(local test acc. {bacc:.3f})", bcm)]
    missing = len(last.sites) - len(with_cm)
    note = ""
    if missing:
        note = (WITHHELD_NOTE if missing == len(last.sites)
                else f"confusion matrix withheld by {missing} of {len(last.sites)} sites")
    scored = last.global_.confusion_matrix is not None  # a run without a test set has no global matrix
    panels = [*([(f"global model, round {last.round}\n(test set)", last.global_.confusion_matrix)] if scored else []),
              *sites] or [("no test set and no site released\na confusion matrix", None)]
    return tuple((title, _cm_key(cm if cm is not None else [[0]])) for title, cm in panels), note, class_names(history)


def class_names(history: History) -> tuple[str, ...]:
    """The classes' names in model order from a tabular run's public schema; empty for MNIST (digits 0-9)."""
    schema = history.config.get("schema")
    classes = schema.get("classes") if isinstance(schema, dict) else None
    return tuple(str(c) for c in classes) if isinstance(classes, list | tuple) else ()


def _class_ticks(ax, names: tuple[str, ...], k: int, axes: str = "xy") -> None:
    """Label class ticks with the schema's names (shortened) when there is one per class."""
    if names and len(names) == k:
        labels = [n if len(n) <= 12 else n[:11] + "…" for n in names]
        long = max(map(len, labels)) > 2
        if "x" in axes:
            ax.set_xticks(range(k), labels, rotation=45 if long else 0, ha="right" if long else "center")
        if "y" in axes:
            ax.set_yticks(range(k), labels)


def _draw_confusion(panels, note, names=()) -> Figure:
    # scikit-learn draws each matrix (cells, counts in a colour that reads on them, a tick per class).
    # Imported here, not with the module: sklearn.metrics is a second of every command's start. Its
    # plot() imports pyplot but, drawing on our axes, registers no figure and chooses no backend.
    from matplotlib.ticker import MaxNLocator, ScalarFormatter
    from sklearn.metrics import ConfusionMatrixDisplay

    fig = _new_figure((3.6 * len(panels), 4.0 if note else 3.7))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, cm) in zip(axes, panels):
        cm = np.asarray(cm)
        k = cm.shape[0]
        annotate = k <= ANNOTATE_MAX_CLASSES
        # No colour bar: it would add an axes per panel and squeeze the matrices.
        ConfusionMatrixDisplay(cm).plot(ax=ax, cmap="Blues", colorbar=False, include_values=annotate,
                                        text_kw={"fontsize": 5.5})
        if annotate:
            _class_ticks(ax, names, k)
        else:  # a tick per class would blur into a bar: a few integer ticks, as matplotlib picks them
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(MaxNLocator(integer=True))
                axis.set_major_formatter(ScalarFormatter())
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.tick_params(labelsize=7)
    named = bool(names) and max(map(len, names)) > 2  # names need room below and beside each matrix
    fig.subplots_adjust(left=(0.3 if named else 0.12) / len(panels) + 0.02, right=0.99, top=0.85,
                        bottom=(0.3 if named else 0.13) + (0.05 if note else 0), wspace=0.6 if named else 0.35)
    _footnote(fig, note)
    return fig


def confusion_figure(history: History) -> Figure:
    """Confusion matrices of the last round: the global model's, then a few sites'.

    Up to :data:`CONFUSION_MAX_SITES` sites are all shown; with more, only the worst and
    the best site by last-round local test accuracy, so the figure's size is bounded.
    Sites that withheld their matrix are left out and a note says so.

    Parameters
    ----------
    history : History
        The run; must have at least one round.

    Returns
    -------
    matplotlib.figure.Figure
    """
    return _draw_confusion(*_confusion_data(history))


def label_counts(history: History) -> dict[str, Any] | None:
    """The partition's per-site label counts, when the run recorded them.

    Parameters
    ----------
    history : History
        The run; simulations store ``config["label_counts"]`` (site -> per-class counts).

    Returns
    -------
    dict or None
        The counts, or None when absent, empty or not a mapping.
    """
    counts = history.config.get("label_counts")
    return counts if isinstance(counts, dict) and counts else None


def label_matrix(label_counts: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """Per-site label counts as a (sites, classes) array.

    Parameters
    ----------
    label_counts : dict
        Site name -> list of per-class counts (``history.config["label_counts"]``).
        Shorter lists are padded with zeros.

    Returns
    -------
    names : list of str
    counts : numpy.ndarray of float, shape (len(names), n_classes)
    """
    names = [str(n) for n in label_counts]
    rows = [v if v is not None else [] for v in label_counts.values()]
    if not rows:
        return names, np.zeros((0, 0))
    try:  # the usual case, every site the same number of classes: one conversion
        counts = np.array(rows, dtype=float).reshape(len(rows), -1)
    except ValueError:  # ragged: pad
        k = max(len(r) for r in rows)
        counts = np.zeros((len(rows), k))
        for i, r in enumerate(rows):
            counts[i, :len(r)] = np.asarray(r, dtype=float)
    return names, np.nan_to_num(counts, nan=0.0, posinf=0.0, neginf=0.0)


def label_skew(counts: Any) -> float:
    """How non-IID a partition is: mean total-variation distance to the pooled label distribution.

    For each site, the total-variation distance ``0.5 * sum_k |p_site[k] - p_pooled[k]|``
    between its label distribution and the distribution of all sites' labels pooled;
    the sites' mean (unweighted, so small sites count as much as large ones).

    Parameters
    ----------
    counts : array-like, shape (n_sites, n_classes)
        Per-site, per-class label counts. Sites with no labels are ignored.

    Returns
    -------
    float
        0 when every site has the pooled distribution (IID); at most ``1 - 1/K`` for ``K``
        equally frequent classes, reached when each site holds a single class. NaN when
        there are no labels at all.
    """
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    return skew(counts) if counts.size and counts.sum() > 0 else math.nan


def _label_data(label_counts: dict[str, Any], classes: tuple[str, ...] = ()) -> tuple:
    names, counts = label_matrix(label_counts)
    n, k = counts.shape
    skew = label_skew(counts) if n and k else math.nan
    if n <= MANY_SITES:
        return "bars", tuple(names), _cm_key(counts) if n and k else (), k, _key([skew]), n, classes
    tv = shard_skews(counts)
    keep = np.isfinite(tv)
    idx = np.flatnonzero(keep)[np.argsort(-tv[keep], kind="stable")]  # most skewed first
    if idx.size > HEATMAP_MAX_ROWS:  # even steps over the sorted sites keep the spread of skews
        idx = idx[np.linspace(0, idx.size - 1, HEATMAP_MAX_ROWS).round().astype(int)]
    share = counts[idx] / counts[idx].sum(axis=1, keepdims=True)
    rows = tuple(_key(row) for row in share)
    return "heat", tuple(names[i] for i in idx), rows, k, _key([skew]), n, classes


def _draw_labels(mode, names, rows, k, skew, n, classes=()) -> Figure:
    title = f"Labels per site (skew {_fmt(skew[0])}: mean TV distance to pooled)"
    if mode == "bars":
        counts = np.array(rows, dtype=float).reshape(len(names), k) if rows else np.zeros((len(names), k))
        fig = _new_figure((6.4, max(2.8, 1.4 + 0.35 * n)))  # tall enough for a 10-class legend
        ax = fig.subplots()
        y = np.arange(n)
        left = np.zeros(n)
        for c in range(k):
            label = classes[c] if len(classes) == k else str(c)
            ax.barh(y, counts[:, c], left=left, color=f"C{c % 10}", label=label[:16], height=0.7)
            left += counts[:, c]
        ax.set_yticks(y, [nm[:24] for nm in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("examples")
        if 0 < k <= 20:
            ax.legend(title="class", fontsize=7, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      frameon=False)
        h = fig.get_figheight()
        fig.subplots_adjust(left=0.22, right=0.86, top=1 - 0.45 / h, bottom=0.5 / h)
    else:
        share = np.array(rows, dtype=float) if rows else np.zeros((1, max(k, 1)))  # no labels: an empty map
        fig = _new_figure((6.4, 1.4 + 0.13 * max(len(names), 8)))
        ax = fig.subplots()
        im = ax.imshow(share, cmap="viridis", aspect="auto", vmin=0, interpolation="nearest")
        ax.set_yticks(range(len(names)), [nm[:24] for nm in names], fontsize=5.5)
        ax.set_xticks(range(k) if k <= 20 else [])
        if k <= 20:
            _class_ticks(ax, classes, k, axes="x")
        ax.set_xlabel("class")
        shown = f"{len(names)} of {n:,} sites" if len(names) < n else f"{n:,} sites"
        ax.set_ylabel(f"{shown}, most skewed first", fontsize=8)
        h = fig.get_figheight()
        fig.subplots_adjust(left=0.2, right=0.9, top=1 - 0.4 / h, bottom=0.5 / h)
        bar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
        bar.set_label("share of the site's labels", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    return fig


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def label_histogram_figure(label_counts: dict[str, Any], classes: tuple[str, ...] = ()) -> Figure:
    """Each site's label distribution, titled with the partition's :func:`label_skew`.

    With at most :data:`MANY_SITES` sites, one stacked bar of counts per site; with more,
    a heat map of label shares (sites x classes), the sites sorted by their distance to
    the pooled distribution and evenly subsampled to :data:`HEATMAP_MAX_ROWS` rows.

    Parameters
    ----------
    label_counts : dict
        Site name -> list of per-class counts.
    classes : tuple of str, optional
        The classes' names in order (see :func:`class_names`); default: their indices.

    Returns
    -------
    matplotlib.figure.Figure
    """
    return _draw_labels(*_label_data(label_counts, tuple(classes)))


@functools.lru_cache(maxsize=12)
def _render(draw, data: tuple, dpi: int) -> bytes:
    buf = io.BytesIO()
    draw(*data).savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def figure_png(name: str, history: History, dpi: int = DPI) -> bytes | None:
    """One of the run's figures as PNG bytes, rendered once per distinct content and dpi.

    Parameters
    ----------
    name : str
        :data:`ACCURACY_PNG`, :data:`CONFUSION_PNG` or :data:`LABEL_HISTOGRAM_PNG`.
    history : History
        The run.
    dpi : int
        Resolution.

    Returns
    -------
    bytes or None
        The PNG, or None when the run has nothing to draw for it (no rounds, no label counts).
    """
    if name == LABEL_HISTOGRAM_PNG:
        counts = label_counts(history)
        return _render(_draw_labels, _label_data(counts, class_names(history)), dpi) if counts else None
    if not history.rounds:
        return None
    if name == ACCURACY_PNG:
        return _render(_draw_accuracy, _accuracy_data(history), dpi)
    if name == CONFUSION_PNG:
        return _render(_draw_confusion, _confusion_data(history), dpi)
    raise ValueError(f"unknown figure {name!r}")


def write_plots(history: History, out_dir: Path) -> list[Path]:
    """Write the PNG figures into ``out_dir``.

    Parameters
    ----------
    history : History
        The run. Accuracy and confusion figures need at least one round;
        ``label_histogram.png`` is written when ``history.config`` has ``"label_counts"``.
    out_dir : Path
        An existing directory.

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir = Path(out_dir)
    written = []
    for name in (ACCURACY_PNG, CONFUSION_PNG, LABEL_HISTOGRAM_PNG):
        png = figure_png(name, history)
        if png is not None:
            (out_dir / name).write_bytes(png)
            written.append(out_dir / name)
    return written
