"""The run directory: everything a run leaves behind, kept up to date after every round.

Files: ``metrics.json`` (the history, schema in the README), ``config.json``,
``model.npz`` (the latest global ``coef`` and ``intercept``) and the PNG plots.
A run that stops early keeps every round it finished.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .aggregate import Params
from .history import History, RoundRecord
from .plots import write_plots

MODEL_FILE = "model.npz"


class RunDirectory:
    """Writes a run's outputs; plugs into the federation loop as an observer."""

    def __init__(self, path: Path, history: History):
        self.path = Path(path)
        self.history = history
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.json").write_text(json.dumps(history.config, indent=2))
        history.save(self.path)

    def round_started(self, round_no: int, rounds: int) -> None:
        pass

    def site_finished(self, *args) -> None:
        pass

    def round_finished(self, record: RoundRecord, params: Params) -> None:
        tmp = self.path / (MODEL_FILE + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, coef=params["coef"], intercept=params["intercept"], round=record.round)
        tmp.replace(self.path / MODEL_FILE)
        self.history.save(self.path)

    def finish(self) -> list[Path]:
        """Plots and the final metrics.json (also after a failed run, for the rounds it has)."""
        start = time.perf_counter()
        written = write_plots(self.history, self.path) if self.history.rounds else []
        self.history.timings["outputs"] = round(time.perf_counter() - start, 3)
        self.history.save(self.path)
        return written


def load_model(run_dir: Path) -> Params:
    """The global parameters saved in a run directory."""
    with np.load(Path(run_dir) / MODEL_FILE) as f:
        return {"coef": f["coef"], "intercept": f["intercept"]}
