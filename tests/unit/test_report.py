"""The HTML report: self-contained, escaped, and renderable from metrics.json alone."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from fedsyft.history import GlobalEval, History, RoundRecord, SiteRound
from fedsyft.report import write_report

SITES = ("Site <A>", "MNIST Part 2")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cm(acc: float, seed: int) -> list[list[int]]:
    """A plausible 10x10 confusion matrix with about ``acc`` on the diagonal."""
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 8, size=(10, 10))
    np.fill_diagonal(cm, int(100 * acc / (1 - acc)))
    return cm.tolist()


def _site(acc: float, seed: int, cm: bool = True) -> SiteRound:
    return SiteRound(n_train=24000, train_accuracy=acc + 0.01, test_accuracy=acc, train_loss=1 - acc,
                     test_loss=1.1 - acc, confusion_matrix=_cm(acc, seed) if cm else None, seconds=9.5,
                     bytes_sent=31_912, bytes_received=33_187 + seed, compute_seconds=6.2)


def _history() -> History:
    rounds = [RoundRecord(round=i, seconds=10.0 + i, global_=GlobalEval(acc, 1.05 - acc, _cm(acc, i)),
                          sites={SITES[0]: _site(acc - 0.01, 2 * i), SITES[1]: _site(acc, 2 * i + 1, cm=i == 1)})
              for i, acc in ((1, 0.8712), (2, 0.9034))]
    rounds[0].global_.test_loss = float("nan")  # must show as n/a, not "nan"
    config = {"sites": list(SITES), "rounds": 2, "local_epochs": 1, "note": "<b>not bold</b>"}
    return History(config=config, rounds=rounds, timings={"launch datasites": 14.21, "approval": 3.5})


class _Tables(HTMLParser):
    """Collects every table as rows of cell texts, and every <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("")
            self.in_cell = True
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.in_cell = False

    def handle_data(self, data):
        if self.in_cell:
            self.tables[-1][-1][-1] += data

    def table(self, *header: str) -> list[list[str]]:
        """The first table with a row (of its first two) that starts with ``header``: tables are found by
        what they hold, not by where the page puts them."""
        return next(t for t in self.tables if any(row[:len(header)] == list(header) for row in t[:2]))


def _parse(text: str) -> _Tables:
    p = _Tables()
    p.feed(text)
    return p


def _assert_offline(text: str) -> None:
    for bad in ("http://", "https://", "<script", "@import", "url("):
        assert bad not in text.lower(), bad


def test_report_content(tmp_path):
    path = write_report(_history(), tmp_path)
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    _assert_offline(text)
    assert "Final global test accuracy: <b>0.9034</b>" in text
    assert "Site &lt;A&gt;" in text and "Site <A>" not in text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in text
    assert "What left each datasite" in text and "10&times;784" in text

    page = _parse(text)
    assert len(page.images) == 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)

    assert len(page.tables) == 4  # rounds, configuration, traffic, timings
    config, rounds = page.table("setting", "value"), page.table("round")
    totals, timings = page.table("site", "bytes received from site"), page.table("step", "seconds")
    assert ["sites", "Site <A>, MNIST Part 2"] in config
    body = [r for r in rounds if r and r[0].isdigit()]
    assert [r[0] for r in body] == ["1", "2"]  # one row per round
    assert body[0][:3] == ["1", "0.8712", "n/a"]
    assert body[1][-1] == "12.0"
    # sums over both rounds of bytes_received (33,187 + seed 2,4 or 3,5) and bytes_sent (31,912)
    assert totals[1:] == [["Site <A>", "66,380", "63,824"], ["MNIST Part 2", "66,382", "63,824"]]
    assert ["launch datasites", "14.21"] in timings


def test_zero_rounds(tmp_path):
    text = write_report(History(config={"rounds": 5}), tmp_path).read_text()
    _assert_offline(text)
    assert "No rounds finished" in text and "<img" not in text
    assert text.rstrip().endswith("</html>")
    assert len(_parse(text).tables) == 1  # the configuration only; no timings were recorded


def test_rerender_from_metrics_json(tmp_path):
    _history().save(tmp_path)
    loaded = History.load(tmp_path)  # NaN comes back as None
    assert loaded.rounds[0].global_.test_loss is None
    text = write_report(loaded, tmp_path).read_text()
    assert "0.9034" in text and "Site &lt;A&gt;" in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 2
    assert _parse(text).table("round")[2][:3] == ["1", "0.8712", "n/a"]


def test_renders_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed")
    report = write_report(_history(), tmp_path / "run")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    report.resolve().as_uri()], timeout=60, capture_output=True, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    assert shot.stat().st_size > 10_000
