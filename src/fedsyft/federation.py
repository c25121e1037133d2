"""The federation loop: ask the strategy whom to call with what, call them, let it aggregate, evaluate, record.

It knows sites only through the :class:`~fedsyft.sites.Site` protocol and algorithms only
through :class:`~fedsyft.strategies.Strategy`, so the same small loop drives in-process
simulations and real PySyft datasites, with any strategy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from typing import Any, Protocol

from .aggregate import Params
from .history import GlobalEval, History, RoundRecord
from .sites.base import Site, SiteError, SiteResult
from .strategies.base import FitInstruction, Strategy


class FederationError(RuntimeError):
    """The run cannot go on; the rounds finished so far are kept in the history."""


class RoundObserver(Protocol):
    """Hooks a surface (console, progress display, run directory) can follow."""

    def round_started(self, round_no: int, rounds: int) -> None: ...

    def site_finished(self, round_no: int, site: str, result: SiteResult | None, error: str | None) -> None: ...

    def round_finished(self, record: RoundRecord, params: Params) -> None:
        """``params``: the round's aggregate, which the sites are sent next (see ``Strategy.round_model``)."""


@dataclass
class FederationResult:
    """What a run produced.

    ``params`` is the run's model: the last round's aggregate, or with the strategy's
    ``ema`` the moving average of the aggregates; it is what was evaluated and saved.
    ``aggregate`` is the last aggregate itself (the same array without ``ema``): what
    :func:`federate` continues from, with the same strategy object.
    """

    history: History
    params: Params
    aggregate: Params | None = None


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
    strategy: Strategy,
    observers: Sequence[RoundObserver] = (),
    min_sites: int | None = None,
    site_timeout: float | None = None,
    params: Params | None = None,
    max_workers: int | None = None,
) -> FederationResult:
    """Run ``strategy`` over ``sites`` until ``history`` holds ``rounds`` rounds.

    Parameters
    ----------
    sites : the sites; each round the strategy picks whom to call (all, by default), in parallel.
    rounds : the total number of rounds, at least 1.
    train_config : the run's training config; the strategy may add its own keys per site.
    evaluate : scores the new global parameters on the researcher's test set.
    history : where rounds are appended (it carries the run's config). A history
        that already holds rounds is continued, from ``params``.
    strategy : what to send each site and how to aggregate, e.g. :class:`fedsyft.strategies.FedAvg`
        (with ``weighted=False`` for a plain mean) or ``RunConfig.make_strategy()``. It keeps its
        state between rounds: pass the same object to continue a run.
    observers : told when a round starts, as each site finishes and when a round ends.
    min_sites : the quorum: a round counts when at least this many of the sites called
        answered (default: all but one, at least one). Failed sites are recorded in the
        round's ``failures``, left out of that round's aggregate and asked again when next called.
    site_timeout : seconds to wait for a site's answer in a round (None: no limit).
    params : the global parameters to start from (None: each site starts fresh); to continue
        a run, its :attr:`FederationResult.aggregate`.
    max_workers : calls in flight at once (None: one per site called). In-process sites
        compete for the cores, so a simulation passes the number of cores.

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
        raise ValueError(f"site names must be unique, got {names[:10]}")
    if history.rounds and params is None:
        raise ValueError("continuing a run needs the global parameters of its last round")
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy must be a fedsyft.strategies.Strategy (e.g. FedAvg()), got {strategy!r}")
    by_name = dict(zip(names, sites))

    for round_no in range(len(history.rounds) + 1, rounds + 1):
        plan = strategy.configure_fit(round_no, params, names, train_config)
        quorum = default_min_sites(len(plan)) if min_sites is None else min_sites
        if not 1 <= quorum <= len(plan):
            raise ValueError(f"min_sites must be between 1 and the {len(plan)} sites called each round, got {quorum}")
        for o in observers:
            o.round_started(round_no, rounds)
        start = time.perf_counter()
        results, failures = _call_sites(by_name, plan, site_timeout, round_no, observers, max_workers)
        if len(results) < quorum:
            detail = "; ".join(f"{n}: {why}" for n, why in list(failures.items())[:5])
            raise FederationError(f"round {round_no}: only {len(results)} of {len(plan)} sites answered, "
                                  f"{quorum} needed ({detail})")
        params = strategy.aggregate_fit(round_no, params, {n: results[n] for n in plan if n in results})
        record = RoundRecord(
            round=round_no,
            seconds=0.0,
            global_=evaluate(strategy.round_model(round_no, params)),
            sites={n: results[n].report for n in plan if n in results},
            failures={n: failures[n] for n in plan if n in failures},
            sampled=list(plan) if len(plan) < len(sites) else None,
        )
        record.seconds = time.perf_counter() - start
        history.rounds.append(record)
        for o in observers:
            o.round_finished(record, params)
    if params is None:
        raise ValueError(f"the history already holds {len(history.rounds)} rounds; nothing to do for {rounds}")
    return FederationResult(history, strategy.round_model(len(history.rounds), params), params)


def _call_sites(by_name: dict[str, Site], plan: dict[str, FitInstruction], timeout, round_no, observers,
                max_workers):
    """One round's calls, in parallel; returns answers and failure reasons by site name."""
    # A fresh pool per round: a call that timed out may still be running, and its late
    # answer must not leak into a later round or hold up this one.
    workers = max(1, min(len(plan), max_workers or len(plan)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"round{round_no}")
    futures = {pool.submit(by_name[name].train, ins.params, ins.config): name for name, ins in plan.items()}
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
