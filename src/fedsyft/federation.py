"""The federation loop: send the global model to every site, average, evaluate, record.

It knows sites only through the :class:`~fedsyft.sites.Site` protocol, so the same
loop drives in-process simulations and real PySyft datasites.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol

from .aggregate import Params, fedavg
from .history import GlobalEval, History, RoundRecord
from .sites.base import Site, SiteError, SiteResult


class FederationError(RuntimeError):
    """The run cannot go on; the rounds finished so far are kept in the history."""


class RoundObserver(Protocol):
    """Hooks a surface (console, progress display, run directory) can follow."""

    def round_started(self, round_no: int, rounds: int) -> None: ...

    def site_finished(self, round_no: int, site: str, result: SiteResult | None, error: str | None) -> None: ...

    def round_finished(self, record: RoundRecord, params: Params) -> None: ...


@dataclass
class FederationResult:
    history: History
    params: Params


def federate(
    sites: Sequence[Site],
    rounds: int,
    train_config: dict[str, Any],
    evaluate: Callable[[Params], GlobalEval],
    *,
    history: History,
    weighted: bool = True,
    observers: Sequence[RoundObserver] = (),
) -> FederationResult:
    """Run ``rounds`` rounds of FedAvg over ``sites``.

    Parameters
    ----------
    sites : the sites; every round calls all of them in parallel threads.
    rounds : number of rounds, at least 1.
    train_config : sent unchanged to every site every round.
    evaluate : scores the new global parameters on the researcher's test set.
    history : where rounds are appended (it carries the run's config).
    weighted : FedAvg weights by n_train (True) or a plain mean (False).
    observers : told when a round starts, as each site finishes and when a round ends.

    Raises
    ------
    FederationError
        When a site fails; ``history`` keeps every round finished before it.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if not sites:
        raise ValueError("no sites to train on")
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise ValueError(f"site names must be unique, got {names}")

    params: Params | None = None
    with ThreadPoolExecutor(max_workers=len(sites), thread_name_prefix="site") as pool:
        for round_no in range(1, rounds + 1):
            for o in observers:
                o.round_started(round_no, rounds)
            start = time.perf_counter()
            futures = {pool.submit(s.train, params, train_config): s.name for s in sites}
            results: dict[str, SiteResult] = {}
            failures: dict[str, str] = {}
            for future in as_completed(futures):
                name = futures[future]
                try:
                    results[name] = future.result()
                except SiteError as e:
                    failures[name] = e.reason
                except Exception as e:  # a bug or a transport error: still name the site
                    failures[name] = f"{type(e).__name__}: {e}"
                for o in observers:
                    o.site_finished(round_no, name, results.get(name), failures.get(name))
            if failures:
                detail = "; ".join(f"{n}: {why}" for n, why in failures.items())
                raise FederationError(f"round {round_no} failed at {len(failures)} site(s): {detail}")
            params = fedavg([(r.params, r.n_train) for r in results.values()], weighted=weighted)
            record = RoundRecord(
                round=round_no,
                seconds=0.0,
                global_=evaluate(params),
                sites={name: results[name].report for name in names},
            )
            record.seconds = time.perf_counter() - start
            history.rounds.append(record)
            for o in observers:
                o.round_finished(record, params)
    assert params is not None
    return FederationResult(history, params)
