"""The report command: rebuild a run's report and plots from its metrics.json."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import user_errors


def report(run_dir: Path = typer.Argument(..., help="A run directory with metrics.json.")) -> None:
    """Rebuild a run's report.html and plots from its metrics.json alone."""
    from ..history import History
    from ..plots import write_plots
    from ..report import write_report

    with user_errors():
        history = History.load(run_dir)
        for path in [*(write_plots(history, run_dir) if history.rounds else []), write_report(history, run_dir)]:
            typer.echo(f"wrote {path}")
