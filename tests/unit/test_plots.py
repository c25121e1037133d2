"""Figures and report at any number of sites: bounded size, short legends, withheld metrics, partitions."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from test_report import _parse
from matplotlib.image import imread

from fedsyft import plots
from fedsyft.history import GlobalEval, History, RoundRecord, SiteRound
from fedsyft.report import write_report

MAX_PX = 2000  # no figure may grow with the number of sites beyond this, in either direction


def _cm(acc: float) -> list[list[int]]:
    cm = np.full((10, 10), 3)
    np.fill_diagonal(cm, int(100 * acc))
    return cm.tolist()


def _history(n_sites: int, n_rounds: int = 3, *, withheld: bool = False, fail_every: int = 0,
             skip_every: int = 0, labels: str | None = None) -> History:
    """Synthetic run: site i's local accuracy grows with i, so site-0 is the worst and the last the best.

    ``withheld`` drops every local metric (as under differential privacy), ``fail_every``
    makes every such site fail each round, ``skip_every`` leaves sites out of a round
    (not sampled), ``labels`` adds ``config["label_counts"]`` ("iid" or "one" class per site).
    """
    names = [f"site-{i}" for i in range(n_sites)]
    cms = {}  # shared per accuracy: keeps 1,000-site histories cheap to build
    rounds = []
    for r in range(1, n_rounds + 1):
        sites, failures = {}, {}
        for i, name in enumerate(names):
            if skip_every and (i + r) % skip_every == 0:
                continue
            if fail_every and (i + r) % fail_every == 0:
                failures[name] = "timed out"
                continue
            acc = round(0.5 + 0.4 * i / max(n_sites - 1, 1) + 0.01 * r, 4)
            cm = None if withheld else cms.setdefault(acc, _cm(acc))
            nan = float("nan")
            sites[name] = SiteRound(n_train=500, train_accuracy=None if withheld else acc,
                                    test_accuracy=nan if withheld else acc, train_loss=None if withheld else 1 - acc,
                                    test_loss=nan if withheld else 1 - acc, confusion_matrix=cm, seconds=1.0,
                                    bytes_sent=31_912, bytes_received=33_000)
        rounds.append(RoundRecord(round=r, seconds=2.0, global_=GlobalEval(0.8 + 0.03 * r, 0.5, _cm(0.8)),
                                  sites=sites, failures=failures))
    config = {"sites": names, "rounds": n_rounds}
    if labels == "iid":
        rng = np.random.default_rng(0)
        config["label_counts"] = {n: rng.multinomial(6000, [0.1] * 10).tolist() for n in names}
    elif labels == "one":
        config["label_counts"] = {n: [500 * (c == i % 10) for c in range(10)] for i, n in enumerate(names)}
    return History(config=config, rounds=rounds)


def _legend(fig) -> list[str]:
    legend = fig.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def _fig_texts(fig) -> str:
    return " ".join(t.get_text() for t in fig.texts)


def _png_size(data: bytes) -> tuple[int, int]:
    height, width = imread(io.BytesIO(data), format="png").shape[:2]
    return width, height


def _Page(text: str):
    """Every table (rows of cell texts) and every <img src> of a report page."""
    return _parse(text)


@pytest.fixture(scope="module")
def thousand() -> History:
    return _history(1000, fail_every=37, labels="one")


@pytest.mark.parametrize("n_sites", [2, 12, 1000])
def test_write_plots_bounded(tmp_path, n_sites, thousand):
    history = thousand if n_sites == 1000 else _history(n_sites, labels="iid")
    written = plots.write_plots(history, tmp_path)
    assert [p.name for p in written] == [plots.ACCURACY_PNG, plots.CONFUSION_PNG, plots.LABEL_HISTOGRAM_PNG]
    for path in written:
        width, height = _png_size(path.read_bytes())
        assert 200 < width <= MAX_PX and 200 < height <= MAX_PX, (path.name, width, height)


def test_few_sites_keep_one_line_each():
    fig = plots.accuracy_figure(_history(2))
    assert _legend(fig) == ["global model (researcher's test set)", "site-0 (local test split)",
                            "site-1 (local test split)"]
    assert len(plots.confusion_figure(_history(2)).axes) == 3  # global + both sites


@pytest.mark.parametrize("n_sites", [plots.MANY_SITES + 2, 1000])
def test_many_sites_summarised(n_sites, thousand):
    history = thousand if n_sites == 1000 else _history(n_sites)
    texts = _legend(plots.accuracy_figure(history))
    assert 2 <= len(texts) <= 5 and not any("site-" in t for t in texts)
    assert any("median" in t for t in texts) and any("10-90" in t for t in texts) and "worst site" in texts

    fig = plots.confusion_figure(history)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 3 and titles[0].startswith("global model")
    last = history.rounds[-1].sites
    worst = min(last, key=lambda n: last[n].test_accuracy)
    best = max(last, key=lambda n: last[n].test_accuracy)
    assert titles[1].startswith(f"worst site: {worst}\n") and titles[2].startswith(f"best site: {best}\n")


@pytest.mark.parametrize("n_sites", [2, 12, 60])  # per-site columns, per-site table, worst/best summary
def test_withheld_metrics(tmp_path, n_sites):
    history = _history(n_sites, withheld=True)
    history.save(tmp_path)
    for h in (history, History.load(tmp_path)):  # NaN in memory, None once read back from metrics.json
        acc = plots.accuracy_figure(h)
        assert _legend(acc) == ["global model (researcher's test set)"]
        assert plots.WITHHELD_NOTE in _fig_texts(acc)
        cm = plots.confusion_figure(h)
        assert len(cm.axes) == 1 and plots.WITHHELD_NOTE in _fig_texts(cm)
        assert len(plots.write_plots(h, tmp_path)) == 2
        text = write_report(h, tmp_path).read_text()
        assert plots.WITHHELD_NOTE in text
        assert len(_Page(text).images) == 2


def test_many_rounds_keep_few_ticks():
    ax = plots.accuracy_figure(_history(2, n_rounds=60)).axes[0]
    assert len(ax.get_xticks()) <= 12


def test_partly_withheld():
    history = _history(12)
    for r in history.rounds:
        r.sites["site-3"].test_accuracy = None
    assert plots.withheld_note(history) == f"{plots.WITHHELD_NOTE}: 1 of 12 sites"
    assert plots.local_accuracies(history.rounds[0]).size == 11


@pytest.mark.parametrize("n_sites", [3, 12, 60])
def test_failures_and_unsampled_sites(tmp_path, n_sites):
    history = _history(n_sites, n_rounds=4, fail_every=4, skip_every=3)
    history.rounds[1].sites.clear()  # a round in which nobody answered
    assert all(len(r.sites) + len(r.failures) < n_sites for r in history.rounds)
    assert len(plots.write_plots(history, tmp_path)) == 2
    text = write_report(history, tmp_path).read_text()
    assert "Sites that did not answer" in text and "timed out" in text
    if n_sites > plots.MANY_SITES:
        assert "not sampled" in text
        rounds = _Page(text).table("round")
        second = rounds[2 + 1]  # after two header rows and round 1
        assert second[0] == "2" and second[3:5] == ["0", str(len(history.rounds[1].failures))]  # answered, failed
        assert second[5:8] == ["n/a"] * 3


def test_report_summary_for_many_sites(tmp_path):
    text = write_report(_history(12, fail_every=5), tmp_path).read_text()
    page = _Page(text)
    assert len(page.tables) == 4  # rounds, last round, configuration, traffic
    rounds, last = page.table("round"), page.table("site", "status")
    traffic = page.table("site", "bytes received from site")
    assert rounds[1] == ["round", "test acc.", "test loss", "answered", "failed", "min", "median", "max",
                         "to sites", "from sites", "seconds"]
    assert "local test acc. over sites" in rounds[0] and "bytes, all sites" in rounds[0]
    assert len(rounds) == 2 + 3  # two header rows, one row per round
    assert "Last round (round 3), per site" in text
    assert len(last) == 1 + 12 and last[0][:2] == ["site", "status"]
    assert len(traffic) == 1 + 12


def test_report_stays_small_with_1000_sites(tmp_path, thousand):
    text = write_report(thousand, tmp_path).read_text()
    page = _Page(text)
    assert "the 5 worst and 5 best sites" in text and "Data partition" in text
    assert all(len(t) <= 16 and all(len(row) <= 12 for row in t) for t in page.tables)
    ranked = next(t for t in page.tables if t[0][:2] == ["site", "rank by test acc."])
    assert [r[1] for r in ranked[1:]] == [*(f"worst {i}" for i in range(1, 6)), *(f"best {i}" for i in range(1, 6))]
    assert ranked[1][0] == "site-0" and ranked[6][0] == "site-999"
    assert "(1,000 in all)" in text  # the site list is cut short
    assert len(text) < 1_000_000
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text


def test_report_inlines_the_written_pngs(tmp_path, thousand):
    written = {p.name: p.read_bytes() for p in plots.write_plots(thousand, tmp_path)}
    inlined = [base64.b64decode(src.split(",", 1)[1]) for src in _Page(write_report(thousand, tmp_path)
                                                                      .read_text()).images]
    assert sorted(inlined) == sorted(written.values())


def test_png_cache_follows_the_history():
    history = _history(12)
    before = plots.figure_png(plots.ACCURACY_PNG, history)
    assert plots.figure_png(plots.ACCURACY_PNG, history) == before
    history.rounds[-1].global_.test_accuracy = 0.5
    assert plots.figure_png(plots.ACCURACY_PNG, history) != before


def test_label_histogram(tmp_path):
    small = plots.label_histogram_figure(_history(3, labels="one").config["label_counts"])
    assert "skew 0.667" in small.axes[0].get_title()  # 3 sites, classes 0, 1, 2: 1 - 1/3
    many = _history(500, n_rounds=1, labels="iid").config["label_counts"]
    fig = plots.label_histogram_figure(many)
    assert len(fig.axes[0].get_yticklabels()) == plots.HEATMAP_MAX_ROWS
    assert "of 500 sites" in fig.axes[0].get_ylabel()

    history = History(config={"label_counts": many})  # no round finished: the partition is still shown
    assert [p.name for p in plots.write_plots(history, tmp_path)] == [plots.LABEL_HISTOGRAM_PNG]
    text = write_report(history, tmp_path).read_text()
    assert "<h2>Data partition</h2>" in text and "Label skew: <b>0.0" in text
    assert len(_Page(text).images) == 1


def test_label_skew():
    rng = np.random.default_rng(1)
    iid = rng.multinomial(10_000, [0.1] * 10, size=50)
    assert plots.label_skew(iid) < 0.02
    one_class = np.eye(10, dtype=int).repeat(5, axis=0) * 800  # 50 sites, 5 per class
    assert plots.label_skew(one_class) == pytest.approx(0.9)  # the maximum, 1 - 1/K
    assert plots.label_skew([[0, 0], [0, 0]]) != plots.label_skew([[0, 0], [0, 0]])  # NaN: no labels at all
    assert plots.label_skew([[5, 5], [0, 0]]) == 0  # an empty site is ignored


def test_label_matrix_pads_and_cleans():
    names, counts = plots.label_matrix({"a": [1, 2, 3], "b": [4], "c": None, "d": [1, None, 2]})
    assert names == ["a", "b", "c", "d"]
    assert counts.tolist() == [[1, 2, 3], [4, 0, 0], [0, 0, 0], [1, 0, 2]]


def test_no_crash_at_the_extremes(tmp_path):
    for history in (_history(1, n_rounds=1), _history(10_000, n_rounds=1, labels="one")):
        assert plots.write_plots(history, tmp_path)
        text = write_report(history, tmp_path).read_text()
        assert re.search(r"</html>\s*$", text)
        for name in (plots.ACCURACY_PNG, plots.CONFUSION_PNG):
            width, height = _png_size((tmp_path / name).read_bytes())
            assert width <= MAX_PX and height <= MAX_PX


def test_a_tabular_runs_figures_name_its_classes():
    history = _history(2, labels="iid")
    ten = [f"class {c}" for c in range(10)]
    history.config["schema"] = {"classes": ten}
    cm = plots.confusion_figure(history)
    assert [t.get_text() for t in cm.axes[0].get_xticklabels()] == ten
    assert [t.get_text() for t in cm.axes[0].get_yticklabels()] == ten
    bars = plots.label_histogram_figure(history.config["label_counts"], plots.class_names(history))
    assert [t.get_text() for t in bars.axes[0].get_legend().get_texts()] == ten
    assert plots.class_names(_history(2)) == ()  # MNIST: the digits' indices are their names
    assert [t.get_text() for t in plots.confusion_figure(_history(2)).axes[0].get_xticklabels()] == \
        [str(c) for c in range(10)]
