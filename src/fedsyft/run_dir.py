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
_SEP = "|"


def flatten_state(state: dict, prefix: str = STRATEGY_PREFIX) -> dict[str, np.ndarray]:
    """A strategy's nested ``state_dict()`` as the checkpoint's flat arrays: keys joined by ``|``.

    ``{"ema": {"coef": a, "round": 3}, "ci": {"MNIST Part 1": {"coef": b}}, "m.coef": c}`` becomes
    ``strategy|ema|coef``, ``strategy|ema|round``, ``strategy|ci|MNIST Part 1|coef`` and
    ``strategy|m.coef``: the keys checkpoints have always had. At most three levels; only the
    middle one (a site's name) may itself contain ``|``.
    """
    flat: dict[str, np.ndarray] = {}

    def walk(node: dict, path: tuple[str, ...]) -> None:
        for key, value in node.items():
            here = (*path, str(key))
            if isinstance(value, dict):
                walk(value, here)
                continue
            if len(here) > 3 or _SEP in here[0] or _SEP in here[-1]:
                raise ValueError(f"cannot checkpoint the strategy state at {here}: at most three levels, "
                                 f"and only a middle key may contain {_SEP!r}")
            flat[prefix + _SEP.join(here)] = np.asarray(value)

    walk(state, ())
    return flat


def unflatten_state(flat: dict[str, np.ndarray], prefix: str = STRATEGY_PREFIX) -> dict:
    """The nested state of :func:`flatten_state`'s arrays (keys without ``prefix`` are ignored)."""
    state: dict = {}
    for key, value in flat.items():
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix):].split(_SEP)
        path = parts if len(parts) <= 2 else [parts[0], _SEP.join(parts[1:-1]), parts[-1]]
        node = state
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return state


class RunDirectory:
    """Writes a run's outputs; plugs into the federation loop as an observer.

    ``strategy`` (optional): its state (momentum, control variates, ...: ``state_dict()``) is
    checkpointed with the parameters, flattened by :func:`flatten_state`, so a resumed run
    continues exactly.
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
        state = flatten_state(self.strategy.state_dict()) if self.strategy is not None else {}
        _save_npz(self.path / CHECKPOINT_FILE, coef=params["coef"], intercept=params["intercept"],
                  history=np.frombuffer(self.history.to_json().encode(), np.uint8),  # UTF-8: a quarter of np.str_'s size
                  **state)
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


def load_checkpoint(run_dir: Path) -> tuple[History, Params, dict]:
    """The history, global parameters and strategy state (nested, for ``load_state_dict``) of a run's last round."""
    path = Path(run_dir) / CHECKPOINT_FILE
    try:
        with np.load(path, allow_pickle=False) as f:
            state = unflatten_state({k: f[k] for k in f.files if k.startswith(STRATEGY_PREFIX)})
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
