"""One self-contained HTML page describing a run, drawn from its :class:`~fedsyft.history.History` alone.

The page inlines its figures as base64 PNG and its CSS, and loads nothing from the
network, so it can be mailed or archived and still open years later.
"""

from __future__ import annotations

import base64
import io
import math
from html import escape
from pathlib import Path
from typing import Any

from . import plots
from .history import History

REPORT_FILE = "report.html"
PARAM_BYTES = (10 * 784 + 10) * 4  # coef + intercept, float32: what one copy of the model weighs

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 70rem; margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.n:first-child { text-align: left; } .wide { overflow-x: auto; }
img { max-width: 100%; height: auto; } .muted { color: #777; }
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


def _png(fig) -> str:
    """The figure as a base64 PNG data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _site_names(history: History) -> list[str]:
    """Every site seen in any round (answered or failed), in order of first appearance."""
    names: dict[str, None] = {}
    for r in history.rounds:
        names.update(dict.fromkeys([*r.sites, *r.failures]))
    return list(names)


def write_report(history: History, run_dir: Path) -> Path:
    """Write ``report.html`` for a run into ``run_dir``.

    Parameters
    ----------
    history : the run's configuration and finished rounds, e.g. ``History.load(run_dir)``.
    run_dir : directory to write into; created if missing.

    Returns
    -------
    Path
        The written ``run_dir / "report.html"``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    sites, rounds = _site_names(history), history.rounds
    parts = [f"<h1>fedsyft run report</h1>\n<p class=\"muted\">{escape(run_dir.name)}</p>"]

    if rounds:
        parts.append(f"<p>{len(rounds)} round(s) of FedAvg completed over {len(sites)} site(s) "
                     f"({_text(sites)}). Final global test accuracy: <b>{_num(history.final_accuracy)}</b> "
                     f"after round {rounds[-1].round}.</p>")
    else:
        parts.append("<p>No rounds finished in this run, so there is no accuracy to report.</p>")

    parts += ["<h2>Configuration</h2>",
              _table(["setting", "value"], [[_text(k), _text(v)] for k, v in history.config.items()], numeric=False)]

    parts.append("<h2>Rounds</h2>")
    if rounds:
        group = "".join(f'<th colspan="4">{escape(s)}</th>' for s in sites)
        extra = f'<tr><th colspan="3">global model</th>{group}<th></th></tr>'
        per_site = ["train acc.", "test acc.", "bytes to site", "bytes from site"]
        header = ["round", "test acc.", "test loss", *per_site * len(sites), "seconds"]
        rows = []
        for r in rounds:
            cells = [str(r.round), _num(r.global_.test_accuracy), _num(r.global_.test_loss)]
            for s in sites:
                sr = r.sites.get(s)  # a site that failed this round has no record
                cells += ([_num(sr.train_accuracy), _num(sr.test_accuracy), _num(sr.bytes_sent, ","),
                           _num(sr.bytes_received, ",")] if sr else ["n/a"] * 4)
            rows.append(cells + [_num(r.seconds, ".1f")])
        parts.append(_table(header, rows, extra))
        failed = [f"<li>round {r.round}: {escape(s)}: {escape(str(why))}</li>"
                  for r in rounds for s, why in r.failures.items()]
        if failed:
            parts.append("<p>Sites that did not answer:</p><ul>" + "".join(failed) + "</ul>")
        parts += ["<h2>Accuracy</h2>",
                  f'<img alt="test accuracy per round" src="{_png(plots.accuracy_figure(history))}">',
                  "<h2>Confusion matrices (last round)</h2>",
                  f'<img alt="confusion matrices" src="{_png(plots.confusion_figure(history))}">']
    else:
        parts.append("<p>No rounds finished.</p>")

    parts.append("<h2>What left each datasite</h2>\n<p>No images or labels left any datasite. Each round, "
                 f"only the model parameters (<code>coef</code> 10&times;784 and <code>intercept</code> 10, float32: "
                 f"{PARAM_BYTES:,} bytes) and aggregate metrics (<code>n_train</code>, train and test accuracies, "
                 "losses and the confusion matrix of the local test split) were sent back to the researcher.</p>")
    if rounds:
        totals = [[escape(s), _num(sum(r.sites[s].bytes_received for r in rounds if s in r.sites), ","),
                   _num(sum(r.sites[s].bytes_sent for r in rounds if s in r.sites), ",")] for s in sites]
        parts.append(_table(["site", "bytes received from site", "bytes sent to site"], totals))

    if history.timings:
        parts += ["<h2>Set-up timings</h2>",
                  _table(["step", "seconds"], [[_text(k), _num(v, ".2f")] for k, v in history.timings.items()])]

    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>fedsyft report: {escape(run_dir.name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")
    path = run_dir / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path
