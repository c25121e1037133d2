"""The simulation engine: in-process sites' training runs in a few worker processes, one per core.

A thread per site does not scale: the training functions hold the GIL for much of a small
site's fit, and a thousand threads cost gigabytes. :class:`ProcessEngine` forks a fixed
number of workers once, before any round, so they inherit every site's shard (copy on
write: no data is pickled); a call then sends only the site's name, the parameters and
the config, and gets the answer back with the worker's own time for it. Each worker keeps
BLAS at one thread.

The same function on the same inputs gives the same numbers in a worker as in the parent,
so a run is identical with or without the engine (a test checks it bit for bit). Privacy
is not the workers' business: a private site's guard charges its ledger in the parent
before the call is sent.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_shards: dict[str, tuple] = {}  # set in the parent before the fork; the workers inherit it
_blas_limit = None


def load_training_libraries() -> None:
    """Import what the training functions import inside their bodies, before limiting BLAS threads.

    scipy ships its own OpenBLAS, loaded when ``scipy.optimize`` is first imported, and a
    thread limit reaches only libraries already loaded. Left at two threads, it made each
    small L-BFGS-B fit about three times slower on 2 cores (scipy issue #22438).
    """
    import scipy.optimize  # noqa: F401


def _exit_when_orphaned(parent: int) -> None:
    # A parent killed outright (SIGKILL, or SIGTERM with no handler) cannot stop its workers,
    # and nothing would ever wake them: they leave once they have been handed to another parent.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _start_worker() -> None:
    global _blas_limit
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the pool
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    from threadpoolctl import threadpool_limits

    load_training_libraries()

    _blas_limit = threadpool_limits(limits=1)  # kept for the worker's life


def _train(name: str, function: str, params: Any, config: dict, randomness: Any) -> tuple[dict, float]:
    from .. import task

    started = time.perf_counter()
    X, y = _shards[name]
    data = (X, y) if randomness is None else (X, y, randomness)
    return task.TRAINING_FUNCTIONS[function](data, params, config), time.perf_counter() - started


class ProcessEngine:
    """A pool of ``workers`` forked processes that run sites' training calls.

    Create it after the sites' shards exist and before the federation starts its
    threads; close it (or use it as a context manager) when the run ends.
    """

    def __init__(self, shards: dict[str, tuple], workers: int):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        _shards.clear()
        _shards.update(shards)
        self.workers = workers
        # concurrent.futures rather than multiprocessing.Pool: Pool's worker-handler thread
        # wakes on every pending answer and took ~1.5 s of this process's CPU in a
        # 100-site, 20-round run, CPU the two workers then lacked.
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                         initializer=_start_worker)
        self._pool.submit(int).result()  # fork every worker now, before the federation starts its threads

    def train(self, name: str, function: str, params: Any, config: dict,
              randomness: Any = None) -> tuple[dict, float]:
        """Run ``task.<function>`` on site ``name``'s shard in a worker; blocks until it answers.

        Returns the answer and the seconds the worker spent on it: the time the call
        waited for a free worker is the simulation's, not the site's.
        """
        return self._pool.submit(_train, name, function, params, config, randomness).result()

    def close(self) -> None:
        """Stop the workers; calls still queued are cancelled, a running fit is let finish."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        _shards.clear()

    def __enter__(self) -> ProcessEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def engine_for(sites: Sequence, workers: int) -> ProcessEngine:
    """A :class:`ProcessEngine` for these :class:`~fedsyft.sites.LocalSite` s, attached to each of them."""
    engine = ProcessEngine({s.name: (s.data.X, s.data.y) for s in sites}, workers)
    for site in sites:
        site.engine = engine
    return engine
