"""Console output: the seed-compatible lines and the live progress display."""

import io

import numpy as np
from rich.console import Console

from fedsyft.console import LiveProgress, PlainConsole
from fedsyft.history import GlobalEval, RoundRecord, SiteRound
from fedsyft.sites import SiteResult

PARAMS = {"coef": np.zeros((10, 784), np.float32), "intercept": np.zeros(10, np.float32)}


def _site(acc):
    return SiteRound(n_train=100, train_accuracy=acc, test_accuracy=acc - 0.01, train_loss=0.3, test_loss=0.3,
                     confusion_matrix=None, seconds=1.0, bytes_sent=0, bytes_received=0)


RECORD = RoundRecord(round=1, seconds=2.5, global_=GlobalEval(0.9210, 0.2841, [[0]]),
                     sites={"MNIST Part 1": _site(0.9240)}, failures={"MNIST Part 2": "lost connection"})


def test_plain_lines_match_the_replaced_projects_format():
    out = io.StringIO()
    console = PlainConsole(out)
    console.round_started(1, 5)
    console.round_finished(RECORD, PARAMS)
    assert out.getvalue().splitlines() == [
        "=== FL epoch 1/5 ===",
        "  MNIST Part 1 -> train=0.9240, test=0.9140",
        "  MNIST Part 2 -> failed: lost connection (left out of this round; asked again next round)",
        "  FedAvg epoch 1: intercept shape=(10,), coef shape=(10, 784)",
        "  Global model -> test=0.9210, loss=0.2841 (2.5 s)",
    ]


def test_another_strategy_is_named_in_its_aggregation_line_and_in_reports():
    from fedsyft.strategies import make_strategy, strategy_label

    label = make_strategy("fedadam", ema=0.95).label
    assert label == "FedAdam + EMA 0.95" == strategy_label(make_strategy("fedadam", ema=0.95).describe())
    assert strategy_label(None) == "FedAvg" and make_strategy("scaffold").label == "SCAFFOLD"
    out = io.StringIO()
    console = PlainConsole(out, strategy=label)
    console.round_started(1, 5)
    console.round_finished(RECORD, PARAMS)
    assert "  FedAdam + EMA 0.95 epoch 1: intercept shape=(10,), coef shape=(10, 784)" in out.getvalue().splitlines()


def test_live_display_shows_each_sites_status_and_the_global_accuracy():
    buf = io.StringIO()
    live = LiveProgress(["MNIST Part 1", "MNIST Part 2"], console=Console(file=buf, force_terminal=True, width=100))
    live.round_started(1, 1)
    live.site_finished(1, "MNIST Part 1", SiteResult(PARAMS, _site(0.9240)), None)
    live.site_finished(1, "MNIST Part 2", None, "lost connection")
    table = live._table()
    rendered = Console(file=io.StringIO(), width=100, record=True)
    rendered.print(table)
    text = rendered.export_text()
    assert "FedAvg round 1/1" in text and "done  train=0.9240 test=0.9140" in text and "failed: lost connection" in text
    live.round_finished(RECORD, PARAMS)
    assert not live.live.is_started  # stopped after the last round
    assert "=== FL epoch 1/1 ===" in buf.getvalue()  # the plain lines are printed above the display
    assert "global test accuracy 0.9210" in _text(live)


def _text(live):
    rendered = Console(file=io.StringIO(), width=100, record=True)
    rendered.print(live._table())
    return rendered.export_text()
