"""A researcher's run from start to finish: connect, get approval, federate, write the run directory.

Used by ``fedsyft run``, ``demo`` and ``simulate`` and by the Python API.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import task
from .connection import SiteCredentials
from .data import Images
from .federation import FederationResult, RoundObserver, federate
from .history import GlobalEval, History
from .run_dir import RunDirectory, load_checkpoint
from .sites.base import Site, SiteError


@dataclass
class RunConfig:
    """Settings of one federated run.

    Parameters
    ----------
    rounds : FedAvg rounds.
    seed : seeds the sites' local train/test splits (and, in simulations, the partition).
    local_iters : L-BFGS iterations each site runs per round.
    l2 : L2 strength per mean sample loss, the same on every site (scikit-learn's
        C = 1 / (l2 * n_train) on each site), so the federation approximates one
        centralized fit with this ``l2`` however many sites there are.
    test_fraction : share of each site's rows kept for its local test metrics.
    weighted : weight sites by n_train (FedAvg) or take a plain mean.
    """

    rounds: int = 5
    seed: int = 0
    local_iters: int = 25
    l2: float = 1e-5
    test_fraction: float = 0.1
    weighted: bool = True

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if self.local_iters < 1:
            raise ValueError(f"local_iters must be at least 1, got {self.local_iters}")
        if not self.l2 > 0:
            raise ValueError(f"l2 must be positive, got {self.l2}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be between 0 and 1, got {self.test_fraction}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """The settings stored in a run's config (other keys, such as the site names, are ignored)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def train_config(self) -> dict[str, Any]:
        """The config dict every site receives each round."""
        return {"seed": self.seed, "test_fraction": self.test_fraction, "local_iters": self.local_iters, "l2": self.l2}


def default_run_dir(root: Path = Path("runs")) -> Path:
    return root / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def evaluator(test: Images):
    """The researcher's scoring function: the global model on the public test set."""

    def evaluate(params) -> GlobalEval:
        return GlobalEval(**task.evaluate(params, test.X, test.y))

    return evaluate


def run_experiment(
    sites: Sequence[Site],
    config: RunConfig,
    test: Images,
    out_dir: Path | None,
    *,
    observers: Sequence[RoundObserver] = (),
    extra: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    min_sites: int | None = None,
    site_timeout: float | None = None,
    resume: bool = False,
) -> FederationResult:
    """Federate over ``sites`` and write the run directory (metrics.json and model.npz after every round).

    Parameters
    ----------
    sites, config, test : the sites, the run's settings, the researcher's test set.
    out_dir : the run directory (None: write nothing).
    observers : progress displays; see :class:`fedsyft.federation.RoundObserver`.
    extra : merged into the recorded config (e.g. the kind of sites).
    timings : seconds of set-up steps, stored under ``timings`` in metrics.json.
    min_sites, site_timeout : the quorum and per-call timeout; see :func:`fedsyft.federate`.
    resume : continue the run in ``out_dir`` from its last finished round. Every round
        is checkpointed there (checkpoint.npz: global parameters and history in one file);
        nothing random happens on the researcher's side, so a resumed run ends with
        the same parameters as one that was never interrupted.
    """
    history = History(config={**asdict(config), "sites": [s.name for s in sites], **(extra or {})},
                      timings=dict(timings or {}))
    params = None
    if resume:
        if out_dir is None:
            raise ValueError("resuming needs the run directory")
        history, params = _checkpoint(Path(out_dir), history)
    run_dir = RunDirectory(out_dir, history) if out_dir is not None else None
    all_observers = [*observers, *([run_dir] if run_dir else [])]
    try:
        return federate(sites, config.rounds, config.train_config(), evaluator(test), history=history,
                        weighted=config.weighted, observers=all_observers, min_sites=min_sites,
                        site_timeout=site_timeout, params=params)
    finally:
        if run_dir is not None:
            run_dir.finish()


def _checkpoint(run_dir: Path, fresh: History) -> tuple[History, Any]:
    """The history and global parameters saved in ``run_dir``, checked against this run's config."""
    saved, params = load_checkpoint(run_dir)
    for key in ("seed", "local_iters", "l2", "test_fraction", "weighted", "sites"):
        if saved.config.get(key) != fresh.config.get(key):
            raise ValueError(f"cannot resume {run_dir}: its {key} is {saved.config.get(key)!r}, "
                             f"this run's is {fresh.config.get(key)!r}")
    if len(saved.rounds) >= fresh.config["rounds"]:
        raise ValueError(f"nothing to do: {run_dir} already has all {len(saved.rounds)} rounds")
    saved.config["rounds"] = fresh.config["rounds"]
    saved.timings = {**saved.timings, **{f"resume_{k}": v for k, v in fresh.timings.items()}}
    return saved, params


def connect_sites(credentials: Sequence[SiteCredentials]) -> list:
    """Log in to every datasite in parallel; raises the first :class:`SiteError`."""
    from .sites.syft_site import SyftSite

    with ThreadPoolExecutor(max_workers=max(1, len(credentials))) as pool:
        futures = [pool.submit(SyftSite.connect, c) for c in credentials]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        raise failed[0]
    return [f.result() for f in futures]


def request_approval(sites: Sequence, timeout: float) -> None:
    """Submit the training function to every site and wait until all have approved it."""
    for site in sites:
        site.submit()
    with ThreadPoolExecutor(max_workers=max(1, len(sites))) as pool:
        errors = [e for e in pool.map(lambda s: _error_of(s.wait_for_approval, timeout), sites) if e]
    if errors:
        raise errors[0]


def _error_of(fn, *args) -> SiteError | None:
    try:
        fn(*args)
    except SiteError as e:
        return e
    return None


@dataclass
class Stopwatch:
    """Named wall-clock durations for the set-up steps of a run (recorded in metrics.json)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def time(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)
