"""The run directory: everything a run leaves behind, kept up to date after every round.

Files: ``metrics.json`` (the history, schema in the README), ``config.json``,
``model.npz`` (the run's latest model: ``coef`` and ``intercept``), ``checkpoint.npz``
(parameters and history in one atomically replaced file: what ``--resume`` reads)
the PNG plots and ``report.html`` (everything in one self-contained page). A run that stops early keeps every round it finished.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .aggregate import Params
from .history import History, RoundRecord
from .plots import write_plots
from .report import write_report

MODEL_FILE = "model.npz"
CHECKPOINT_FILE = "checkpoint.npz"


def _save_npz(path: Path, **arrays) -> None:
    """Write to a temporary name, then rename: a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)


STRATEGY_PREFIX = "strategy|"


class RunDirectory:
    """Writes a run's outputs; plugs into the federation loop as an observer.

    ``strategy`` (optional): its state (momentum, control variates, ...) is checkpointed
    with the parameters, so a resumed run continues exactly.
    """

    def __init__(self, path: Path, history: History, strategy=None):
        self.path = Path(path)
        self.history = history
        self.strategy = strategy
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.json").write_text(json.dumps(history.config, indent=2))
        history.save(self.path)

    def round_started(self, round_no: int, rounds: int) -> None:
        pass

    def site_finished(self, *args) -> None:
        pass

    def round_finished(self, record: RoundRecord, params: Params) -> None:
        # The checkpoint first, in one file, so parameters and history always agree.
        state = self.strategy.state() if self.strategy is not None else {}
        _save_npz(self.path / CHECKPOINT_FILE, coef=params["coef"], intercept=params["intercept"],
                  history=np.frombuffer(self.history.to_json().encode(), np.uint8),  # UTF-8: a quarter of np.str_'s size
                  **{STRATEGY_PREFIX + k: np.asarray(v) for k, v in state.items()})
        model = self.strategy.round_model(record.round, params) if self.strategy is not None else params
        _save_npz(self.path / MODEL_FILE, coef=model["coef"], intercept=model["intercept"], round=record.round)
        self.history.save(self.path)

    def finish(self) -> list[Path]:
        """Plots and the final metrics.json (also after a failed run, for the rounds it has)."""
        start = time.perf_counter()
        written = write_plots(self.history, self.path) if self.history.rounds else []
        self.history.timings["outputs"] = round(time.perf_counter() - start, 3)
        self.history.save(self.path)
        return [*written, write_report(self.history, self.path)]


def load_checkpoint(run_dir: Path) -> tuple[History, Params, dict[str, np.ndarray]]:
    """The history, global parameters and strategy state of a run's last finished round."""
    path = Path(run_dir) / CHECKPOINT_FILE
    try:
        with np.load(path, allow_pickle=False) as f:
            state = {k[len(STRATEGY_PREFIX):]: f[k] for k in f.files if k.startswith(STRATEGY_PREFIX)}
            text = f["history"]  # UTF-8 bytes; checkpoints written before 2026-11-26 hold a numpy string
            text = str(text) if text.dtype.kind == "U" else text.tobytes().decode()
            return (History.from_dict(json.loads(text)),
                    {"coef": f["coef"], "intercept": f["intercept"]}, state)
    except FileNotFoundError:
        raise ValueError(f"{run_dir} has no {CHECKPOINT_FILE}: no round finished there to resume from") from None
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a fedsyft checkpoint ({e})") from None


def load_model(run_dir: Path) -> Params:
    """The global parameters saved in a run directory."""
    with np.load(Path(run_dir) / MODEL_FILE) as f:
        return {"coef": f["coef"], "intercept": f["intercept"]}
