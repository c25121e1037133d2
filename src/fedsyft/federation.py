"""The federation loop: send the global model to every site, average, evaluate, record.

It knows sites only through the :class:`~fedsyft.sites.Site` protocol, so the same
loop drives in-process simulations and real PySyft datasites.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
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


def default_min_sites(n_sites: int) -> int:
    """All sites but one, at least one: a run survives one failing site by default."""
    return max(1, n_sites - 1)


def federate(
    sites: Sequence[Site],
    rounds: int,
    train_config: dict[str, Any],
    evaluate: Callable[[Params], GlobalEval],
    *,
    history: History,
    weighted: bool = True,
    observers: Sequence[RoundObserver] = (),
    min_sites: int | None = None,
    site_timeout: float | None = None,
    params: Params | None = None,
) -> FederationResult:
    """Run FedAvg over ``sites`` until ``history`` holds ``rounds`` rounds.

    Parameters
    ----------
    sites : the sites; every round calls all of them in parallel threads.
    rounds : the total number of rounds, at least 1.
    train_config : sent unchanged to every site every round.
    evaluate : scores the new global parameters on the researcher's test set.
    history : where rounds are appended (it carries the run's config). A history
        that already holds rounds is continued, from ``params``.
    weighted : FedAvg weights by n_train (True) or a plain mean (False).
    observers : told when a round starts, as each site finishes and when a round ends.
    min_sites : the quorum: a round counts when at least this many sites answered
        (default: all but one, at least one). Failed sites are recorded in the
        round's ``failures``, left out of that round's average (the weights are
        renormalised over the sites that answered) and asked again next round.
    site_timeout : seconds to wait for a site's answer in a round (None: no limit).
    params : the global parameters to start from (None: each site starts fresh).

    Raises
    ------
    FederationError
        When fewer than ``min_sites`` sites answered a round; ``history`` keeps
        every round finished before it.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if not sites:
        raise ValueError("no sites to train on")
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise ValueError(f"site names must be unique, got {names}")
    quorum = default_min_sites(len(sites)) if min_sites is None else min_sites
    if not 1 <= quorum <= len(sites):
        raise ValueError(f"min_sites must be between 1 and {len(sites)}, got {quorum}")
    if history.rounds and params is None:
        raise ValueError("continuing a run needs the global parameters of its last round")

    for round_no in range(len(history.rounds) + 1, rounds + 1):
        for o in observers:
            o.round_started(round_no, rounds)
        start = time.perf_counter()
        results, failures = _call_sites(sites, params, train_config, site_timeout, round_no, observers)
        if len(results) < quorum:
            detail = "; ".join(f"{n}: {why}" for n, why in failures.items())
            raise FederationError(f"round {round_no}: only {len(results)} of {len(sites)} sites answered, "
                                  f"{quorum} needed ({detail})")
        params = fedavg([(results[n].params, results[n].n_train) for n in names if n in results], weighted=weighted)
        record = RoundRecord(
            round=round_no,
            seconds=0.0,
            global_=evaluate(params),
            sites={n: results[n].report for n in names if n in results},
            failures={n: failures[n] for n in names if n in failures},
        )
        record.seconds = time.perf_counter() - start
        history.rounds.append(record)
        for o in observers:
            o.round_finished(record, params)
    if params is None:
        raise ValueError(f"the history already holds {len(history.rounds)} rounds; nothing to do for {rounds}")
    return FederationResult(history, params)


def _call_sites(sites, params, train_config, timeout, round_no, observers):
    """One round's calls, in parallel; returns answers and failure reasons by site name."""
    # A fresh pool per round: a call that timed out may still be running, and its late
    # answer must not leak into a later round or hold up this one.
    pool = ThreadPoolExecutor(max_workers=len(sites), thread_name_prefix=f"round{round_no}")
    futures = {pool.submit(s.train, params, train_config): s.name for s in sites}
    results: dict[str, SiteResult] = {}
    failures: dict[str, str] = {}
    try:
        for future in as_completed(futures, timeout=timeout):
            name = futures[future]
            try:
                results[name] = future.result()
            except SiteError as e:
                failures[name] = e.reason
            except Exception as e:  # a bug or a transport error: still name the site
                failures[name] = f"{type(e).__name__}: {e}"
            for o in observers:
                o.site_finished(round_no, name, results.get(name), failures.get(name))
    except FuturesTimeout:
        for future, name in futures.items():
            if not future.done():
                failures[name] = f"no answer within {timeout:g} s"
                for o in observers:
                    o.site_finished(round_no, name, None, failures[name])
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results, failures
